"""The escalation policy: ``docs/labels.md``'s five escalation rules applied to each turn's emotion and signals.

An :class:`EscalationPolicy` says which rules are on, their thresholds (per rule and per language) and how long a
reason lasts; an :class:`EscalationState` is one conversation's state machine: fed every turn in order (agent turns
with their signals, customer turns with their prediction), it answers each customer turn with an
:class:`Escalation`: ``escalate``, a ``score`` in [0, 1], the active ``reasons`` (most recent first) and the turn
that set off each (``since_turn``).

The reasons (rule names) and what sets them off:

- ``supervisor_request`` (rule 1), ``external_threat`` (rule 2), ``harm_threat`` (rule 3): the customer turn's
  signal probability reaches the rule's threshold;
- ``abuse`` (rule 3): the turn is abusive;
- ``persistent_anger`` (rule 4): an angry (or worse) turn after an agent ``apology_or_offer``, or the
  ``in_a_row``-th angry turn in a row;
- ``refusal_not_accepted`` (rule 5): after an agent ``refusal``, a customer turn with negative affect
  (frustrated or worse);
- ``abuse_after_warning``: an abusive turn after an agent ``abuse_warning`` (the agent may now end the call);
- ``learnt_score``: the model's learnt escalation score reaches its threshold (``learnt_head``: by default only
  for a model without signals, whose triggers the policy cannot see).

How long each lasts (:class:`Persistence`): a supervisor request or external threat stays while it is pending,
until the agent handles it, approximated by an agent ``apology_or_offer`` followed by a calm customer turn, or by
``pending_calm_turns`` calm customer turns in a row; abuse, harm and abuse after a warning until a customer turn
that is no longer hostile (calm or frustrated: the guide's clarification); persistent anger and a refusal not
accepted until a customer turn without negative affect (calm), which also accepts the refusal; the learnt score
for as long as it stays at or above its threshold.

A model without signals (every model before issue #18) predicts no signal: rules 1, 2 and the harm part of 3
cannot fire, rule 4 falls back to angry turns in a row, rule 5 and abuse after a warning never fire, and the learnt
score carries the triggers. Torch-free, like the tracker.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tonewatch import configfile
from tonewatch.conversations import conversation_lang
from tonewatch.labels import AGENT_SIGNALS, CUSTOMER_SIGNALS, EMOTION_LABELS, LANGUAGES, severity
from tonewatch.model.types import Prediction, TurnInput

RULES: tuple[str, ...] = (
    "supervisor_request",
    "external_threat",
    "harm_threat",
    "abuse",
    "abuse_after_warning",
    "persistent_anger",
    "refusal_not_accepted",
)
"""The policy's rules, each the name of the reason it gives (docs/labels.md rules 1, 2, 3, 3, 3, 4, 5)."""

LEARNT_REASON = "learnt_score"
REASONS: tuple[str, ...] = (*RULES, LEARNT_REASON)
"""Every reason an escalation can give."""

_TIE_ORDER: tuple[str, ...] = (
    "abuse_after_warning",
    "harm_threat",
    "abuse",
    "supervisor_request",
    "external_threat",
    "refusal_not_accepted",
    "persistent_anger",
    LEARNT_REASON,
)
"""Among reasons set off by the same turn, the more specific (and urgent) first."""

LEARNT_HEADS: tuple[str, ...] = ("fallback", "or", "off")
"""``fallback``: the learnt score escalates only turns whose model predicts no signals; ``or``: it always may;
``off``: never."""

REASON_TEXT: dict[str, str] = {
    "supervisor_request": "the customer asked for a supervisor or refused to go on with this agent",
    "external_threat": "the customer threatened external action (regulator, court, media, cancelling, a complaint)",
    "harm_threat": "the customer threatened harm to someone, or self-harm",
    "abuse": "the customer is abusive",
    "abuse_after_warning": "the customer is still abusive after the agent's warning: the agent may now end the call",
    "persistent_anger": "the customer's anger persists (after an apology or offer, or turn after turn)",
    "refusal_not_accepted": "the customer does not accept the agent's refusal",
    LEARNT_REASON: "the model's escalation score is high",
}
"""What each reason tells a supervisor (the alert's ``message``)."""

