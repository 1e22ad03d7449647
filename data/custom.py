"""A researcher's own data: rows of texts with labels, mapped to records.

Rows come from any table (CSV, JSONL, Parquet, a Hugging Face dataset) with
a ``text`` column and optional ``emotion`` (one of the labels), ``escalate``
(true/false, 1/0, yes/no), ``lang``, ``id`` and ``weight`` columns. Empty
label cells stay missing. Local CSV and JSONL files are read by :func:`read_table`, which keeps each
row's line number for error messages. Conversations in the project's format go through
:func:`tonewatch.data.records.conversation_records` instead.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from tonewatch.conversations import iter_jsonl
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


def read_table(path: str | Path) -> tuple[list[dict[str, Any]], list[str]]:
    """The rows of a local CSV or JSONL file and where each one is (``file:line``, 1-based; a CSV header is
    line 1), so that an error names the line a researcher opens in an editor."""
    path = Path(path)
    if path.suffix.lower() == ".csv":
        rows, locations = [], []
        with open(path, encoding="utf-8-sig", newline="") as handle:
            reader = csv.reader(handle)
            header = [name.strip() for name in next(reader, [])]
            if "text" not in header:
                raise RowFormatError(f"{path}:1: the header has no 'text' column (columns: {header})")
            last_line = reader.line_num
            for cells in reader:
                first_line, last_line = last_line + 1, reader.line_num  # a quoted cell may span lines
                if not cells:
                    continue  # a blank line
                if len(cells) > len(header):
                    raise RowFormatError(f"{path}:{first_line}: more cells than header columns")
                rows.append(dict(zip(header, [*cells, *[None] * (len(header) - len(cells))], strict=True)))
                locations.append(f"{path}:{first_line}")
        return rows, locations
    rows, locations = [], []
    for line in iter_jsonl(path):
        if line.error is not None:
            raise RowFormatError(f"{path}:{line.line_number}: {line.error}")
        if not isinstance(line.value, dict):
            raise RowFormatError(f"{path}:{line.line_number}: a row is a JSON object, got {type(line.value).__name__}")
        rows.append(line.value)
        locations.append(f"{path}:{line.line_number}")
    return rows, locations


def rows_to_records(
    rows: Iterable[Mapping[str, Any]],
    *,
    source: str,
    lang: str | None = None,
    tier: str = "train",
    locations: Sequence[str] | None = None,
) -> list[Record]:
    """Records from text rows; row-level ``lang`` wins over the ``lang`` argument.

    ``locations`` names each row in errors (``file:line`` from :func:`read_table`); without it a row is
    ``source: row N`` (1-based).
    """
    records = []
    for index, row in enumerate(rows):
        where = locations[index] if locations is not None else f"{source}: row {index + 1}"
        if "text" not in row:
            raise RowFormatError(f"{where}: no 'text' column (columns: {sorted(row)})")
        text = row["text"]
        if not isinstance(text, str) or not text.strip():
            raise RowFormatError(f"{where}: empty text")
        row_lang = row.get("lang") or lang
        if row_lang is None:
            raise RowFormatError(f"{where}: no 'lang' and none was configured")
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
            raise RowFormatError(f"{where}: {error}") from None
    return records
