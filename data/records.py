"""The record type that every data source is mapped to.

A :class:`Record` is one customer turn (or one stand-alone text) in the label
scheme of ``shared/LABELS.md``: its text, the conversation turns before it,
and whatever labels the source can express. A record of an agent turn carries
turn signals only (``tonewatch.data.signal_labels``). Labels a source cannot express
stay missing (``None``); training masks them instead of inventing them.

Emotion evidence comes in two strengths:

- ``emotion``: the label is known exactly (hand-labelled in-domain data).
- ``emotion_among``: the label is known to be one of a few (weak evidence from
  a public source, e.g. a non-offensive comment is "not abusive", a Weibo
  "angry" post is "frustrated or angry"). Training uses these as partial
  labels: the loss rewards probability mass on the whole set.

:func:`conversation_records` maps a conversation in the project's format
(``tonewatch.conversations``) to one record per customer turn.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tonewatch.conversations import ConversationFormatError, validate_conversation
from tonewatch.labels import EMOTION_LABELS, LANGUAGES, SIGNAL_SPEAKER, SPEAKERS

TIERS: tuple[str, ...] = ("train", "eval")
"""License tiers of ``shared/datasets/INDEX.md``: ``eval`` sources never train the shipped model."""


@dataclass(frozen=True, slots=True)
class Turn:
    """One earlier turn of the conversation, read as context."""

    speaker: str
    text: str

    def __post_init__(self) -> None:
        if self.speaker not in SPEAKERS:
            raise ValueError(f"unknown speaker {self.speaker!r}; expected one of {SPEAKERS}")


@dataclass(frozen=True, slots=True)
class Record:
    """One labelled (or partly labelled) customer turn for training or evaluation."""

    id: str
    """Unique within its source, e.g. ``zh-dev-0001:3`` or ``cold:train:1234``."""
    text: str
    """The customer turn (or stand-alone text) itself."""
    lang: str
    """``zh`` (Simplified or Traditional) or ``ru``."""
    source: str
    """Name of the source in the registry (``tonewatch.data.sources.SOURCES``)."""
    tier: str
    """``train`` or ``eval`` (see :data:`TIERS`)."""
    context: tuple[Turn, ...] = ()
    """Preceding turns of the conversation, oldest first; empty for stand-alone texts."""
    emotion: str | None = None
    """Exact emotion label, or ``None`` when the source does not give one."""
    emotion_among: tuple[str, ...] = ()
    """Partial emotion evidence: the true label is one of these (empty when unknown or exact)."""
    escalate: bool | None = None
    """Escalation label, or ``None`` when the source says nothing about escalation."""
    weight: float = 1.0
    """Relative training weight of this record within its source; 0 = evaluated against, never trained on."""
    conversation_id: str = ""
    """Records sharing a conversation id are never split apart; defaults to ``id``."""
    origin_split: str = ""
    """The source's own split this record came from (``train``, ``dev``, ``valid``...), if any."""
    meta: dict[str, str] = field(default_factory=dict, compare=False)
    """Free-form source fields kept for reporting (domain, channel, original label...)."""
    speaker: str = "customer"
    """Whose turn this is: ``customer`` (every labelled turn), or ``agent`` (a record read for its signals)."""
    signals: dict[str, int] | None = field(default=None, hash=False)
    """Turn-signal labels of this speaker's signals (``labels.SIGNAL_SPEAKER``), 1 or 0 each; None when the turn's
    signals were not annotated (unknown, masked in training), which is not the same as "no signal"."""

    def __post_init__(self) -> None:
        if not self.text or not self.text.strip():
            raise ValueError(f"record {self.id!r}: empty text")
        if self.lang not in LANGUAGES:
            raise ValueError(f"record {self.id!r}: unknown language {self.lang!r}; expected one of {LANGUAGES}")
        if self.tier not in TIERS:
            raise ValueError(f"record {self.id!r}: unknown tier {self.tier!r}; expected one of {TIERS}")
        if self.emotion is not None and self.emotion not in EMOTION_LABELS:
            raise ValueError(f"record {self.id!r}: unknown emotion {self.emotion!r}")
        if self.emotion is not None and self.emotion_among:
            raise ValueError(f"record {self.id!r}: give either an exact emotion or emotion_among, not both")
        unknown = [label for label in self.emotion_among if label not in EMOTION_LABELS]
        if unknown:
            raise ValueError(f"record {self.id!r}: unknown labels in emotion_among: {unknown}")
        if len(self.emotion_among) == 1:
            raise ValueError(f"record {self.id!r}: a one-label emotion_among is an exact emotion; use emotion=")
        if self.weight < 0:
            raise ValueError(f"record {self.id!r}: negative weight {self.weight}")
        if self.speaker not in SPEAKERS:
            raise ValueError(f"record {self.id!r}: unknown speaker {self.speaker!r}; expected one of {SPEAKERS}")
        if self.speaker == "agent" and (self.has_emotion or self.escalate is not None):
            raise ValueError(f"record {self.id!r}: an agent turn has no emotion or escalation label")
        for name, value in (self.signals or {}).items():
            if SIGNAL_SPEAKER.get(name) != self.speaker:
                article = "an" if self.speaker[0] in "aeiou" else "a"
                raise ValueError(f"record {self.id!r}: {name!r} is not {article} {self.speaker} signal")
            if value not in (0, 1):
                raise ValueError(f"record {self.id!r}: signal {name!r} must be 0 or 1, got {value!r}")
        if not self.conversation_id:
            object.__setattr__(self, "conversation_id", self.id)
        # Canonical order, so equal evidence compares equal.
        object.__setattr__(
            self, "emotion_among", tuple(label for label in EMOTION_LABELS if label in self.emotion_among)
        )

    @property
    def has_emotion(self) -> bool:
        """Whether this record carries any emotion evidence (exact or partial)."""
        return self.emotion is not None or bool(self.emotion_among)

    @property
    def emotion_key(self) -> str:
        """A short name of the emotion evidence for tables: the label, ``a|b`` for partial, ``-`` if missing."""
        if self.emotion is not None:
            return self.emotion
        if self.emotion_among:
            return "|".join(self.emotion_among)
        return "-"


