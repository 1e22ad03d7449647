"""waimai_10k: Chinese food-delivery reviews, positive or negative (evaluation only).

Origin: ``SophonPlus/ChineseNlpCorpus`` at commit
``a0b781d72158bde242c0626c9e354d2b328865ff``, ``datasets/waimai_10k``.
License: unclear, provenance unknown (collected online, author and source not
stated). Tier: ``eval``: evaluation and research runs only, never the
shipped model's training data. Language: zh.

Raw rows: ``raw/waimai_10k.csv``, columns ``label,review``, one review of a
delivery order each (``1`` positive, ``0`` negative; how the labels were made
is undocumented, probably from ratings). No split: ``origin_split`` is empty
and record ids are ``waimai_10k:<0-based data row>``.

Mapping onto ``shared/LABELS.md``::

    label            target                   weight
    1 (positive)     emotion = calm (exact)   0.5
    0 (negative)     missing                  -

- Positive reviews are ``calm`` (LABELS.md: neutral or positive); the labels
  are noisy (a positive review can be a complaint, "南瓜羹撒了满口袋"), hence
  the lower weight.
- Negative reviews are kept but get no emotion evidence: they run from plain
  reports of a problem ("甜了点，速度还是挺快的", ``calm`` by LABELS.md,
  which lets a customer describe a problem without negative affect) through
  complaints (``frustrated``) to insults at couriers (``abusive``), so no set
  of labels can be ruled out. ``meta["label"]`` keeps the original label for
  reports.
- ``escalate`` stays missing: "以后不会再买了" is a churn cue, but reviews are
  not conversations and mining such cues would be a guess.

What it cannot express: frustrated vs angry vs abusive, escalation, context.
Seven texts occur twice, each time with both labels; ``conversation_id`` is a
digest of the text, so duplicates never land in different splits.
"""

from __future__ import annotations

from pathlib import Path

from tonewatch.data.records import Record
from tonewatch.data.sources.base import Source, read_rows, text_group_id, warn_skipped
from tonewatch.data.sources.evidence import Evidence, lookup_evidence

NAME = "waimai_10k"
TIER = "eval"
RAW_FILE = "raw/waimai_10k.csv"


LABEL_EVIDENCE: dict[str, Evidence] = {
    "1": Evidence("calm", (), 0.5),  # positive review
    "0": Evidence(None, (), 1.0),  # negative review: anything from a calm report to an insult
}
"""waimai_10k's ``label`` column onto the label scheme."""


def map_row(row: dict[str, str], index: int) -> Record | None:
    """The record of one parsed CSV row, or ``None`` when its review is empty."""
    text = (row.get("review") or "").strip()
    if not text:
        return None
    label = (row.get("label") or "").strip()
    evidence = lookup_evidence(LABEL_EVIDENCE, label, f"waimai_10k row {index}")
    return Record(
        id=f"{NAME}:{index}",
        text=text,
        lang="zh",
        source=NAME,
        tier=TIER,
        **evidence._asdict(),
        conversation_id=text_group_id(NAME, text),
        meta={"label": label},
    )


def map_rows(rows: list[dict[str, str]]) -> list[Record]:
    """Records of the parsed rows; empty reviews are skipped and counted in a warning."""
    records = [record for index, row in enumerate(rows) if (record := map_row(row, index)) is not None]
    return warn_skipped(records, len(rows), "waimai_10k", "rows with an empty review")


def load(folder: Path) -> list[Record]:
    """All records of ``folder`` (``<data root>/waimai_10k``): its one CSV file, which has no split."""
    return map_rows(read_rows(folder / RAW_FILE, "csv"))


SOURCE = Source(
    name=NAME,
    langs=("zh",),
    license="unclear, provenance unknown",
    tier=TIER,
    origin="SophonPlus/ChineseNlpCorpus@a0b781d72158bde242c0626c9e354d2b328865ff",
    summary="Chinese food-delivery reviews: positive -> calm, negative -> kept without emotion evidence",
    load=load,
)
