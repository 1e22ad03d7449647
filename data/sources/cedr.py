"""CEDR: Russian sentences with 5 emotions + no emotion, as weak evidence for calm and negative affect.

Origin: ``searayeah/russian-sentiment-emotion-datasets`` at commit
``b43a50a589e6664837f994ef72d0f75c4bd6fbcd`` (a CSV export of the Hugging Face
dataset ``cedr``, config ``main``, by sagteam; Sboev et al., Procedia Computer
Science 190, 2021). License: Apache-2.0 (dataset card). Tier: ``train``.
Language: ru. Raw rows: ``raw/cedr-main-train.csv`` (columns
``text,labels,source``): one sentence from LiveJournal (``lj``), Lenta.ru news
(``lenta``) or Twitter (``twitter``), crowd-labelled multi-label; ``labels`` is
a numpy-style list of ids such as ``[1 4]``, ``[]`` meaning no emotion. The
official test split is withheld on purpose.

CEDR's ids are ``0 joy, 1 sadness, 2 surprise, 3 fear, 4 anger`` (the dataset
card's ``ClassLabel`` names; the CSV carries ids only and no label file exists,
so :data:`CEDR_LABELS` writes them down once).

Mapping onto ``shared/LABELS.md`` (each CEDR label allows a set of our labels):

===============  ============================  ==========================================================
CEDR label       allowed labels                why
===============  ============================  ==========================================================
no emotion       calm                          a neutral sentence
joy              calm                          calm = neutral or positive
sadness          calm | frustrated             LABELS.md: frustrated with complaint, calm when it informs
fear             calm | frustrated             the same rule (worry, fear)
surprise         (missing)                     pleasant wonder to indignant "how can this be?!"
anger            frustrated | angry | abusive  anger by our scale may be only frustrated; some rows
                                               insult a person ("ну ты и хуйлыга", "заткните свои
                                               грязные рты")
anger (lenta)    (missing)                     news mostly *reports* someone's anger in neutral words
                                               ("Разгневанная мать обратилась к властям"): maybe calm
anger (lj)       (missing)                     blog sentences about anger, often told calmly: of 70
                                               annotated by the guide, 36 are calm (twitter: 4 of 41)
===============  ============================  ==========================================================

- Multi-label rows (107): LABELS.md picks the most severe label clearly
  present, so a row's labels combine by severity: the result runs from the
  highest lower bound to the highest upper bound (sadness + anger ->
  frustrated|angry|abusive; joy + sadness -> calm|frustrated; anger +
  surprise -> frustrated|angry|abusive). A label that allows only calm next
  to one that excludes calm (joy + anger) is a disagreement, not two emotions:
  then the union is taken (all four, i.e. missing). One label left is an
  exact ``emotion``, two or three are ``emotion_among``, all four is missing.
- Weights: ``lenta`` (news) records weigh 0.5, ``lj`` and ``twitter`` 1.0:
  news sentences are calm by LABELS.md but are the farthest from speech.
- ``escalate`` is always missing: CEDR says nothing about escalation.
- Identical texts within the file (28 repeats) are merged into one record:
  the first row's id, and the union of the rows' evidence, since repeated
  rows are separate judgements. ``conversation_id`` is a digest of the text,
  so equal texts in other files land in the same split too.

What it cannot express: frustrated vs angry vs abusive (anger covers all
three), escalation, context (sentences stand alone), customer speech (blog,
news and tweet sentences).
"""

from __future__ import annotations

from pathlib import Path

from tonewatch.data.records import CALM_OR_FRUSTRATED, NOT_CALM, Record
from tonewatch.data.sources.base import Source, group_rows_by_text, load_split_files, text_group_id
from tonewatch.data.sources.evidence import combine_evidence, evidence_fields, union_evidence
from tonewatch.labels import EMOTION_LABELS

NAME = "cedr"
TIER = "train"
SPLIT_FILES: dict[str, str] = {"train": "raw/cedr-main-train.csv"}
"""The splits present in the folder and their files (the test split is withheld)."""

CEDR_LABELS: tuple[str, ...] = ("joy", "sadness", "surprise", "fear", "anger")
"""CEDR label names by id (the dataset card's ``ClassLabel``)."""