NOT_ABUSIVE: tuple[str, ...] = ("calm", "frustrated", "angry")
"""Partial label for text known to be non-abusive but otherwise unlabelled."""

NEGATIVE_NOT_ABUSIVE: tuple[str, ...] = ("frustrated", "angry")
"""Partial label for negative, non-abusive affect whose intensity the source cannot tell."""

NOT_CALM: tuple[str, ...] = ("frustrated", "angry", "abusive")
"""Partial label for negative affect that may or may not be abusive (anger in a source without an abuse class)."""

CALM_OR_FRUSTRATED: tuple[str, ...] = ("calm", "frustrated")
"""Partial label for sadness, fear or worry: frustrated with a complaint, calm when it only informs (LABELS.md)."""


def conversation_records(
    conversation: dict, *, source: str, tier: str, default_lang: str | None = None, weight: float = 1.0
) -> list[Record]:
    """One :class:`Record` per customer turn, each with every earlier turn as context.

    Gold labels are taken from the turn when present and left missing
    otherwise. ``lang`` comes from the conversation, else ``default_lang``.
    """
    validate_conversation(conversation)
    conversation_id = str(conversation["id"])
    lang = conversation.get("lang") or default_lang
    if lang is None:
        raise ConversationFormatError(f"conversation {conversation_id}: no 'lang' and no default language given")
    meta = {key: str(conversation[key]) for key in ("domain", "channel") if key in conversation}
    records = []
    context: list[Turn] = []
    for index, turn in enumerate(conversation["turns"]):
        text = turn["text"].strip()
        if turn["speaker"] == "customer":
            records.append(
                Record(
                    id=f"{conversation_id}:{index}",
                    text=text,
                    lang=lang,
                    source=source,
                    tier=tier,
                    context=tuple(context),
                    emotion=turn.get("emotion"),
                    escalate=turn.get("escalate"),
                    weight=weight,
                    conversation_id=conversation_id,
                    meta=dict(meta),
                )
            )
        context.append(Turn(turn["speaker"], text))
    return records