_PENDING = ("supervisor_request", "external_threat")
_HOSTILE = ("abuse", "abuse_after_warning", "harm_threat")
_NEGATIVE = ("persistent_anger", "refusal_not_accepted")


def _check_probability(name: str, value: float | None) -> None:
    if value is not None and not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be a probability in [0, 1], got {value}")


def _check_languages(name: str, thresholds: Mapping[str, float]) -> None:
    for lang, value in thresholds.items():
        if lang not in LANGUAGES:
            raise ValueError(f"{name}: unknown language {lang!r}; expected one of {LANGUAGES}")
        _check_probability(f"{name}[{lang!r}]", value)


def _check_labels(name: str, labels: tuple[str, ...]) -> None:
    unknown = [label for label in labels if label not in EMOTION_LABELS]
    if unknown:
        raise ValueError(f"{name}: unknown labels {unknown}; expected some of {EMOTION_LABELS}")


@dataclass
class SignalThreshold:
    """A probability threshold on one agent signal, with per-language overrides."""

    threshold: float = field(default=0.5, metadata={"help": "The signal counts at or above this probability."})
    thresholds: dict[str, float] = field(default_factory=dict, metadata={"help": "Per-language thresholds."})

    def __post_init__(self) -> None:
        configfile.coerce_fields(self)
        _check_probability("threshold", self.threshold)
        _check_languages("thresholds", self.thresholds)

    def at(self, lang: str | None) -> float:
        return self.thresholds.get(lang or "", self.threshold)


@dataclass
class SignalRule:
    """A rule set off by a customer-turn signal (supervisor_request, external_threat, harm_threat)."""

    enabled: bool = field(default=True, metadata={"help": "Whether the rule escalates at all."})
    threshold: float = field(default=0.5, metadata={"help": "The customer signal's probability that sets it off."})
    thresholds: dict[str, float] = field(default_factory=dict, metadata={"help": "Per-language thresholds."})

    def __post_init__(self) -> None:
        configfile.coerce_fields(self)
        _check_probability("threshold", self.threshold)
        _check_languages("thresholds", self.thresholds)

    def at(self, lang: str | None) -> float:
        return self.thresholds.get(lang or "", self.threshold)


@dataclass
class EmotionRule:
    """A rule set off by a customer turn's emotion (at least a given label)."""

    enabled: bool = field(default=True, metadata={"help": "Whether the rule escalates at all."})
    threshold: float | None = field(
        default=None,
        metadata={
            "help": "Probability of the rule's label or a more severe one that counts (unset: the turn's predicted "
            "label is it or more severe)."
        },
    )
    thresholds: dict[str, float] = field(default_factory=dict, metadata={"help": "Per-language thresholds."})

    def __post_init__(self) -> None:
        configfile.coerce_fields(self)
        _check_probability("threshold", self.threshold)
        _check_languages("thresholds", self.thresholds)

    def at(self, lang: str | None) -> float | None:
        return self.thresholds.get(lang or "", self.threshold)