NO_EMOTION = "no_emotion"
"""Name used here for CEDR's empty label list."""

NEWS = "lenta"
"""The ``source`` value of news sentences."""

NEWS_WEIGHT = 0.5

LABEL_EVIDENCE: dict[str, tuple[str, ...]] = {
    NO_EMOTION: ("calm",),
    "joy": ("calm",),
    "sadness": CALM_OR_FRUSTRATED,
    "fear": CALM_OR_FRUSTRATED,
    "surprise": EMOTION_LABELS,
    "anger": NOT_CALM,
}
"""Our labels each CEDR label allows; all of :data:`EMOTION_LABELS` means "says nothing"."""


def parse_labels(cell: str) -> tuple[str, ...]:
    """CEDR label names of a ``labels`` cell such as ``[1 4]``; ``[]`` is ``(NO_EMOTION,)``."""
    inner = cell.strip()
    if not (inner.startswith("[") and inner.endswith("]")):
        raise ValueError(f"cedr: malformed labels cell {cell!r}; expected a list such as '[1 4]'")
    names = []
    for token in inner[1:-1].split():
        if not token.isdigit() or int(token) >= len(CEDR_LABELS):
            raise ValueError(f"cedr: unknown label id {token!r} in {cell!r}; expected 0..{len(CEDR_LABELS) - 1}")
        names.append(CEDR_LABELS[int(token)])
    return tuple(names) or (NO_EMOTION,)


ANGER_UNRELIABLE = (NEWS, "lj")
"""Text sources whose ``anger`` says nothing about the writer's state by LABELS.md (measured on the project's
annotations, ``scripts/weak_label_agreement.py``: not calm for 1 of 11 lenta, 34 of 70 LiveJournal, 37 of 41
twitter sentences labelled anger)."""


def label_evidence(label: str, text_source: str) -> tuple[str, ...]:
    """Our labels that one CEDR label allows for a sentence from ``text_source``."""
    if label == "anger" and text_source in ANGER_UNRELIABLE:
        return EMOTION_LABELS
    return LABEL_EVIDENCE[label]


def row_evidence(labels: tuple[str, ...], text_source: str) -> tuple[str, ...]:
    """Our labels one row allows: its CEDR labels combined."""
    return combine_evidence([label_evidence(label, text_source) for label in labels])


def map_rows(rows: list[dict[str, str]], split: str) -> list[Record]:
    """Records of the parsed rows of one split file; duplicates merge, empty texts are skipped and counted."""
    records = []
    for text, indices in group_rows_by_text(rows, "text", f"cedr {split}").items():
        text_source = (rows[indices[0]].get("source") or "").strip()
        labels = [parse_labels(rows[index].get("labels") or "") for index in indices]
        # Repeated rows of one text are separate judgements: union.
        allowed = union_evidence([row_evidence(names, text_source) for names in labels])
        records.append(
            Record(
                id=f"{NAME}:{split}:{indices[0]}",
                text=text,
                lang="ru",
                source=NAME,
                tier=TIER,
                weight=NEWS_WEIGHT if text_source == NEWS else 1.0,
                conversation_id=text_group_id(NAME, text),
                origin_split=split,
                meta={
                    "labels": ",".join(dict.fromkeys(name for names in labels for name in names)),
                    "text_source": text_source,
                    "duplicates": str(len(indices) - 1),
                },
                **evidence_fields(allowed),
            )
        )
    return records


def load(folder: Path) -> list[Record]:
    """All records of ``folder`` (``<data root>/cedr``): the train split (CSV)."""
    return load_split_files(folder, SPLIT_FILES, map_rows, "csv")


SOURCE = Source(
    name=NAME,
    langs=("ru",),
    license="Apache-2.0",
    license_ids=("apache-2.0",),
    tier=TIER,
    origin="searayeah/russian-sentiment-emotion-datasets@b43a50a589e6664837f994ef72d0f75c4bd6fbcd",
    summary="Russian blog/news/tweet sentences, 5 emotions: no emotion/joy -> calm, sadness/fear -> calm|frustrated, "
    "anger -> not calm",
    load=load,
)
