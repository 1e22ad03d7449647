"""RuParaDetox: Russian toxic sentences and their human neutral paraphrases, as a minimal-pair abuse contrast.

Origin: ``s-nlp/russe_detox_2022`` at commit
``a2f79da9f0c11de5c6c0f55a62899db1eff426ff`` (RUSSE-2022 detoxification
shared task; Dementieva et al., Dialogue 2022). License: openrail++ (the card
of the same data on Hugging Face, ``s-nlp/ru_paradetox``; the GitHub repo has
no LICENSE file). Tier: ``train``. Language: ru.

Raw rows: ``raw/train.tsv`` (``index, toxic_comment, neutral_comment1..3``)
and ``raw/dev.tsv`` (``toxic_comment, neutral_comment1..3``): one toxic
sentence from Odnoklassniki, Pikabu or Twitter (a run of rows reads like film
subtitles), and up to three paraphrases that Toloka workers wrote and
validated as non-toxic and meaning-preserving. The files are real TSV with CSV quoting: a few paraphrases
are quoted and span several lines, so they are read with the ``csv`` module's
default quoting (6,948 train rows, as the upstream README says; reading them
with ``QUOTE_NONE`` gives the 6,996 of SOURCE.md and broken rows). The official
test split (toxic side only) is withheld on purpose.

Mapping onto ``shared/LABELS.md``:

=================  =====================================================  ======
text               target                                                 weight
=================  =====================================================  ======
toxic_comment      ``emotion_among=(frustrated, angry, abusive)``         1.0
neutral_commentN   ``emotion_among=NOT_ABUSIVE`` (calm|frustrated|angry)  1.0
on both sides      (missing)                                              1.0
=================  =====================================================  ======

- **Toxic is not always abusive.** LABELS.md: profanity is abuse only when it
  is aimed at a person. The toxic side mixes insults aimed at people (most of
  the forum comments: "а ты чмо там был", "пидорас в полном смысле слова")
  with mat about the writer's own situation (most of the tweets: "сука блять
  уши болят от того, что дужки очков сильно давят((", "Настроение упало после
  этого экзамена :( учила блядь учила"), which LABELS.md calls frustrated or
  angry. In a random sample of 60 train rows about 35 were aimed at a person
  and 25 were not, and the file carries no column that tells them apart. So
  the toxic side only says "not calm" (swearing is at least frustrated by
  LABELS.md): :data:`TOXIC_EVIDENCE`. Exact ``abusive`` (the issue allows it)
  would teach "mat = abuse" on about 40 % of the rows, the very boundary the
  in-domain data is built to teach the other way. (Setting
  ``TOXIC_EVIDENCE = ("abusive",)`` gives the exact label, should the project
  prefer it.)
- Paraphrases are **not abusive** but not necessarily calm: they keep the
  complaint or the anger ("Враньё! Температуры горения хватит..."). They are
  human rewrites, not naturally occurring text.
- A text found both as a toxic sentence and as a paraphrase (the worker kept
  the sentence unchanged: 14 in train, 3 in dev) has conflicting evidence and
  stays missing.
- Pairs: a toxic sentence and its paraphrases share ``conversation_id``
  (``ru_paradetox:<split>:<row>``), so a split by conversation never separates
  them. Identical texts within a file become one record (the id of their first
  occurrence); rows that share a text are joined into one conversation (the id
  of the earliest row).
- Record ids: ``ru_paradetox:<split>:<row>:toxic`` and
  ``...:<row>:neutral_comment<N>``, where ``<row>`` is the ``index`` column in
  train and the 0-based data row in dev (which has no index).
- ``escalate`` is always missing: nothing here is about escalation.

What it cannot express: calm vs frustrated vs angry, which toxic sentences
insult a person, escalation, context. One paraphrase ("уходи из этой
группы") occurs in both train and dev; those two records do not share a
conversation.
"""

from __future__ import annotations

import logging
from pathlib import Path

from tonewatch.data.records import NOT_ABUSIVE, NOT_CALM, Record
from tonewatch.data.sources.base import Source, load_split_files
from tonewatch.data.sources.evidence import evidence_fields

logger = logging.getLogger(__name__)

NAME = "ru_paradetox"
TIER = "train"
SPLIT_FILES: dict[str, str] = {"train": "raw/train.tsv", "dev": "raw/dev.tsv"}
"""The splits present in the folder and their files (the test split is withheld)."""

