"""The label scheme of ``shared/LABELS.md``: the one place that names the labels.

Every other module derives indices from :data:`EMOTION_LABELS`; nothing else
hard-codes a label's position.
"""

from __future__ import annotations

EMOTION_LABELS: tuple[str, ...] = ("calm", "frustrated", "angry", "abusive")
"""Customer-turn emotion labels, ordered by severity (least to most)."""

ESCALATION_LABEL = "escalate"
"""Name of the binary per-turn escalation target."""

ID2LABEL: dict[int, str] = dict(enumerate(EMOTION_LABELS))
LABEL2ID: dict[str, int] = {label: index for index, label in ID2LABEL.items()}

SPEAKERS: tuple[str, ...] = ("customer", "agent")
"""Speakers of a conversation turn. Only customer turns are labelled."""

LANGUAGES: tuple[str, ...] = ("zh", "ru")


def severity(label: str) -> int:
    """Rank of ``label`` in the severity order (calm = 0)."""
    try:
        return LABEL2ID[label]
    except KeyError:
        raise ValueError(f"unknown emotion label {label!r}; expected one of {EMOTION_LABELS}") from None


def most_severe(labels: list[str] | tuple[str, ...]) -> str:
    """The most severe of ``labels`` (LABELS.md: pick the most severe present)."""
    if not labels:
        raise ValueError("most_severe() needs at least one label")
    return max(labels, key=severity)