@dataclass
class PersistentAngerRule(EmotionRule):
    """Rule 4: anger that persists after an agent's apology or offer, or turn after turn."""

    after_offer: bool = field(
        default=True, metadata={"help": "An angry turn after any agent apology_or_offer sets it off."}
    )
    in_a_row: int = field(
        default=2, metadata={"help": "This many angry customer turns in a row set it off (0: never)."}
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.in_a_row < 0 or self.in_a_row == 1:
            raise ValueError(f"in_a_row must be 0 (off) or >= 2, got {self.in_a_row}")


@dataclass
class AgentSignals:
    """Thresholds of the agent-turn signals the rules read."""

    apology_or_offer: SignalThreshold = field(
        default_factory=SignalThreshold, metadata={"help": "Rule 4, and the handover of a pending request."}
    )
    refusal: SignalThreshold = field(default_factory=SignalThreshold, metadata={"help": "Rule 5."})
    abuse_warning: SignalThreshold = field(default_factory=SignalThreshold, metadata={"help": "Abuse after warning."})

    def __post_init__(self) -> None:
        configfile.coerce_fields(self)


@dataclass
class Persistence:
    """How long an active reason lasts."""

    pending_cleared_by_offer: bool = field(
        default=False,
        metadata={
            "help": "A pending supervisor request or external threat is handled once an agent apology_or_offer is "
            "followed by a calm customer turn (the agent transferred or accepted)."
        },
    )
    pending_calm_turns: int = field(
        default=3,
        metadata={"help": "...or after this many calm customer turns in a row without a new trigger (0: never)."},
    )
    pending_clear_labels: tuple[str, ...] = field(
        default=("calm",), metadata={"help": "Labels that count as calm for a pending request or threat."}
    )
    hostile_clear_labels: tuple[str, ...] = field(
        default=("calm", "frustrated"),
        metadata={"help": "A customer turn with one of these labels clears abuse, harm and abuse after warning."},
    )
    negative_clear_labels: tuple[str, ...] = field(
        default=("calm",),
        metadata={"help": "A customer turn with one of these accepts a refusal (clears refusal_not_accepted)."},
    )
    anger_clear_labels: tuple[str, ...] = field(
        default=("calm", "frustrated"),
        metadata={"help": "A customer turn with one of these clears persistent anger: the anger no longer persists."},
    )

    def __post_init__(self) -> None:
        configfile.coerce_fields(self)
        if self.pending_calm_turns < 0:
            raise ValueError(f"pending_calm_turns must be >= 0, got {self.pending_calm_turns}")
        for name in ("pending_clear_labels", "hostile_clear_labels", "negative_clear_labels", "anger_clear_labels"):
            labels = getattr(self, name)
            _check_labels(name, labels)
            if not labels:
                raise ValueError(f"{name} must not be empty: its reasons could never clear")


@dataclass
class EscalationPolicy:
    """Which of the label guide's escalation rules apply, their thresholds, and how long a reason lasts."""

    learnt_head: str = field(
        default="fallback",
        metadata={"help": f"Use of the learnt escalation score: one of {LEARNT_HEADS} (fallback: only for turns "
                          "whose model predicts no signals)."},
    )  # fmt: skip
    supervisor_request: SignalRule = field(default_factory=SignalRule, metadata={"help": "Rule 1."})
    external_threat: SignalRule = field(default_factory=SignalRule, metadata={"help": "Rule 2."})
    harm_threat: SignalRule = field(default_factory=SignalRule, metadata={"help": "Rule 3, threat of harm."})
    abuse: EmotionRule = field(default_factory=EmotionRule, metadata={"help": "Rule 3, an abusive turn."})
    abuse_after_warning: EmotionRule = field(
        default_factory=EmotionRule, metadata={"help": "An abusive turn after an agent abuse_warning."}
    )
    persistent_anger: PersistentAngerRule = field(default_factory=PersistentAngerRule, metadata={"help": "Rule 4."})
    refusal_not_accepted: EmotionRule = field(
        default_factory=EmotionRule,
        metadata={"help": "Rule 5; its threshold is on negative affect (frustrated or worse)."},
    )
    agent_signals: AgentSignals = field(default_factory=AgentSignals, metadata={"help": "Agent-signal thresholds."})
    persistence: Persistence = field(default_factory=Persistence, metadata={"help": "How long a reason lasts."})

    def __post_init__(self) -> None:
        configfile.coerce_fields(self)
        if self.learnt_head not in LEARNT_HEADS:
            raise ValueError(f"learnt_head must be one of {LEARNT_HEADS}, got {self.learnt_head!r}")

    def rule(self, name: str) -> SignalRule | EmotionRule:
        """The settings of rule ``name`` (one of :data:`RULES`)."""
        if name not in RULES:
            raise ValueError(f"unknown rule {name!r}; expected one of {RULES}")
        return getattr(self, name)

    def enabled_rules(self) -> tuple[str, ...]:
        return tuple(name for name in RULES if self.rule(name).enabled)

    def uses_learnt(self, prediction: Prediction) -> bool:
        """Whether the learnt escalation score may escalate this turn (:data:`LEARNT_HEADS`)."""
        return self.learnt_head == "or" or (self.learnt_head == "fallback" and not prediction.signals)

    def agent_signals_needed(self) -> bool:
        """Whether any enabled rule (or the handover of a pending request) reads agent signals."""
        return any(
            self.rule(name).enabled
            for name in ("abuse_after_warning", "persistent_anger", "refusal_not_accepted", *_PENDING)
        )


def load_policy(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> EscalationPolicy:
    """The :class:`EscalationPolicy` of a TOML file (every key optional; unset ones are the guide's defaults).

    A :class:`~tonewatch.configfile.ConfigError` (a ``ValueError``) names the file and the key of an unknown key,
    a wrong type or a bad value."""
    return configfile.load(EscalationPolicy, path, overrides)


# ----------------------------------------------------------------------------- the state machine


@dataclass(frozen=True)
class Escalation:
    """The policy's answer for one customer turn: whether to escalate, why, and since which turn."""

    escalate: bool
    score: float
    """In [0, 1]: the strongest evidence among the active reasons, the turn's signals and (when the learnt head
    is used) the learnt escalation score."""
    reasons: tuple[str, ...] = ()
    """Active reasons, most recent first (among those of the same turn, the more specific first)."""
    since_turn: dict[str, int] = field(default_factory=dict)
    """For each active reason, the index (among all turns of the conversation) of the turn that set it off."""

    @property
    def message(self) -> str:
        """The reasons in words, for a supervisor."""
        if not self.reasons:
            return "no escalation"
        parts = [f"{REASON_TEXT[reason]} (turn {self.since_turn[reason]})" for reason in self.reasons]
        return "Escalate: " + "; ".join(parts) + "."

    def to_dict(self) -> dict[str, Any]:
        return {
            "escalate": self.escalate,
            "score": round(self.score, 6),
            "reasons": list(self.reasons),
            "since_turn": {reason: self.since_turn[reason] for reason in self.reasons},
        }


def escalation_data(escalation: Escalation) -> dict[str, Any]:
    """``escalation`` as JSON-able data, unrounded (:func:`escalation_from_data` reads it back)."""
    return {
        "escalate": escalation.escalate,
        "score": escalation.score,
        "reasons": list(escalation.reasons),
        "since_turn": dict(escalation.since_turn),
    }


def escalation_from_data(data: Mapping[str, Any]) -> Escalation:
    return Escalation(
        bool(data["escalate"]),
        float(data["score"]),
        tuple(data["reasons"]),
        {name: int(turn) for name, turn in data["since_turn"].items()},
    )


@dataclass
class _Active:
    since_turn: int
    evidence: float


def _at_least(prediction: Prediction, label: str) -> float:
    """Probability that the turn is ``label`` or more severe."""
    rank = severity(label)
    return sum(score for name, score in prediction.scores.items() if severity(name) >= rank)


class EscalationState:
    """One conversation's escalation state machine (see the module docstring). Feed every turn in order."""

    def __init__(self, policy: EscalationPolicy | None = None):
        self.policy = policy if policy is not None else EscalationPolicy()
        self._active: dict[str, _Active] = {}
        self._offer_seen = False  # an agent apology_or_offer at any point so far (rule 4)
        self._offer_since_customer = False  # one since the last customer turn (handover of a pending request)
        self._refusal_open = False  # an agent refusal the customer has not accepted yet (rule 5)
        self._warned = False  # the agent has warned about abuse (the warning stands for the conversation)
        self._angry_run = 0
        self._calm_run = 0
        self.current: Escalation | None = None

    def snapshot(self) -> dict[str, Any]:
        """This state as JSON-able data (:meth:`restore` reads it back): what a shared state store keeps."""
        return {
            "active": {name: [active.since_turn, active.evidence] for name, active in self._active.items()},
            "offer_seen": self._offer_seen,
            "offer_since_customer": self._offer_since_customer,
            "refusal_open": self._refusal_open,
            "warned": self._warned,
            "angry_run": self._angry_run,
            "calm_run": self._calm_run,
            "current": None if self.current is None else escalation_data(self.current),
        }

    def restore(self, data: Mapping[str, Any]) -> None:
        """Continue from :meth:`snapshot`'s ``data`` (the policy is this state's own, not the snapshot's)."""
        self._active = {name: _Active(int(turn), float(evidence)) for name, (turn, evidence) in data["active"].items()}
        self._offer_seen = bool(data["offer_seen"])
        self._offer_since_customer = bool(data["offer_since_customer"])
        self._refusal_open = bool(data["refusal_open"])
        self._warned = bool(data["warned"])
        self._angry_run = int(data["angry_run"])
        self._calm_run = int(data["calm_run"])
        self.current = None if data["current"] is None else escalation_from_data(data["current"])

    def agent_turn(self, index: int, signals: Mapping[str, float] | None = None, lang: str | None = None) -> None:
        """An agent turn and its signals (empty for a model without a signal head)."""
        signals = signals or {}
        thresholds = self.policy.agent_signals
        if signals.get("apology_or_offer", 0.0) >= thresholds.apology_or_offer.at(lang):
            self._offer_seen = True
            self._offer_since_customer = True
        if signals.get("refusal", 0.0) >= thresholds.refusal.at(lang):
            self._refusal_open = True
        if signals.get("abuse_warning", 0.0) >= thresholds.abuse_warning.at(lang):
            self._warned = True

    def customer_turn(
        self, index: int, prediction: Prediction, lang: str | None = None, learnt_threshold: float | None = None
    ) -> Escalation:
        """The escalation after customer turn ``index``. ``learnt_threshold``: where the learnt score escalates
        (default: the model's own decision, ``prediction.escalate``)."""
        policy, persistence = self.policy, self.policy.persistence
        label = prediction.emotion

        def emotion_evidence(rule: EmotionRule, at_least: str) -> tuple[bool, float]:
            probability = _at_least(prediction, at_least)
            threshold = rule.at(lang)
            hit = severity(label) >= severity(at_least) if threshold is None else probability >= threshold
            return rule.enabled and hit, probability

        triggered: dict[str, float] = {}
        for name in ("supervisor_request", "external_threat", "harm_threat"):
            rule = policy.rule(name)
            probability = prediction.signals.get(name, 0.0)
            if rule.enabled and name in prediction.signals and probability >= rule.at(lang):
                triggered[name] = probability
        abusive, abuse_evidence = emotion_evidence(policy.abuse, "abusive")
        if abusive:
            triggered["abuse"] = abuse_evidence
        warned_abusive, warned_evidence = emotion_evidence(policy.abuse_after_warning, "abusive")
        if warned_abusive and self._warned:
            triggered["abuse_after_warning"] = warned_evidence
        anger_rule = policy.persistent_anger
        angry, anger_evidence = emotion_evidence(anger_rule, "angry")
        self._angry_run = self._angry_run + 1 if angry else 0
        if angry and (
            (anger_rule.after_offer and self._offer_seen)
            or (anger_rule.in_a_row and self._angry_run >= anger_rule.in_a_row)
        ):
            triggered["persistent_anger"] = anger_evidence
        negative, negative_evidence = emotion_evidence(policy.refusal_not_accepted, "frustrated")
        if negative and self._refusal_open:
            triggered["refusal_not_accepted"] = negative_evidence
        use_learnt = policy.uses_learnt(prediction)
        if use_learnt:
            learnt = prediction.escalate if learnt_threshold is None else prediction.escalate_score >= learnt_threshold
            if learnt:
                triggered[LEARNT_REASON] = prediction.escalate_score

        customer_trigger = any(name in triggered for name in CUSTOMER_SIGNALS)
        calm = label in persistence.pending_clear_labels and not customer_trigger
        self._calm_run = self._calm_run + 1 if calm else 0
        for name in list(self._active):
            if name in triggered:
                continue
            if name in _PENDING:
                handed_over = persistence.pending_cleared_by_offer and self._offer_since_customer and calm
                calmed = persistence.pending_calm_turns and self._calm_run >= persistence.pending_calm_turns
                cleared = handed_over or calmed
            elif name in _HOSTILE:
                cleared = label in persistence.hostile_clear_labels
            elif name == "persistent_anger":
                cleared = label in persistence.anger_clear_labels
            elif name in _NEGATIVE:
                cleared = label in persistence.negative_clear_labels
            else:  # the learnt score: as long as it stays high
                cleared = True
            if cleared:
                del self._active[name]
        if label in persistence.negative_clear_labels:
            self._refusal_open = False  # the customer accepts the answer
        for name, evidence in triggered.items():
            if name in self._active:
                self._active[name].evidence = max(self._active[name].evidence, evidence)
            else:
                self._active[name] = _Active(index, evidence)
        self._offer_since_customer = False

        ordered = sorted(self._active, key=lambda name: (-self._active[name].since_turn, _TIE_ORDER.index(name)))
        evidence = [active.evidence for active in self._active.values()]
        evidence += [prediction.signals.get(name, 0.0) for name in CUSTOMER_SIGNALS if policy.rule(name).enabled]
        if use_learnt:
            evidence.append(prediction.escalate_score)
        self.current = Escalation(
            escalate=bool(ordered),
            score=min(1.0, max([0.0, *evidence])),
            reasons=tuple(ordered),
            since_turn={name: self._active[name].since_turn for name in ordered},
        )
        return self.current


def agent_turn_inputs(conversation: dict) -> list[tuple[int, TurnInput]]:
    """``(turn index, input)`` of every agent turn of a conversation in the project's format, each with every
    earlier turn as context (what :meth:`Classifier.agent_signals` reads)."""
    lang = conversation_lang(conversation)
    inputs, context = [], []
    for index, turn in enumerate(conversation["turns"]):
        text = turn["text"].strip()
        if turn["speaker"] == "agent":
            inputs.append((index, TurnInput(text, tuple(context), lang)))
        context.append((turn["speaker"], text))
    return inputs


def wants_agent_signals(classifier: Any) -> bool:
    """Whether ``classifier`` predicts agent-turn signals (a model with a signal head)."""
    return any(name in AGENT_SIGNALS for name in getattr(classifier, "signal_names", ()) or ())


def escalate_conversation(
    policy: EscalationPolicy,
    conversation: dict,
    predictions: list[Prediction],
    agent_signals: Mapping[int, Mapping[str, float]] | None = None,
) -> list[Escalation]:
    """One :class:`Escalation` per customer turn of ``conversation`` (in order), from the predictions of its
    customer turns and the signals of its agent turns (by turn index; none for a model without them)."""
    state = EscalationState(policy)
    lang = conversation_lang(conversation)
    customer = iter(predictions)
    escalations = []
    for index, turn in enumerate(conversation["turns"]):
        if turn["speaker"] == "customer":
            escalations.append(state.customer_turn(index, next(customer), lang))
        else:
            state.agent_turn(index, (agent_signals or {}).get(index), lang)
    return escalations


def escalate_text(policy: EscalationPolicy, prediction: Prediction, lang: str | None = None) -> Escalation:
    """The escalation of a text without a conversation: the policy after a conversation of that one customer turn
    (a trigger, abuse or the learnt score in it; nothing that needs earlier turns, such as anger in a row).
    ``lang`` is the text's language: the one its :class:`TurnInput` was classified in (given, or read from its
    script), so that the policy's thresholds are the model's."""
    conversation = {"lang": lang, "turns": [{"speaker": "customer", "text": ""}]}
    return escalate_conversation(policy, conversation, [prediction])[0]