TOXIC_COLUMN = "toxic_comment"
NEUTRAL_COLUMNS: tuple[str, ...] = ("neutral_comment1", "neutral_comment2", "neutral_comment3")
INDEX_COLUMN = "index"

TOXIC_EVIDENCE: tuple[str, ...] = NOT_CALM
"""What a toxic sentence says: not calm (insult -> abusive, mat about a situation -> frustrated or angry)."""

NEUTRAL_EVIDENCE: tuple[str, ...] = NOT_ABUSIVE
"""What a validated non-toxic paraphrase says: not abusive."""


def row_key(row: dict[str, str], position: int) -> str:
    """The row's number in record ids: its ``index`` column (train) or its 0-based position (dev)."""
    index = (row.get(INDEX_COLUMN) or "").strip()
    return index if index else str(position)


def find_root(parent: list[int], position: int) -> int:
    """The representative of ``position`` in the union-find forest ``parent`` (compressing the path)."""
    while parent[position] != position:
        parent[position] = parent[parent[position]]
        position = parent[position]
    return position


def pair_groups(texts_by_row: list[list[str]]) -> list[int]:
    """For each row, the position of the earliest row it shares a text with, transitively (union-find)."""
    parent = list(range(len(texts_by_row)))
    first_row_of_text: dict[str, int] = {}
    for position, texts in enumerate(texts_by_row):
        for text in texts:
            other = first_row_of_text.setdefault(text, position)
            low, high = sorted((find_root(parent, position), find_root(parent, other)))
            parent[high] = low
    return [find_root(parent, position) for position in range(len(texts_by_row))]


def map_rows(rows: list[dict[str, str]], split: str) -> list[Record]:
    """Records of the parsed rows of one split file: each toxic sentence, then its paraphrases.

    Identical texts become one record; empty toxic cells are skipped and counted
    (empty paraphrase cells are normal: not every row has three).
    """
    texts_by_row = [
        [text for text in ((row.get(column) or "").strip() for column in (TOXIC_COLUMN, *NEUTRAL_COLUMNS)) if text]
        for row in rows
    ]
    groups = pair_groups(texts_by_row)
    toxic_texts = {(row.get(TOXIC_COLUMN) or "").strip() for row in rows}
    neutral_texts = {(row.get(column) or "").strip() for row in rows for column in NEUTRAL_COLUMNS}
    seen: set[str] = set()
    records = []
    skipped = 0
    for position, row in enumerate(rows):
        key = row_key(row, position)
        conversation_id = f"{NAME}:{split}:{row_key(rows[groups[position]], groups[position])}"
        if not (row.get(TOXIC_COLUMN) or "").strip():
            skipped += 1
        for column in (TOXIC_COLUMN, *NEUTRAL_COLUMNS):
            text = (row.get(column) or "").strip()
            if not text or text in seen:
                continue
            seen.add(text)
            if text in toxic_texts and text in neutral_texts:
                side, allowed = "both", ()
            elif text in toxic_texts:
                side, allowed = "toxic", TOXIC_EVIDENCE
            else:
                side, allowed = "neutral", NEUTRAL_EVIDENCE
            records.append(
                Record(
                    id=f"{NAME}:{split}:{key}:{'toxic' if column == TOXIC_COLUMN else column}",
                    text=text,
                    lang="ru",
                    source=NAME,
                    tier=TIER,
                    conversation_id=conversation_id,
                    origin_split=split,
                    meta={"side": side, "column": column},
                    **evidence_fields(allowed),
                )
            )
    if skipped:
        logger.warning("ru_paradetox %s: skipped %d rows with an empty toxic sentence", split, skipped)
    return records


def load(folder: Path) -> list[Record]:
    """All records of ``folder`` (``<data root>/ru_paradetox``): train, then dev (TSV; some paraphrases span lines)."""
    return load_split_files(folder, SPLIT_FILES, map_rows, "tsv")


SOURCE = Source(
    name=NAME,
    langs=("ru",),
    license="openrail++",
    license_ids=("openrail++",),
    tier=TIER,
    origin="s-nlp/russe_detox_2022@a2f79da9f0c11de5c6c0f55a62899db1eff426ff",
    summary="Russian toxic sentences + human neutral paraphrases: toxic -> not calm, paraphrase -> not abusive, "
    "pairs share a conversation",
    load=load,
)
