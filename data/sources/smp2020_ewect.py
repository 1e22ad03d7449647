"""SMP2020-EWECT: Chinese Weibo posts with 6 emotions, as weak emotion evidence (evaluation only).

Origin: ``BrownSweater/BERT_SMP2020-EWECT`` (a third-party mirror of the
SMP2020 Weibo emotion evaluation, labels by HIT-SCIR) at commit
``e928cec001824668999ed02326aacbea0d369563``. License: unclear (no license
file, no redistribution terms). Tier: ``eval``: evaluation and research runs
only, never the shipped model's training data. Language: zh.

Raw rows: JSON arrays of ``{id, content, label}``, one Weibo post each:
``raw/usual_eval_labeled.txt`` (random topics), ``raw/virus_eval_labeled.txt``
and ``raw/virus_train.txt`` (COVID-19 posts). ``usual_train`` is missing from
the snapshot and the test files are withheld on purpose. ``origin_split`` is
``eval`` or ``train``; the topic set is ``meta["domain"]`` (``usual`` or
``virus``) and part of the record id (``smp2020_ewect:usual_eval:17``).

Mapping onto ``shared/LABELS.md``::

    SMP2020 label    target                                      weight
    angry            emotion_among = frustrated|angry|abusive    1.0
    neutral          emotion = calm (exact)                      0.5
    happy            emotion = calm (exact)                      0.5
    sad, fear        emotion_among = calm|frustrated             0.5
    surprise         missing                                     -

- ``angry`` (愤怒) is "not calm" rather than ``angry``: by LABELS.md an angry
  Weibo post is often only ``frustrated`` (complaining about the situation,
  "为什么会这么疼呢"), and insults aimed at people ("就是一垃圾") also land in
  ``angry`` because the source has no abusive class, so the usual
  ``NEGATIVE_NOT_ABUSIVE`` would be wrong for them.
- ``neutral`` and ``happy`` (positive) are ``calm`` by LABELS.md, but they are
  news sentences and personal posts, not customer speech: lower weight.
- Sadness and fear are ``frustrated`` with a complaint and ``calm`` when they
  only inform (LABELS.md), not hostile: "calm or frustrated".
- ``surprise`` (惊奇) runs from delight to "怎么又出现…？？": missing.
- ``escalate`` stays missing: posts are not conversations.

What it cannot express: frustrated vs angry vs abusive, escalation, context,
customer-service speech. Exact duplicate posts (about a thousand, mostly
short virus posts such as slogans) share a ``conversation_id`` (a digest of the
text), so they never land in different splits.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tonewatch.data.records import CALM_OR_FRUSTRATED, NOT_CALM, Record
from tonewatch.data.sources.base import Source, load_split_files, text_group_id, warn_skipped
from tonewatch.data.sources.evidence import Evidence, lookup_evidence

NAME = "smp2020_ewect"
TIER = "eval"


SPLIT_FILES: dict[tuple[str, str], str] = {
    ("eval", "usual"): "raw/usual_eval_labeled.txt",
    ("eval", "virus"): "raw/virus_eval_labeled.txt",
    ("train", "virus"): "raw/virus_train.txt",
}
"""``(split, topic set)`` of the files present in the folder (usual_train is missing, the test files are withheld)."""

LABEL_EVIDENCE: dict[str, Evidence] = {
    "angry": Evidence(None, NOT_CALM, 1.0),
    "neutral": Evidence("calm", (), 0.5),
    "happy": Evidence("calm", (), 0.5),
    "sad": Evidence(None, CALM_OR_FRUSTRATED, 0.5),
    "fear": Evidence(None, CALM_OR_FRUSTRATED, 0.5),
    "surprise": Evidence(None, (), 1.0),
}
"""SMP2020-EWECT's six labels onto the label scheme."""


def map_row(row: dict[str, Any], split: str, domain: str) -> Record | None:
    """The record of one parsed post, or ``None`` when its text is empty."""
    text = str(row.get("content") or "").strip()
    if not text:
        return None
    label = str(row.get("label"))
    evidence = lookup_evidence(LABEL_EVIDENCE, label, f"smp2020_ewect {domain}_{split} id {row.get('id')}")
    return Record(
        id=f"{NAME}:{domain}_{split}:{row['id']}",
        text=text,
        lang="zh",
        source=NAME,
        tier=TIER,
        **evidence._asdict(),
        conversation_id=text_group_id(NAME, text),
        origin_split=split,
        meta={"label": label, "domain": domain},
    )


def map_rows(rows: list[dict[str, Any]], split: str, domain: str) -> list[Record]:
    """Records of the parsed posts of one file; empty texts are skipped and counted in a warning."""
    records = [record for row in rows if (record := map_row(row, split, domain)) is not None]
    return warn_skipped(records, len(rows), f"smp2020_ewect {domain}_{split}", "empty posts")


def load(folder: Path) -> list[Record]:
    """All records of ``folder`` (``<data root>/smp2020_ewect``): usual eval, virus eval, virus train (JSON arrays)."""
    return load_split_files(folder, SPLIT_FILES, map_rows, "json")


SOURCE = Source(
    name=NAME,
    langs=("zh",),
    license="unclear (no license in the mirror)",
    tier=TIER,
    origin="BrownSweater/BERT_SMP2020-EWECT@e928cec001824668999ed02326aacbea0d369563",
    summary="Chinese Weibo posts, 6 emotions: angry -> not calm, neutral/happy -> calm, sad/fear -> calm or frustrated",
    load=load,
)
