"""Typed configuration of the data layer."""

from __future__ import annotations

from dataclasses import dataclass, field

from tonewatch import configfile
from tonewatch.data.records import TIERS


@dataclass
class DataConfig:
    """Which sources to read, from where, and how to split them."""

    data_root: str | None = field(
        default=None,
        metadata={"help": "Folder holding the third-party datasets (cold/, cedr/, ...); default $TONEWATCH_DATA."},
    )
    sources: tuple[str, ...] = field(
        default=(),
        metadata={"help": "Source names to read (see `tonewatch data sources`); empty means every source."},
    )
    tiers: tuple[str, ...] = field(
        default=TIERS,
        metadata={"help": "License tiers to keep: 'train' only for the shipped model, 'eval' too for research."},
    )
    seed: int = field(default=20261122, metadata={"help": "Seed of the conversation-level split hash."})
    validation_fraction: float = field(
        default=0.1,
        metadata={"help": "Share of conversations held out for validation in sources without an official dev split."},
    )

    def __post_init__(self) -> None:
        configfile.coerce_fields(self)
        unknown_tiers = [tier for tier in self.tiers if tier not in TIERS]
        if unknown_tiers or not self.tiers:
            raise ValueError(f"tiers must be a non-empty subset of {TIERS}, got {self.tiers}")
        if not 0.0 <= self.validation_fraction < 1.0:
            raise ValueError(f"validation_fraction must be in [0, 1), got {self.validation_fraction}")
        from tonewatch.data.sources import SOURCES

        unknown = [name for name in self.sources if name not in SOURCES]
        if unknown:
            raise ValueError(f"unknown sources {unknown}; known: {', '.join(SOURCES)}")

    @property
    def source_names(self) -> tuple[str, ...]:
        """The sources to read: the configured ones, else all, filtered by tier."""
        from tonewatch.data.sources import SOURCES

        names = self.sources or tuple(SOURCES)
        return tuple(name for name in names if SOURCES[name].tier in self.tiers)
