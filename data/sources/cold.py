"""COLD: Chinese offensive vs safe comments, as evidence for ``abusive``.

Origin: ``thu-coai/COLDataset`` at commit ``a0c55a945497ab58e94aef491180e1cf88ffb864``
(Deng et al., EMNLP 2022). License: Apache-2.0. Tier: ``train``.
Language: zh. Raw rows: ``raw/train.csv`` and ``raw/dev.csv`` (UTF-8 with
BOM, columns ``,split,topic,label,TEXT``), one Zhihu/Weibo comment on race,
gender or region each. The official test split is withheld on purpose.

Mapping onto ``shared/LABELS.md``::

    COLD label      target                                  weight
    1 (offensive)   emotion = abusive (exact)               0.0 (never trained on)
    0 (safe)        emotion_among = calm|frustrated|angry   1.0

- Offensive is *not* abusive by LABELS.md, most of the time. COLD's
  offensive class is a comment that offends a person or a group, stereotypes
  and implicit bias included; LABELS.md's ``abusive`` is an insult, slur or
  threat aimed at someone. Of the 500 offensive comments the project
  annotated by the guide (``data/annotations/cold.jsonl``), 77 (15 %) are
  abusive, 114 angry, 129 frustrated and 180 calm ("河南人骗子多的问题..." stated
  as an opinion). Trained as exact ``abusive`` (weight 1.0 until 2026-12-07),
  they taught the model to call a stereotype or a complaint abuse: on the
  held-out real Chinese text the shipped model's abusive precision was 0.20.
  So offensive rows keep COLD's own claim (``abusive``), which the report's
  COLD figure (abusive-vs-rest on COLD's labels) is scored against, with
  weight 0: training drops them. The annotated ones train with their exact
  labels. Safe comments stay "not abusive" (3 % of 500 annotated are abusive).
- Safe is *not* calm: many safe comments are heated opinions, so they only
  say "not abusive" (``NOT_ABUSIVE``).
- ``escalate`` stays missing. LABELS.md rule 3 makes abuse an escalation, but
  COLD has no conversation; deriving escalation from ``abusive`` belongs in
  one place downstream, not copied into each adapter.

What it cannot express: calm vs frustrated vs angry, escalation, context
(every comment stands alone), speech aimed at a service agent.

Quirks of the raw files, handled here:

- The unnamed first column is not a row id (it repeats within a file), so
  record ids are ``cold:<file split>:<0-based data row>``; the column is kept
  in ``meta["row_id"]``.
- ``dev.csv``'s own ``split`` column says ``train`` on about half of its rows;
  ``origin_split`` is the file's split (``dev``), the column is kept in
  ``meta["split_column"]``.
- Some texts occur more than once (67 repeats within train.csv, about 30
  across train.csv and dev.csv, 17 texts with both labels).
  ``conversation_id`` is a digest of the text, so exact duplicates always land
  in the same split.
"""

from __future__ import annotations

from pathlib import Path

from tonewatch.data.records import NOT_ABUSIVE, Record
from tonewatch.data.sources.base import Source, load_split_files, text_group_id, warn_skipped
from tonewatch.data.sources.evidence import Evidence, lookup_evidence

NAME = "cold"
TIER = "train"
SPLIT_FILES: dict[str, str] = {"train": "raw/train.csv", "dev": "raw/dev.csv"}
"""The splits present in the folder and their files (the test split is withheld)."""


LABEL_EVIDENCE: dict[str, Evidence] = {
    "1": Evidence("abusive", (), 0.0),  # offensive: COLD's claim, scored against, never trained on (see above)
    "0": Evidence(None, NOT_ABUSIVE, 1.0),  # safe: often heated opinion, so not calm
}
"""COLD's ``label`` column onto the label scheme."""


def map_row(row: dict[str, str], split: str, index: int) -> Record | None:
    """The record of one parsed CSV row, or ``None`` when its text is empty."""
    text = (row.get("TEXT") or "").strip()
    if not text:
        return None
    label = (row.get("label") or "").strip()
    evidence = lookup_evidence(LABEL_EVIDENCE, label, f"cold {split} row {index}")
    return Record(
        id=f"{NAME}:{split}:{index}",
        text=text,
        lang="zh",
        source=NAME,
        tier=TIER,
        **evidence._asdict(),
        conversation_id=text_group_id(NAME, text),
        origin_split=split,
        meta={
            "label": label,
            "topic": row.get("topic") or "",
            "row_id": row.get("") or "",
            "split_column": row.get("split") or "",
        },
    )


def map_rows(rows: list[dict[str, str]], split: str) -> list[Record]:
    """Records of the parsed rows of one split file; empty texts are skipped and counted in a warning."""
    records = [record for index, row in enumerate(rows) if (record := map_row(row, split, index)) is not None]
    return warn_skipped(records, len(rows), f"cold {split}", "rows with an empty text")


def load(folder: Path) -> list[Record]:
    """All records of ``folder`` (``<data root>/cold``): train, then dev.

    The CSV files start with a BOM; it is dropped, so the unnamed first column is the key ``""``.
    """
    return load_split_files(folder, SPLIT_FILES, map_rows, "csv")


SOURCE = Source(
    name=NAME,
    langs=("zh",),
    license="Apache-2.0",
    license_ids=("apache-2.0",),
    tier=TIER,
    origin="thu-coai/COLDataset@a0c55a945497ab58e94aef491180e1cf88ffb864",
    summary="Chinese offensive vs safe social-media comments: safe -> not abusive; offensive scored, not trained on",
    load=load,
)
