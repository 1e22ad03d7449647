"""Live conversations: per-turn predictions, conversation state and the supervisor alert policy.

Torch-free: the tracker takes any classifier with a ``classify`` method (the
server passes its micro-batched :class:`~tonewatch.model.classifier.Classifier`).
"""

from tonewatch.tracking.tracker import (
    EVENT_KINDS,
    TRENDS,
    AlertEvent,
    AlertPolicy,
    ConversationState,
    ConversationTracker,
    TurnUpdate,
)

__all__ = [
    "EVENT_KINDS",
    "TRENDS",
    "AlertEvent",
    "AlertPolicy",
    "ConversationState",
    "ConversationTracker",
    "TurnUpdate",
]
