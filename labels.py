"""The label scheme of ``shared/LABELS.md``: the one place that names the labels.

Every other module derives indices from :data:`EMOTION_LABELS`; nothing else
hard-codes a label's position.
"""

from __future__ import annotations

import re

EMOTION_LABELS: tuple[str, ...] = ("calm", "frustrated", "angry", "abusive")
"""Customer-turn emotion labels, ordered by severity (least to most)."""

ESCALATION_LABEL = "escalate"
"""Name of the binary per-turn escalation target."""

ID2LABEL: dict[int, str] = dict(enumerate(EMOTION_LABELS))
LABEL2ID: dict[str, int] = {label: index for index, label in ID2LABEL.items()}

SPEAKERS: tuple[str, ...] = ("customer", "agent")
"""Speakers of a conversation turn. Only customer turns are labelled."""

LANGUAGES: tuple[str, ...] = ("zh", "ru")

LANGUAGE_SCRIPTS: dict[str, re.Pattern[str]] = {
    "zh": re.compile("[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002ffff]"),  # Han
    "ru": re.compile("[\u0400-\u052f\u1c80-\u1c8f\u2de0-\u2dff\ua640-\ua69f]"),  # Cyrillic
}
"""The script of each language: what :func:`detect_lang` counts."""


CUSTOMER_SIGNALS: tuple[str, ...] = ("supervisor_request", "external_threat", "harm_threat")
"""Escalation triggers read from a customer turn (docs/labels.md, escalation rules 1-3)."""

AGENT_SIGNALS: tuple[str, ...] = ("apology_or_offer", "refusal", "abuse_warning")
"""What an agent turn does that the escalation rules depend on (rules 4-5, abuse after a warning)."""

SIGNALS: tuple[str, ...] = CUSTOMER_SIGNALS + AGENT_SIGNALS
"""Every turn signal, customer's first; a model with a signal head predicts them in this order."""

SIGNAL_SPEAKER: dict[str, str] = {
    **{name: "customer" for name in CUSTOMER_SIGNALS},
    **{name: "agent" for name in AGENT_SIGNALS},
}
"""Whose turn each signal is read from."""


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


def detect_lang(*texts: str) -> str | None:
    """The language of ``texts`` read from their script: the one of :data:`LANGUAGES` whose script has the most
    characters in them (Han: ``zh``, Cyrillic: ``ru``); ``None`` when no character is of either script (digits,
    Latin, emoji) or as many are of each.

    Thresholds are per language, so a turn sent without ``lang`` takes its script's language rather than the
    fallback threshold; every layer (the model, the escalation policy, the tracker, the CLI and the server) reads
    a missing language the same way through this function.
    """
    counts = {lang: sum(len(pattern.findall(text)) for text in texts) for lang, pattern in LANGUAGE_SCRIPTS.items()}
    best = max(counts.values())
    winners = [lang for lang, count in counts.items() if count == best]
    return winners[0] if best and len(winners) == 1 else None
