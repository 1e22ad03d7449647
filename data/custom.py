"""A researcher's own data: rows of texts with labels, mapped to records.

Rows come from any table (CSV, JSONL, Parquet, a Hugging Face dataset) with
a ``text`` column and optional ``emotion`` (one of the labels), ``escalate``
(true/false, 1/0, yes/no), ``lang``, ``id`` and ``weight`` columns. Empty
label cells stay missing. Conversations in the project's format go through
:func:`tonewatch.data.records.conversation_records` instead.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from tonewatch.data.records import Record
from tonewatch.labels import EMOTION_LABELS

_TRUE = {"true", "1", "yes", "y", "t"}
_FALSE = {"false", "0", "no", "n", "f"}


class RowFormatError(ValueError):
    """A row of a researcher's table cannot be read (no text, no language, a label that is not one)."""


def parse_escalate(value: Any) -> bool | None:
    """A yes/no cell as bool; empty or missing is ``None``; anything else is a ``ValueError``."""
    if value is None or (isinstance(value, float) and value != value) or value == "":
        return None
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float) and value in (0, 1):
        return bool(value)
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(f"escalate value {value!r} is not true/false")


def parse_emotion(value: Any) -> str | None:
    """An emotion cell: one of the labels, or ``None`` when empty."""
    if value is None or (isinstance(value, float) and value != value) or str(value).strip() == "":
        return None
    label = str(value).strip().lower()
    if label not in EMOTION_LABELS:
        raise ValueError(f"emotion {value!r} is not one of {EMOTION_LABELS}")
    return label


def rows_to_records(
    rows: Iterable[Mapping[str, Any]], *, source: str, lang: str | None = None, tier: str = "train"
) -> list[Record]:
    """Records from text rows; row-level ``lang`` wins over the ``lang`` argument."""
    records = []
    for index, row in enumerate(rows):
        if "text" not in row:
            raise RowFormatError(f"{source}: row {index} has no 'text' column (columns: {sorted(row)})")
        text = row["text"]
        if not isinstance(text, str) or not text.strip():
            raise RowFormatError(f"{source}: row {index} has an empty text")
        row_lang = row.get("lang") or lang
        if row_lang is None:
            raise RowFormatError(f"{source}: row {index} has no 'lang' and none was configured")
        try:
            weight = row.get("weight")
            records.append(
                Record(
                    id=f"{source}:{row.get('id', index)}",
                    text=text.strip(),
                    lang=row_lang,
                    source=source,
                    tier=tier,
                    emotion=parse_emotion(row.get("emotion")),
                    escalate=parse_escalate(row.get("escalate")),
                    weight=float(weight) if weight not in (None, "") else 1.0,
                )
            )
        except ValueError as error:  # a label, weight or language the record refuses
            raise RowFormatError(f"{source}: row {index}: {error}") from None
    return records
