"""What every source adapter provides and shares.

An adapter gives a :class:`Source` entry for the registry and keeps only its
mapping (pure functions from parsed rows to records). Reading is shared:
:func:`read_rows` parses a raw file by format, :func:`load_split_files` reads
every ``{split: file}`` of a source in order, :func:`group_rows_by_text` merges
rows with the same text, and :func:`warn_skipped` counts rows that gave no record.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from tonewatch.conversations import iter_jsonl
from tonewatch.data.records import TIERS, Record

logger = logging.getLogger(__name__)


class SourceNotFoundError(FileNotFoundError):
    """A source's raw files are not where the data root says they are."""


@dataclass(frozen=True)
class Source:
    """A dataset the data layer can read, and how it maps onto LABELS.md."""

    name: str
    """Registry name; also the folder name under the data root."""
    langs: tuple[str, ...]
    license: str
    tier: str
    """``train``: may feed the shipped model; ``eval``: evaluation and research only."""
    origin: str
    """Where the files come from (repository and commit, or "this project")."""
    summary: str
    """One line: what the source is and what it gives in the label scheme."""
    load: Callable[[Path], list[Record]]
    """Reads the source's folder (``<data root>/<name>``) and returns its records."""
    in_repo: bool = False
    """True for the project's own data, which ships inside the package."""
    license_ids: tuple[str, ...] = ()
    """The licenses ``license`` names, as Hugging Face license ids (``apache-2.0``, ``cc-by-4.0``); empty when
    unclear. A model card's ``license`` is derived from them."""

    def __post_init__(self) -> None:
        if self.tier not in TIERS:
            raise ValueError(f"source {self.name!r}: tier must be one of {TIERS}, not {self.tier!r}")
        malformed = [item for item in self.license_ids if not item or item != item.lower() or " " in item]
        if malformed:
            raise ValueError(f"source {self.name!r}: license ids are lower case without spaces, not {malformed}")


def require_file(path: Path) -> Path:
    """``path`` if it is a file, else a :class:`SourceNotFoundError` naming it."""
    if not path.is_file():
        raise SourceNotFoundError(f"missing data file: {path}")
    return path


def text_group_id(source: str, text: str) -> str:
    """A conversation id shared by every record of ``source`` with exactly this text, so duplicates never split."""
    return f"{source}:text:{hashlib.sha1(text.encode('utf-8')).hexdigest()[:16]}"


def warn_skipped(records: list[Record], total: int, where: str, what: str) -> list[Record]:
    """``records`` as they are, after a warning ``<where>: skipped N <what>`` when fewer than ``total`` came out."""
    if len(records) < total:
        logger.warning("%s: skipped %d %s", where, total - len(records), what)
    return records


def group_rows_by_text(rows: list[dict[str, str]], column: str, where: str) -> dict[str, list[int]]:
    """The positions of the rows sharing each text of ``column`` (stripped), texts in order of first appearance.

    Rows with an empty text are left out, with a warning ``<where>: skipped N rows with an empty text``.
    """
    groups: dict[str, list[int]] = {}
    skipped = 0
    for position, row in enumerate(rows):
        text = (row.get(column) or "").strip()
        if not text:
            skipped += 1
            continue
        groups.setdefault(text, []).append(position)
    if skipped:
        logger.warning("%s: skipped %d rows with an empty text", where, skipped)
    return groups


ROW_FORMATS: tuple[str, ...] = ("csv", "tsv", "jsonl", "json")
"""Raw file formats :func:`read_rows` reads: CSV or TSV with a header row, JSON lines, a JSON array."""


def read_rows(path: Path, row_format: str) -> list:
    """The rows of one raw file in ``row_format`` (one of :data:`ROW_FORMATS`); a UTF-8 BOM, if any, is dropped.

    CSV and TSV rows are dicts keyed by the header (CSV quoting in both: some
    TSV cells are quoted and span lines); a JSON-lines file skips blank lines
    and raises ``ValueError`` with the number of the first broken line; a JSON
    file must hold an array. A missing file raises :class:`SourceNotFoundError`.
    """
    if row_format not in ROW_FORMATS:
        raise ValueError(f"unknown row format {row_format!r}; expected one of {ROW_FORMATS}")
    require_file(path)
    if row_format in ("csv", "tsv"):
        with open(path, encoding="utf-8-sig", newline="") as handle:
            return list(csv.DictReader(handle, delimiter="\t" if row_format == "tsv" else ","))
    if row_format == "jsonl":
        rows = []
        for line in iter_jsonl(path):
            if line.error is not None:
                raise ValueError(f"{path}:{line.line_number}: {line.error}")
            rows.append(line.value)
        return rows
    with open(path, encoding="utf-8-sig") as handle:
        rows = json.load(handle)
    if not isinstance(rows, list):
        raise ValueError(f"{path}: expected a JSON array of rows, got {type(rows).__name__}")
    return rows


def load_split_files(
    folder: Path,
    split_files: Mapping[str | tuple[str, ...], str],
    map_rows: Callable[..., list[Record]],
    row_format: str | Callable[[Path], list] = "csv",
) -> list[Record]:
    """The records of every file of ``split_files`` in ``folder``, in order; a missing file raises before any is read.

    ``split_files`` maps a split to its file under ``folder``; where a source's
    files differ by more than the split, the key is a tuple such as
    ``(split, domain)``. Each file is read with :func:`read_rows` in
    ``row_format`` (or by ``row_format`` itself when it is a reader of another
    format) and mapped by ``map_rows(rows, split)``, or ``map_rows(rows, *key)``
    for a tuple key.
    """
    keyed_paths = [
        ((key,) if isinstance(key, str) else key, require_file(folder / name)) for key, name in split_files.items()
    ]
    read = row_format if callable(row_format) else partial(read_rows, row_format=row_format)
    return [record for key, path in keyed_paths for record in map_rows(read(path), *key)]
