"""Counts of records per source x language x label: what ``tonewatch data stats`` prints."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from tonewatch.data.records import Record
from tonewatch.labels import EMOTION_LABELS

_ABBREVIATIONS = {"calm": "c", "frustrated": "f", "angry": "a", "abusive": "x"}


@dataclass(frozen=True)
class StatsRow:
    """Counts for one (source, language)."""

    source: str
    tier: str
    lang: str
    records: int
    emotion: dict[str, int]
    """Exact labels by name, partial evidence by ``a|b`` key, ``-`` for missing."""
    escalate_yes: int
    escalate_no: int
    escalate_missing: int


def partial_abbreviation(key: str) -> str:
    """Short column name of a partial-label key: ``calm|frustrated|angry`` -> ``c|f|a``."""
    return "|".join(_ABBREVIATIONS.get(part, part) for part in key.split("|"))


def source_stats(source: str, tier: str, records: list[Record]) -> list[StatsRow]:
    """One row per language of ``records`` (all from ``source``)."""
    by_lang: dict[str, list[Record]] = {}
    for record in records:
        by_lang.setdefault(record.lang, []).append(record)
    rows = []
    for lang in sorted(by_lang):
        group = by_lang[lang]
        escalation = Counter(record.escalate for record in group)
        rows.append(
            StatsRow(
                source=source,
                tier=tier,
                lang=lang,
                records=len(group),
                emotion=dict(Counter(record.emotion_key for record in group)),
                escalate_yes=escalation[True],
                escalate_no=escalation[False],
                escalate_missing=escalation[None],
            )
        )
    return rows


def emotion_columns(rows: list[StatsRow]) -> list[str]:
    """Exact labels in severity order, then every partial key seen, then ``-`` (missing)."""
    seen = {key for row in rows for key in row.emotion}
    partial = sorted(key for key in seen if "|" in key)
    return [*EMOTION_LABELS, *partial, "-"]


def format_table(rows: list[StatsRow]) -> str:
    """A fixed-width text table of ``rows`` with a totals line and a legend."""
    columns = emotion_columns(rows)
    header = ["source", "tier", "lang", "records"]
    header += [partial_abbreviation(key) if "|" in key else key for key in columns]
    header += ["esc:yes", "esc:no", "esc:-"]
    body = [
        [row.source, row.tier, row.lang, row.records]
        + [row.emotion.get(key, 0) for key in columns]
        + [row.escalate_yes, row.escalate_no, row.escalate_missing]
        for row in rows
    ]
    totals = ["total", "", "", sum(row.records for row in rows)]
    totals += [sum(row.emotion.get(key, 0) for row in rows) for key in columns]
    totals += [sum(getattr(row, name) for row in rows) for name in ("escalate_yes", "escalate_no", "escalate_missing")]
    table = [header, *body, totals]
    widths = [max(len(str(line[i])) for line in table) for i in range(len(header))]

    def render(line: list) -> str:
        cells = [str(cell).ljust(widths[i]) if i < 3 else str(cell).rjust(widths[i]) for i, cell in enumerate(line)]
        return "  ".join(cells).rstrip()

    rule = "  ".join("-" * width for width in widths)
    lines = [render(header), rule, *(render(line) for line in body), rule, render(totals)]
    legend = (
        "emotion: exact labels; a|b = partial evidence (the label is one of these; "
        "c=calm f=frustrated a=angry x=abusive); - = no emotion label. "
        "esc: escalation yes / no / missing. tier: train = may train the shipped model, eval = evaluation only."
    )
    return "\n".join([*lines, "", legend])
