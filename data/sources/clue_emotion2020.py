"""CLUE Emotion 2020: Chinese Weibo posts with 7 emotions, as weak emotion evidence (evaluation only).

Origin: ``CLUEbenchmark/CLUEmotionAnalysis2020`` at commit
``ff1bc945fc3a5854e0013de5a2f222dd1da61516`` (the corpus of Li et al.,
LREC 2016, built by selecting posts through emotion hashtags). License:
unclear (the repository has no data license). Tier: ``eval``: evaluation and
research runs only, never the shipped model's training data. Language: zh.

Raw rows: ``raw/valid.txt``, JSON lines ``{id, content, label}``, one Weibo
post each. The train split is missing from the snapshot and the test split
is withheld on purpose.

Mapping onto ``shared/LABELS.md``::

    CLUE label          target                                      weight
    anger               emotion_among = frustrated|angry|abusive    1.0
    happiness, like     emotion = calm (exact)                      0.5
    sadness, fear       emotion_among = calm|frustrated             0.5
    disgust, surprise   missing                                     -

- ``anger`` is "not calm", not ``angry``: a Weibo anger post is often only
  ``frustrated`` by LABELS.md, and insults land in it too (no abusive class).
- Positive posts (``happiness``, ``like``) are ``calm`` by LABELS.md; lower
  weight because the labels come from hashtag selection and include
  complaints ("可是我连达到普通人都很难啊，奈何？！" is ``like``).
- Sadness and fear are ``frustrated`` with a complaint and ``calm`` when they
  only inform (LABELS.md), not hostile: "calm or frustrated".
- ``disgust`` (厌恶) would be contempt, but here it covers boredom ("无聊了"),
  embarrassment and plain questions: missing. ``surprise``: missing.
- There is no neutral class, so ``calm`` comes only from positive posts.
- ``escalate`` stays missing: posts are not conversations.

What it cannot express: frustrated vs angry vs abusive, neutral speech,
escalation, context, customer-service speech. ``conversation_id`` is a digest
of the text, so exact duplicates never land in different splits.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tonewatch.data.records import CALM_OR_FRUSTRATED, NOT_CALM, Record
from tonewatch.data.sources.base import Source, load_split_files, text_group_id, warn_skipped
from tonewatch.data.sources.evidence import Evidence, lookup_evidence

NAME = "clue_emotion2020"
TIER = "eval"
SPLIT_FILES: dict[str, str] = {"valid": "raw/valid.txt"}
"""The splits present in the folder and their files (train is missing, test is withheld)."""

LABEL_EVIDENCE: dict[str, Evidence] = {
    "anger": Evidence(None, NOT_CALM, 1.0),
    "happiness": Evidence("calm", (), 0.5),
    "like": Evidence("calm", (), 0.5),
    "sadness": Evidence(None, CALM_OR_FRUSTRATED, 0.5),
    "fear": Evidence(None, CALM_OR_FRUSTRATED, 0.5),
    "disgust": Evidence(None, (), 1.0),
    "surprise": Evidence(None, (), 1.0),
}
"""CLUE Emotion 2020's seven labels onto the label scheme."""


def map_row(row: dict[str, Any], split: str) -> Record | None:
    """The record of one parsed post, or ``None`` when its text is empty."""
    text = str(row.get("content") or "").strip()
    if not text:
        return None
    label = str(row.get("label"))
    evidence = lookup_evidence(LABEL_EVIDENCE, label, f"clue_emotion2020 {split} id {row.get('id')}")
    return Record(
        id=f"{NAME}:{split}:{row['id']}",
        text=text,
        lang="zh",
        source=NAME,
        tier=TIER,
        **evidence._asdict(),
        conversation_id=text_group_id(NAME, text),
        origin_split=split,
        meta={"label": label},
    )


def map_rows(rows: list[dict[str, Any]], split: str) -> list[Record]:
    """Records of the parsed posts of one split file; empty texts are skipped and counted in a warning."""
    records = [record for row in rows if (record := map_row(row, split)) is not None]
    return warn_skipped(records, len(rows), f"clue_emotion2020 {split}", "empty posts")


def load(folder: Path) -> list[Record]:
    """All records of ``folder`` (``<data root>/clue_emotion2020``): the valid split (JSON lines)."""
    return load_split_files(folder, SPLIT_FILES, map_rows, "jsonl")


SOURCE = Source(
    name=NAME,
    langs=("zh",),
    license="unclear (no data license in the repository)",
    tier=TIER,
    origin="CLUEbenchmark/CLUEmotionAnalysis2020@ff1bc945fc3a5854e0013de5a2f222dd1da61516",
    summary="Chinese Weibo posts, 7 emotions: anger -> not calm, positive -> calm, sadness/fear -> calm or frustrated",
    load=load,
)
