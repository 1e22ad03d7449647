"""Label evidence of the sources in the label scheme: per-label tables, and combining multi-label rows.

Single-label sources (COLD, CPED, SMP2020-EWECT, CLUE, waimai_10k) map each
source label to an :class:`Evidence`; multi-label sources (CEDR,
ru-GoEmotions) map each label to the set of our labels it allows and combine
the sets of one row.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

from tonewatch.labels import EMOTION_LABELS, severity


class Evidence(NamedTuple):
    """What one source label says in the label scheme of LABELS.md (``Record`` keyword arguments)."""

    emotion: str | None
    emotion_among: tuple[str, ...]
    weight: float


def lookup_evidence(table: Mapping[str, Evidence], label: str, where: str, what: str = "label") -> Evidence:
    """``table[label]``; a label the table lacks raises ``ValueError`` naming ``where`` and the known labels."""
    if label not in table:
        raise ValueError(f"{where}: unknown {what} {label!r}; expected one of {list(table)}")
    return table[label]


def union_evidence(label_sets: list[tuple[str, ...]]) -> tuple[str, ...]:
    """Labels allowed by any of ``label_sets``, in severity order."""
    return tuple(label for label in EMOTION_LABELS if any(label in allowed for allowed in label_sets))


def combine_evidence(label_sets: list[tuple[str, ...]]) -> tuple[str, ...]:
    """Our labels allowed by one row whose source labels allow ``label_sets`` each (severity intervals).

    LABELS.md picks the most severe label clearly present, so the row's label
    lies between the highest lower bound and the highest upper bound. A label
    that allows only ``calm`` next to one that excludes ``calm`` is a
    disagreement rather than two emotions present (thanks + anger): then any
    of the labels may be right, and the union is taken.
    """
    if not label_sets:
        return ()
    if any(allowed == ("calm",) for allowed in label_sets) and any("calm" not in allowed for allowed in label_sets):
        return union_evidence(label_sets)
    low = max(min(severity(label) for label in allowed) for allowed in label_sets)
    high = max(max(severity(label) for label in allowed) for allowed in label_sets)
    return EMOTION_LABELS[low : high + 1]


def evidence_fields(allowed: tuple[str, ...]) -> dict[str, object]:
    """``Record`` keyword arguments for a set of allowed labels: exact, partial, or nothing when all are allowed."""
    if not allowed or len(allowed) == len(EMOTION_LABELS):
        return {}
    if len(allowed) == 1:
        return {"emotion": allowed[0]}
    return {"emotion_among": allowed}
