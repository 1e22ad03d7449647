"""What every source adapter provides: a :class:`Source` entry for the registry."""

from __future__ import annotations

import csv
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tonewatch.data.records import TIERS, Record


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
