"""What every source adapter provides: a :class:`Source` entry for the registry."""

from __future__ import annotations

import csv
import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

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

    def __post_init__(self) -> None:
        if self.tier not in TIERS:
            raise ValueError(f"source {self.name!r}: tier must be one of {TIERS}, not {self.tier!r}")


def require_file(path: Path) -> Path:
    """``path`` if it is a file, else a :class:`SourceNotFoundError` naming it."""
    if not path.is_file():
        raise SourceNotFoundError(f"missing data file: {path}")
    return path


def text_group_id(source: str, text: str) -> str:
    """A conversation id shared by every record of ``source`` with exactly this text, so duplicates never split."""
    return f"{source}:text:{hashlib.sha1(text.encode('utf-8')).hexdigest()[:16]}"


def read_csv_rows(path: Path, delimiter: str = ",") -> list[dict[str, str]]:
    """The rows of a CSV (or TSV) file as dicts; a UTF-8 BOM, if any, is dropped."""
    with open(require_file(path), encoding="utf-8-sig", newline="") as handle:
        return list(csv.DictReader(handle, delimiter=delimiter))


def warn_skipped(records: list[Record], total: int, where: str, what: str) -> list[Record]:
    """``records`` as they are, after a warning ``<where>: skipped N <what>`` when fewer than ``total`` came out."""
    if len(records) < total:
        logger.warning("%s: skipped %d %s", where, total - len(records), what)
    return records


def load_split_files(
    folder: Path,
    split_files: dict[str, str],
    read_rows: Callable[[Path], list],
    map_rows: Callable[[list, str], list[Record]],
) -> list[Record]:
    """The records of every ``{split: file name}`` in ``folder``, in order; a missing file raises first."""
    paths = {split: require_file(folder / name) for split, name in split_files.items()}
    return [record for split, path in paths.items() for record in map_rows(read_rows(path), split)]
