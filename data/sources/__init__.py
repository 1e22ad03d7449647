"""The registry of every data source the data layer can read.

Each adapter module maps one source's raw files onto ``shared/LABELS.md`` and
documents the mapping in its docstring (collected in ``data/SOURCES.md``).
"""

from __future__ import annotations

from pathlib import Path

from tonewatch.data.overlays import apply_overlay, source_overlay
from tonewatch.data.paths import resolve_data_root
from tonewatch.data.records import Record
from tonewatch.data.sources import (
    callcenter,
    cedr,
    clue_emotion2020,
    cold,
    cped,
    ru_goemotions,
    ru_paradetox,
    sentirueval,
    smp2020_ewect,
    stc3_dch,
    waimai_10k,
)
from tonewatch.data.sources.base import Source, SourceNotFoundError

SOURCES: dict[str, Source] = {
    source.name: source
    for source in (
        callcenter.DEV_SOURCE,
        callcenter.HELDOUT_SOURCE,
        callcenter.TRAIN_SOURCE,
        cold.SOURCE,
        cped.SOURCE,
        stc3_dch.SOURCE,
        cedr.SOURCE,
        ru_paradetox.SOURCE,
        ru_goemotions.SOURCE,
        smp2020_ewect.SOURCE,
        clue_emotion2020.SOURCE,
        waimai_10k.SOURCE,
        sentirueval.SOURCE,
    )
}
"""Every source by name, in the order of ``shared/datasets/INDEX.md``."""


class UnknownSourceError(KeyError):
    """A source name that is not in :data:`SOURCES`."""

    def __str__(self) -> str:
        return f"unknown source {self.args[0]!r}; known sources: {', '.join(SOURCES)}"


def get_source(name: str) -> Source:
    """The registry entry for ``name``."""
    try:
        return SOURCES[name]
    except KeyError:
        raise UnknownSourceError(name) from None


def source_folder(source: Source, data_root: str | Path | None = None) -> Path:
    """Where ``source``'s files are: inside the package for the project's own data, else under the data root."""
    if source.in_repo:
        return callcenter.PACKAGE_DATA / source.name
    folder = resolve_data_root(data_root) / source.name
    if not folder.is_dir():
        raise SourceNotFoundError(f"source {source.name!r} not found: {folder} does not exist")
    return folder


def load_source(name: str, data_root: str | Path | None = None, annotations: bool = True) -> list[Record]:
    """All records of the source called ``name``, with the project's exact labels (``data/annotations/``) joined
    in unless ``annotations`` is false (see :mod:`tonewatch.data.overlays`)."""
    source = get_source(name)
    records = source.load(source_folder(source, data_root))
    return apply_overlay(records, source_overlay(name), name) if annotations else records


__all__ = ["SOURCES", "Source", "SourceNotFoundError", "UnknownSourceError", "get_source", "load_source"]
