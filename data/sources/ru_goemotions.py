"""ru-GoEmotions: Reddit comments machine-translated to Russian, 28 emotions, as evidence for calm and frustrated.

Origin: ``searayeah/ru-goemotions`` at commit
``e1303b0a2322a3709db41adeaf77a6fa36546197``. License: MIT (the translation
repo); the labels and English texts are Google's GoEmotions (Demszky et al.,
ACL 2020; Apache-2.0 on its Hugging Face card), keep that attribution. Tier:
``train``. Language: ru, **machine-translated** (Google Translate) from English
Reddit comments; the labels are English annotators' on the English text.

Raw rows: ``raw/ru-go-emotions-simplified-validation.csv`` (columns
``ru_text,text,labels,id``; ``labels`` is a numpy-style list of ids such as
``[ 4 27]``) and ``raw/id_to_label.yaml`` (``<id>: <name>`` per line), from
which the id -> name mapping is read. ``id`` is the Reddit comment id. The
train split (too large to copy) is absent and the test split is withheld on
purpose, so only ``validation`` is read.

Mapping onto ``shared/LABELS.md`` (each GoEmotions label allows a set of our labels):

=========================================  =============================  ===========================================
GoEmotions labels                          allowed labels                 why
=========================================  =============================  ===========================================
neutral, admiration, approval, caring,     calm                           calm = neutral or positive
excitement, gratitude, joy, love,
optimism, pride, relief
anger                                      frustrated | angry | abusive   anger by our scale may be frustrated
                                                                          (LABELS.md on source "angry" labels);
                                                                          some rows insult a person ("Чистый
                                                                          мудак", "ты, тупая пизда")
sadness, grief, fear, nervousness,         calm | frustrated              LABELS.md: sadness, worry, fear are
remorse, embarrassment, confusion,                                        frustrated with complaint, calm otherwise;
annoyance, disappointment                                                 annoyance and disappointment too (below)
amusement, curiosity, desire,              (missing)                      anything from calm to hostile: mocking
disapproval, realization, surprise,                                       "lol" ("what a joke"), rhetorical
disgust                                                                   questions, "no, it's not" vs contempt;
                                                                          disgust is mostly mild distaste
=========================================  =============================  ===========================================

Measured against the project's exact labels on the same comments (``data/annotations/ru_goemotions.jsonl``,
``scripts/weak_label_agreement.py``), annoyance and disappointment were mapped to exact ``frustrated`` until
2026-12-07, and that held for 52 of 106 annoyance and 19 of 54 disappointment comments (37 and 32 calm: a
translated Reddit remark of mild annoyance reads calm); ``calm | frustrated`` holds for 89 and 51. Disgust as
``frustrated | angry | abusive`` held for 20 of 36 (16 calm). Neutral as ``calm`` holds for 145 of 181 and
anger as not calm for 51 of 64; both stay.

- Multi-label rows (878 of 5,426): LABELS.md picks the most severe label
  clearly present, so a row's labels combine by severity: the result runs
  from the highest lower bound to the highest upper bound (annoyance + anger
  -> frustrated|angry|abusive; sadness + disappointment -> calm|frustrated;
  approval + neutral -> calm; anger + surprise ->
  frustrated|angry|abusive). A label that allows only calm next to one that
  excludes calm (neutral + annoyance, gratitude + anger) is the raters
  disagreeing, not two emotions present: then the union is taken (neutral +
  annoyance -> calm|frustrated; gratitude + anger -> all four, i.e.
  missing). One label left is an exact ``emotion``, two or three are
  ``emotion_among``, all four is missing.
- Weights: 1.0 for every record (the whole source is translated Reddit; how
  much it counts against the in-domain data is the training mix's choice).
- ``escalate`` is always missing: GoEmotions says nothing about escalation.
- Identical Russian texts within the file (10 repeats: translation maps
  several comments onto "Спасибо!") are merged into one record: the first
  row's id, and the union of the rows' evidence, since repeated rows are
  separate judgements. ``conversation_id`` is a digest of the text. The
  English original is kept in ``meta["en_text"]``.
- Record ids: ``ru_goemotions:validation:<Reddit comment id>``.

What it cannot express: frustrated vs angry vs abusive once anger is present,
calm vs frustrated (no GoEmotions label gives an exact frustrated), escalation,
context (Reddit threads are not linked), natural Russian
(translation artefacts, ``[ИМЯ]`` placeholders for names), customer speech.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

from tonewatch.data.records import CALM_OR_FRUSTRATED, NOT_CALM, Record
from tonewatch.data.sources.base import Source, group_rows_by_text, load_split_files, require_file, text_group_id
from tonewatch.data.sources.evidence import combine_evidence, evidence_fields, union_evidence
from tonewatch.labels import EMOTION_LABELS

NAME = "ru_goemotions"
TIER = "train"
SPLIT_FILES: dict[str, str] = {"validation": "raw/ru-go-emotions-simplified-validation.csv"}
"""The splits present in the folder and their files (train is absent, test withheld)."""

LABEL_FILE = "raw/id_to_label.yaml"

CALM: tuple[str, ...] = ("calm",)
UNKNOWN: tuple[str, ...] = EMOTION_LABELS

LABEL_EVIDENCE: dict[str, tuple[str, ...]] = {
    "neutral": CALM,
    "admiration": CALM,
    "approval": CALM,
    "caring": CALM,
    "excitement": CALM,
    "gratitude": CALM,
    "joy": CALM,
    "love": CALM,
    "optimism": CALM,
    "pride": CALM,
    "relief": CALM,
    "annoyance": CALM_OR_FRUSTRATED,
    "disappointment": CALM_OR_FRUSTRATED,
    "anger": NOT_CALM,
    "disgust": UNKNOWN,
    "sadness": CALM_OR_FRUSTRATED,
    "grief": CALM_OR_FRUSTRATED,
    "fear": CALM_OR_FRUSTRATED,
    "nervousness": CALM_OR_FRUSTRATED,
    "remorse": CALM_OR_FRUSTRATED,
    "embarrassment": CALM_OR_FRUSTRATED,
    "confusion": CALM_OR_FRUSTRATED,
    "amusement": UNKNOWN,
    "curiosity": UNKNOWN,
    "desire": UNKNOWN,
    "disapproval": UNKNOWN,
    "realization": UNKNOWN,
    "surprise": UNKNOWN,
}
"""Our labels each GoEmotions label (by name) allows; all of :data:`EMOTION_LABELS` means "says nothing"."""


def parse_label_names(lines: list[str]) -> dict[int, str]:
    """The id -> name mapping of ``id_to_label.yaml`` (flat ``<int>: <name>`` lines; blanks and comments skipped)."""
    names: dict[int, str] = {}
    for number, line in enumerate(lines, start=1):
        content = line.split("#", 1)[0].strip()
        if not content:
            continue
        key, separator, value = content.partition(":")
        value = value.strip().strip("'\"")
        if not separator or not key.strip().isdigit() or not value:
            raise ValueError(f"ru_goemotions: {LABEL_FILE} line {number}: expected '<id>: <name>', got {line!r}")
        if value not in LABEL_EVIDENCE:
            raise ValueError(f"ru_goemotions: {LABEL_FILE} line {number}: label {value!r} has no mapping")
        names[int(key)] = value
    return names


def parse_labels(cell: str, label_names: dict[int, str]) -> tuple[str, ...]:
    """GoEmotions label names of a ``labels`` cell such as ``[ 4 27]``."""
    inner = cell.strip()
    if not (inner.startswith("[") and inner.endswith("]")):
        raise ValueError(f"ru_goemotions: malformed labels cell {cell!r}; expected a list such as '[ 4 27]'")
    names = []
    for token in inner[1:-1].split():
        if not token.isdigit() or int(token) not in label_names:
            raise ValueError(f"ru_goemotions: unknown label id {token!r} in {cell!r}")
        names.append(label_names[int(token)])
    return tuple(names)


def map_rows(rows: list[dict[str, str]], split: str, label_names: dict[int, str]) -> list[Record]:
    """Records of the parsed rows of one split file; duplicates merge, empty texts are skipped and counted."""
    records = []
    for text, positions in group_rows_by_text(rows, "ru_text", f"ru_goemotions {split}").items():
        group = [rows[position] for position in positions]
        labels = [parse_labels(row.get("labels") or "", label_names) for row in group]
        # Within a row the labels combine; repeated rows of one text are separate judgements: union.
        allowed = union_evidence([combine_evidence([LABEL_EVIDENCE[name] for name in names]) for names in labels])
        first = group[0]
        records.append(
            Record(
                id=f"{NAME}:{split}:{(first.get('id') or '').strip()}",
                text=text,
                lang="ru",
                source=NAME,
                tier=TIER,
                conversation_id=text_group_id(NAME, text),
                origin_split=split,
                meta={
                    "labels": ",".join(dict.fromkeys(name for names in labels for name in names)),
                    "en_text": (first.get("text") or "").strip(),
                    "duplicates": str(len(group) - 1),
                },
                **evidence_fields(allowed),
            )
        )
    return records


def read_label_names(path: Path) -> dict[int, str]:
    """The id -> name mapping of ``id_to_label.yaml``."""
    return parse_label_names(require_file(path).read_text(encoding="utf-8").splitlines())


def load(folder: Path) -> list[Record]:
    """All records of ``folder`` (``<data root>/ru_goemotions``): the validation split (CSV), labels named by id."""
    label_names = read_label_names(folder / LABEL_FILE)
    return load_split_files(folder, SPLIT_FILES, partial(map_rows, label_names=label_names), "csv")


SOURCE = Source(
    name=NAME,
    langs=("ru",),
    license="MIT (translation) + Apache-2.0 (GoEmotions labels and texts)",
    license_ids=("mit", "apache-2.0"),
    tier=TIER,
    origin="searayeah/ru-goemotions@e1303b0a2322a3709db41adeaf77a6fa36546197",
    summary="GoEmotions Reddit comments machine-translated to Russian: neutral/positive -> calm, "
    "annoyance/disappointment/sadness/fear -> calm or frustrated, anger -> not calm",
    load=load,
)
