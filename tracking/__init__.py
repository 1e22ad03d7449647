"""Live conversations: per-turn predictions, conversation state, the escalation policy and the supervisor alerts.

Torch-free: the tracker takes any classifier with a ``classify`` method (the
server passes its micro-batched :class:`~tonewatch.model.classifier.Classifier`).
"""

from tonewatch.tracking.policy import (
    LEARNT_HEADS,
    REASONS,
    RULES,
    Escalation,
    EscalationPolicy,
    EscalationState,
    escalate_conversation,
    load_policy,
)
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
    "LEARNT_HEADS",
    "REASONS",
    "RULES",
    "TRENDS",
    "AlertEvent",
    "AlertPolicy",
    "ConversationState",
    "ConversationTracker",
    "Escalation",
    "EscalationPolicy",
    "EscalationState",
    "TurnUpdate",
    "escalate_conversation",
    "load_policy",
]
