"""Live conversations: per-turn predictions, conversation state, and the alert policy.

A :class:`ConversationTracker` is fed the turns of one conversation as they
happen (customer and agent). Each customer turn is classified with the
preceding turns as context (as many as the model reads), and the tracker keeps
the dialogue-level outputs of ``shared/LABELS.md``: the most severe label so
far, the trend (worsening / stable / calming), the escalation score and the
first turn at which escalation became true.

An :class:`AlertPolicy` turns those scores into supervisor alerts:

- an alert is raised when a customer turn's escalation score reaches the
  raise threshold of its language (by default the model's calibrated
  threshold), or at once when its label is one of ``immediate_labels``
  (``abusive``);
- hysteresis: a raised alert stays active until the score has been below the
  lower *clear* threshold (and the label calm or frustrated) for
  ``clear_turns`` customer turns in a row; then an ``all_clear`` event is sent;
- cooldown: after an all clear, a score-based alert is held back for
  ``cooldown_turns`` customer turns and ``cooldown_seconds``, so that one
  episode makes one alert (LABELS.md: an alert that fires, clears and fires
  again within a few turns is noise). An immediate label is never held back.

Each customer turn also goes through the conversation's escalation state machine
(:mod:`tonewatch.tracking.policy`: the label guide's rules on the turn's emotion and
signals, and on the agent turns' signals); an alert is raised when the escalation is
on, at once (whatever the cooldown) when one of its reasons is in ``immediate_reasons``
or the label in ``immediate_labels``, and a further alert within an episode when one of
``update_reasons`` sets off (abuse after the agent's warning: the agent may now end the
call). All clear needs the escalation off as well. For a model without signals the
escalation is the learnt score's (the raise threshold above) plus the emotion rules, so
its alerts from the score are those it always raised.

Every event carries its reasons: the rules and the turn that set off each, a message for
the supervisor, the label, the score, the threshold and the turn (index and text) that
caused it.
"""

from __future__ import annotations

import dataclasses
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from tonewatch.labels import EMOTION_LABELS, LANGUAGES, SPEAKERS, detect_lang, severity
from tonewatch.model.types import Calibration, Prediction, TurnInput
from tonewatch.tracking.policy import (
    LEARNT_REASON,
    REASONS,
    Escalation,
    EscalationPolicy,
    EscalationState,
    escalation_data,
    escalation_from_data,
    wants_agent_signals,
)

TRENDS: tuple[str, ...] = ("worsening", "stable", "calming")
"""Values of :attr:`ConversationState.trend`."""

EVENT_KINDS: tuple[str, ...] = ("alert", "all_clear", "ended")
"""Kinds of :class:`AlertEvent`: an alert raised, a conversation calmed down, a conversation ended."""


class TurnClassifier(Protocol):
    """What the tracker needs of a classifier: :class:`~tonewatch.model.classifier.Classifier` fits."""

    def classify(self, items: Sequence[TurnInput | str], batch_size: int = ...) -> list[Prediction]: ...


@dataclass
class AlertPolicy:
    """When a live conversation raises a supervisor alert, and when it is all clear again."""

    escalation_thresholds: dict[str, float] = field(
        default_factory=dict,
        metadata={"help": "Per-language raise thresholds on the escalation score; unset languages use the model's."},
    )
    escalation_threshold: float | None = field(
        default=None,
        metadata={"help": "Raise threshold for languages without one (default: the model's calibrated threshold)."},
    )
    hysteresis: float = field(
        default=0.15,
        metadata={"help": "An alert clears only below raise threshold - hysteresis (so scores near it do not flap)."},
    )
    clear_turns: int = field(
        default=2,
        metadata={"help": "Customer turns in a row below the clear threshold, calm or frustrated, before all clear."},
    )
    cooldown_turns: int = field(
        default=3, metadata={"help": "Customer turns after an all clear during which no score-based alert is raised."}
    )
    cooldown_seconds: float = field(
        default=30.0, metadata={"help": "Seconds after an all clear during which no score-based alert is raised."}
    )
    immediate_labels: tuple[str, ...] = field(
        default=("abusive",),
        metadata={"help": "Labels that raise an alert at once, whatever the score and the cooldown."},
    )
    clear_labels: tuple[str, ...] = field(
        default=("calm", "frustrated"), metadata={"help": "Labels a customer turn may have to count towards all clear."}
    )
    immediate_reasons: tuple[str, ...] = field(
        default=("abuse", "abuse_after_warning", "harm_threat", "supervisor_request", "external_threat"),
        metadata={"help": "Escalation reasons that raise an alert at once, whatever the cooldown."},
    )
    update_reasons: tuple[str, ...] = field(
        default=("abuse_after_warning", "harm_threat", "supervisor_request", "external_threat"),
        metadata={"help": "Escalation reasons that raise a further alert when they set off during an active one."},
    )
    trend_window: int = field(default=3, metadata={"help": "Customer turns the trend looks at."})
    trend_delta: float = field(
        default=0.1, metadata={"help": "Change in turn risk (0-1) that makes the trend worsening or calming."}
    )

    def __post_init__(self) -> None:
        self.immediate_labels = tuple(self.immediate_labels)
        self.clear_labels = tuple(self.clear_labels)
        self.immediate_reasons = tuple(self.immediate_reasons)
        self.update_reasons = tuple(self.update_reasons)
        for name, reasons in (("immediate_reasons", self.immediate_reasons), ("update_reasons", self.update_reasons)):
            unknown = [reason for reason in reasons if reason not in REASONS]
            if unknown:
                raise ValueError(f"{name}: unknown reasons {unknown}; expected some of {REASONS}")
        self.escalation_thresholds = dict(self.escalation_thresholds)
        for lang, value in self.escalation_thresholds.items():
            if lang not in LANGUAGES:
                raise ValueError(f"escalation_thresholds: unknown language {lang!r}; expected one of {LANGUAGES}")
            _check_probability(f"escalation_thresholds[{lang!r}]", value)
        if self.escalation_threshold is not None:
            _check_probability("escalation_threshold", self.escalation_threshold)
        if not 0.0 <= self.hysteresis < 1.0:
            raise ValueError(f"hysteresis must be in [0, 1), got {self.hysteresis}")
        if self.clear_turns < 1:
            raise ValueError(f"clear_turns must be >= 1, got {self.clear_turns}")
        if self.cooldown_turns < 0 or self.cooldown_seconds < 0:
            raise ValueError("cooldown_turns and cooldown_seconds must be >= 0")
        for name, labels in (("immediate_labels", self.immediate_labels), ("clear_labels", self.clear_labels)):
            unknown = [label for label in labels if label not in EMOTION_LABELS]
            if unknown:
                raise ValueError(f"{name}: unknown labels {unknown}; expected some of {EMOTION_LABELS}")
        if not self.clear_labels:
            raise ValueError("clear_labels must not be empty: no conversation could ever clear")
        if set(self.immediate_labels) & set(self.clear_labels):
            raise ValueError("a label cannot be both in immediate_labels and clear_labels")
        if self.trend_window < 2:
            raise ValueError(f"trend_window must be >= 2, got {self.trend_window}")
        if not 0.0 < self.trend_delta < 1.0:
            raise ValueError(f"trend_delta must be in (0, 1), got {self.trend_delta}")

    def with_calibration(self, calibration: Calibration) -> AlertPolicy:
        """A copy whose unset thresholds are the model's calibrated ones (explicit settings win)."""
        thresholds = {**calibration.escalation_thresholds, **self.escalation_thresholds}
        default = self.escalation_threshold
        if default is None:
            default = calibration.escalation_threshold
        return dataclasses.replace(self, escalation_thresholds=thresholds, escalation_threshold=default)

    def raise_threshold(self, lang: str | None) -> float:
        """Escalation score at or above which a turn in ``lang`` raises an alert."""
        default = 0.5 if self.escalation_threshold is None else self.escalation_threshold
        return self.escalation_thresholds.get(lang or "", default)

    def clear_threshold(self, lang: str | None) -> float:
        """Escalation score below which a turn in ``lang`` counts towards all clear."""
        return round(max(0.0, self.raise_threshold(lang) - self.hysteresis), 6)

    def thresholds(self) -> dict[str, dict[str, float]]:
        """Raise and clear thresholds per language, and the default (``"*"``), for ``/v1/info``."""
        langs = [*LANGUAGES, *sorted(set(self.escalation_thresholds) - set(LANGUAGES))]
        return {
            lang: {"raise": self.raise_threshold(lang), "clear": self.clear_threshold(lang)} for lang in [*langs, "*"]
        }


def _check_probability(name: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be a number in [0, 1], got {value!r}")


def turn_risk(prediction: Prediction) -> float:
    """Risk of one customer turn in [0, 1]: its label's severity, its expected severity, its escalation score."""
    top = len(EMOTION_LABELS) - 1
    expected = sum(severity(label) * score for label, score in prediction.scores.items()) / top
    return (severity(prediction.emotion) / top + expected + prediction.escalate_score) / 3


@dataclass(frozen=True)
class AlertEvent:
    """An event for supervisors: an alert raised, an all clear, or a conversation ended, with its reason."""

    kind: str
    conversation_id: str
    reason: str
    """``abusive`` / ``escalation`` (alert), ``calmed_down`` (all clear), ``deleted`` / ``expired`` / ``shutdown``
    (ended: the server stopped and kept the conversation in memory only)."""
    reasons: tuple[str, ...] = ()
    """An alert's escalation reasons (rule names of :mod:`tonewatch.tracking.policy`), most recent first."""
    since_turn: dict[str, int] = field(default_factory=dict)
    """For each reason, the index of the turn that set it off."""
    message: str | None = None
    """What happened, in words, for a supervisor."""
    turn_index: int | None = None
    """Index of the turn that caused the event among all turns of the conversation (agent turns included)."""
    label: str | None = None
    score: float | None = None
    """The escalation score of that turn."""
    threshold: float | None = None
    """The threshold it crossed (raise threshold for an alert, clear threshold for an all clear)."""
    text: str | None = None
    lang: str | None = None
    queue: str | None = None
    team: str | None = None
    most_severe_label: str | None = None
    alerts_raised: int = 0
    time: float = 0.0
    """Unix time of the event."""
    id: int = 0
    """Sequence number given by the publisher (0 until published)."""

    def to_dict(self, include_text: bool = True) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["reasons"] = list(self.reasons)
        if data["score"] is not None:
            data["score"] = round(data["score"], 6)
        if not include_text:
            data["text"] = None
        return data


@dataclass(frozen=True)
class TrackedTurn:
    """One turn as the tracker keeps it for display."""

    index: int
    speaker: str
    text: str
    prediction: Prediction | None = None
    escalation: Escalation | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "speaker": self.speaker,
            "text": self.text,
            "prediction": prediction_dict(self.prediction, self.escalation) if self.prediction else None,
        }


def prediction_dict(prediction: Prediction, escalation: Escalation | None = None) -> dict[str, Any]:
    """A customer turn's prediction as ``tonewatch label`` writes it: the model's fields, then the policy's
    ``escalation`` (when the turn was read in its conversation)."""
    data = prediction.to_dict()
    if escalation is not None:
        data["escalation"] = escalation.to_dict()
    return data


@dataclass(frozen=True)
class ConversationState:
    """The dialogue-level outputs of one live conversation after its latest turn."""

    conversation_id: str
    lang: str | None
    queue: str | None
    team: str | None
    turns: int
    customer_turns: int
    current_label: str | None
    most_severe_label: str | None
    trend: str
    escalation_score: float | None
    escalate: bool
    """Whether the escalation policy escalates after the latest customer turn."""
    first_escalation_turn: int | None
    alert_active: bool
    alerts_raised: int
    risk: float
    """Risk of the latest customer turn in [0, 1] (0 before any); :meth:`sort_key` puts active alerts first."""
    last_alert: AlertEvent | None
    recent_turns: tuple[TrackedTurn, ...]
    started_at: float
    updated_at: float
    escalation: Escalation | None = None
    """The policy's escalation after the latest customer turn: score, active reasons and their turns."""

    def sort_key(self) -> tuple[bool, float, float]:
        """Riskiest first when sorted in reverse: active alert, then risk, then most recent activity."""
        return (self.alert_active, self.risk, self.updated_at)

    def to_dict(self, include_text: bool = True) -> dict[str, Any]:
        return {
            "conversation_id": self.conversation_id,
            "lang": self.lang,
            "queue": self.queue,
            "team": self.team,
            "turns": self.turns,
            "customer_turns": self.customer_turns,
            "current_label": self.current_label,
            "most_severe_label": self.most_severe_label,
            "trend": self.trend,
            "escalation_score": None if self.escalation_score is None else round(self.escalation_score, 6),
            "escalate": self.escalate,
            "first_escalation_turn": self.first_escalation_turn,
            "alert_active": self.alert_active,
            "alerts_raised": self.alerts_raised,
            "risk": round(self.risk, 6),
            "last_alert": self.last_alert.to_dict(include_text) if self.last_alert else None,
            "recent_turns": [
                {**turn.to_dict(), "text": turn.text if include_text else None} for turn in self.recent_turns
            ],
            "started_at": self.started_at,
            "updated_at": self.updated_at,
            "escalation": self.escalation.to_dict() if self.escalation else None,
        }


@dataclass(frozen=True)
class TurnUpdate:
    """What one turn produced: its prediction (``None`` for agent turns), the new state, and an event if any."""

    prediction: Prediction | None
    state: ConversationState
    event: AlertEvent | None

    @property
    def escalation(self) -> Escalation | None:
        """The policy's escalation after this turn (``None`` for an agent turn)."""
        return self.state.escalation if self.prediction is not None else None

    @property
    def alert(self) -> AlertEvent | None:
        """The event when this turn raised an alert (not an all clear)."""
        return self.event if self.event is not None and self.event.kind == "alert" else None


class ConversationTracker:
    """One live conversation: feed it turns, read its state and the alerts it raises.

    ``classifier`` is only needed by :meth:`add_turn`; a server that batches
    model calls itself uses :meth:`turn_input` and :meth:`observe` instead.
    ``policy`` should already carry the model's thresholds
    (:meth:`AlertPolicy.with_calibration`; :meth:`for_classifier` does it); ``escalation`` is the
    :class:`EscalationPolicy` (default: the label guide's rules).
    ``clock`` (seconds, monotonic) times the cooldown; ``wall_clock`` stamps events.
    ``on_event(event)`` receives every event this tracker makes (a publisher); when it returns an
    event (e.g. the same one numbered), that one is kept and returned instead.
    """

    def __init__(
        self,
        conversation_id: str,
        *,
        policy: AlertPolicy | None = None,
        escalation: EscalationPolicy | None = None,
        max_context_turns: int = 4,
        classifier: TurnClassifier | None = None,
        lang: str | None = None,
        queue: str | None = None,
        team: str | None = None,
        keep_turns: int = 10,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        on_event: Callable[[AlertEvent], AlertEvent | None] | None = None,
    ):
        if max_context_turns < 0:
            raise ValueError(f"max_context_turns must be >= 0, got {max_context_turns}")
        if keep_turns < 1:
            raise ValueError(f"keep_turns must be >= 1, got {keep_turns}")
        _check_lang(lang)
        self.conversation_id = str(conversation_id)
        self.policy = policy if policy is not None else AlertPolicy()
        self.escalation_policy = escalation if escalation is not None else EscalationPolicy()
        self._escalation = EscalationState(self.escalation_policy)
        self.classifier = classifier
        self.lang = lang
        self.queue = queue
        self.team = team
        self._clock = clock
        self._wall_clock = wall_clock
        self._on_event = on_event
        # Only what the model reads is kept as context, and only keep_turns for display: memory stays bounded.
        self._context: deque[tuple[str, str]] = deque(maxlen=max_context_turns)
        self._recent: deque[TrackedTurn] = deque(maxlen=keep_turns)
        self._risks: deque[float] = deque(maxlen=self.policy.trend_window)
        self.turns = 0
        self.customer_turns = 0
        self._current: Prediction | None = None
        self._most_severe: str | None = None
        self._first_escalation: int | None = None
        self._alert_active = False
        self._alerts_raised = 0
        self._last_alert: AlertEvent | None = None
        self._calm_streak = 0
        self._cleared_at: tuple[int, float] | None = None  # (customer turns, clock) at the last all clear
        self._held_back = False  # a score-based alert was held back by the cooldown and the score is still high
        self._held_back_turn: int | None = None  # the turn whose alert was held back
        self.started_at = wall_clock()
        self.updated_at = self.started_at
        self.last_activity = clock()

    @classmethod
    def for_classifier(
        cls,
        classifier,
        conversation_id: str,
        policy: AlertPolicy | None = None,
        escalation: EscalationPolicy | None = None,
        **options,
    ) -> ConversationTracker:
        """A tracker reading as much context as ``classifier``'s model does, with its calibrated thresholds."""
        config = classifier.config
        policy = (policy if policy is not None else AlertPolicy()).with_calibration(config.calibration)
        return cls(
            conversation_id,
            policy=policy,
            escalation=escalation,
            max_context_turns=config.limits.max_context_turns,
            classifier=classifier,
            **options,
        )

    def snapshot(self) -> dict[str, Any]:
        """Everything this tracker knows, as JSON-able data: what a shared state store keeps between turns, so
        that another process (or this one after a restart) continues the conversation with :meth:`restore`.
        Times are this tracker's clocks' (a store shared between processes gives them the wall clock)."""
        return {
            "version": SNAPSHOT_VERSION,
            "conversation_id": self.conversation_id,
            "lang": self.lang,
            "queue": self.queue,
            "team": self.team,
            "turns": self.turns,
            "customer_turns": self.customer_turns,
            "context": [list(turn) for turn in self._context],
            "recent": [_turn_data(turn) for turn in self._recent],
            "risks": list(self._risks),
            "current": _prediction_data(self._current),
            "most_severe": self._most_severe,
            "first_escalation": self._first_escalation,
            "alert_active": self._alert_active,
            "alerts_raised": self._alerts_raised,
            "last_alert": None if self._last_alert is None else dataclasses.asdict(self._last_alert),
            "calm_streak": self._calm_streak,
            "cleared_at": None if self._cleared_at is None else list(self._cleared_at),
            "held_back": self._held_back,
            "held_back_turn": self._held_back_turn,
            "started_at": self.started_at,
            "updated_at": self.updated_at,
            "last_activity": self.last_activity,
            "escalation": self._escalation.snapshot(),
        }

    @classmethod
    def restore(cls, data: dict[str, Any], **options) -> ConversationTracker:
        """The tracker that :meth:`snapshot` gave ``data``, continued with ``options`` (policy, escalation,
        max_context_turns, keep_turns, clocks, on_event: as for a new tracker; the policy is the caller's now)."""
        if data.get("version") != SNAPSHOT_VERSION:
            raise ValueError(f"unknown tracker snapshot version {data.get('version')!r}; expected {SNAPSHOT_VERSION}")
        tracker = cls(data["conversation_id"], lang=data["lang"], queue=data["queue"], team=data["team"], **options)
        tracker.turns = int(data["turns"])
        tracker.customer_turns = int(data["customer_turns"])
        tracker._context.extend((speaker, text) for speaker, text in data["context"])
        tracker._recent.extend(_turn_from_data(turn) for turn in data["recent"])
        tracker._risks.extend(float(risk) for risk in data["risks"])
        tracker._current = _prediction_from_data(data["current"])
        tracker._most_severe = data["most_severe"]
        tracker._first_escalation = data["first_escalation"]
        tracker._alert_active = bool(data["alert_active"])
        tracker._alerts_raised = int(data["alerts_raised"])
        tracker._last_alert = None if data["last_alert"] is None else _event_from_data(data["last_alert"])
        tracker._calm_streak = int(data["calm_streak"])
        tracker._cleared_at = None if data["cleared_at"] is None else tuple(data["cleared_at"])
        tracker._held_back = bool(data["held_back"])
        tracker._held_back_turn = data["held_back_turn"]
        tracker.started_at = float(data["started_at"])
        tracker.updated_at = float(data["updated_at"])
        tracker.last_activity = float(data["last_activity"])
        tracker._escalation.restore(data["escalation"])
        return tracker

    def numbered(self, event: AlertEvent) -> AlertEvent:
        """Keep ``event``, numbered by a publisher after :meth:`observe` returned it, as this tracker's last alert
        when it is (a store that publishes on commit numbers events only then); returns it."""
        last = self._last_alert
        if last is not None and event.kind == "alert" and dataclasses.replace(last, id=event.id) == event:
            self._last_alert = event
        return event

    def turn_input(self, text: str, lang: str | None = None) -> TurnInput:
        """The model input for a customer turn ``text`` said next, with the preceding turns as context."""
        return TurnInput(text.strip(), tuple(self._context), lang or self.lang)

    def add_turn(self, speaker: str, text: str, *, lang: str | None = None) -> TurnUpdate:
        """Append a turn, classifying it with ``self.classifier`` when it is the customer's (and reading its
        signals when it is the agent's and the model predicts agent signals)."""
        _check_speaker(speaker)
        prediction, signals = None, None
        if speaker == "customer":
            if self.classifier is None:
                raise ValueError("this tracker has no classifier: use observe() with a prediction")
            (prediction,) = self.classifier.classify([self.turn_input(text, lang)])
        elif self.wants_agent_signals:
            (signals,) = self.classifier.agent_signals([self.turn_input(text, lang)])
        return self.observe(speaker, text, prediction, lang=lang, signals=signals)

    @property
    def wants_agent_signals(self) -> bool:
        """Whether agent turns need the model's agent signals (its model predicts them and a rule reads them)."""
        return wants_agent_signals(self.classifier) and self.escalation_policy.agent_signals_needed()

    def observe(
        self,
        speaker: str,
        text: str,
        prediction: Prediction | None = None,
        *,
        lang: str | None = None,
        queue: str | None = None,
        team: str | None = None,
        signals: dict[str, float] | None = None,
    ) -> TurnUpdate:
        """Append a turn whose prediction is already known (``None`` for an agent turn); ``signals``: an agent
        turn's signal probabilities (:meth:`Classifier.agent_signals`), when the model predicts them."""
        _check_speaker(speaker)
        _check_lang(lang)
        if speaker == "customer" and prediction is None:
            raise ValueError("a customer turn needs its prediction")
        if speaker == "agent" and prediction is not None:
            raise ValueError("agent turns are context only and carry no prediction")
        if speaker == "customer" and signals:
            raise ValueError("a customer turn's signals are in its prediction")
        text = text.strip()
        if not text:
            raise ValueError("a turn needs a non-empty text")
        if self.lang is None and lang is not None:
            self.lang = lang
        # Without a language given, the one :meth:`turn_input` gave the model: read from the turn and its context.
        turn_lang = lang or self.lang or detect_lang(text, *(said for _, said in self._context))
        self.queue = queue or self.queue
        self.team = team or self.team
        index = self.turns
        self.turns += 1
        self._context.append((speaker, text))
        self.updated_at = self._wall_clock()
        self.last_activity = self._clock()
        event = None
        escalation = None
        if prediction is None:
            self._escalation.agent_turn(index, signals, turn_lang)
        else:
            self.customer_turns += 1
            self._current = prediction
            self._risks.append(turn_risk(prediction))
            if self._most_severe is None or severity(prediction.emotion) > severity(self._most_severe):
                self._most_severe = prediction.emotion
            escalation = self._escalation.customer_turn(
                index, prediction, turn_lang, learnt_threshold=self.policy.raise_threshold(turn_lang)
            )
            if escalation.escalate and self._first_escalation is None:
                self._first_escalation = index
        self._recent.append(TrackedTurn(index, speaker, text, prediction, escalation))
        if prediction is not None:
            event = self._apply_policy(index, text, prediction, turn_lang, escalation)
        return TurnUpdate(prediction, self.state, event)

    def end(self, reason: str = "deleted") -> AlertEvent:
        """The ``ended`` event of this conversation (the caller drops the tracker)."""
        return self._event("ended", reason)

    @property
    def alert_active(self) -> bool:
        return self._alert_active

    @property
    def state(self) -> ConversationState:
        current = self._current
        return ConversationState(
            conversation_id=self.conversation_id,
            lang=self.lang,
            queue=self.queue,
            team=self.team,
            turns=self.turns,
            customer_turns=self.customer_turns,
            current_label=current.emotion if current else None,
            most_severe_label=self._most_severe,
            trend=self.trend,
            escalation_score=current.escalate_score if current else None,
            escalate=self._escalation.current.escalate if self._escalation.current else False,
            first_escalation_turn=self._first_escalation,
            alert_active=self._alert_active,
            alerts_raised=self._alerts_raised,
            risk=self._risks[-1] if self._risks else 0.0,
            last_alert=self._last_alert,
            recent_turns=tuple(self._recent),
            started_at=self.started_at,
            updated_at=self.updated_at,
            escalation=self._escalation.current,
        )

    def sort_key(self) -> tuple[bool, float, float]:
        """:meth:`ConversationState.sort_key` without building the state."""
        return (self._alert_active, self._risks[-1] if self._risks else 0.0, self.updated_at)

    @property
    def trend(self) -> str:
        """``worsening`` / ``calming`` when the latest turn's risk is above / below the window's earlier mean."""
        if len(self._risks) < 2:
            return "stable"
        *earlier, latest = self._risks
        change = latest - sum(earlier) / len(earlier)
        if change > self.policy.trend_delta:
            return "worsening"
        if change < -self.policy.trend_delta:
            return "calming"
        return "stable"

    def _in_cooldown(self) -> bool:
        if self._cleared_at is None:
            return False
        turns_at_clear, time_at_clear = self._cleared_at
        turns_since = self.customer_turns - turns_at_clear
        return turns_since <= self.policy.cooldown_turns or self._clock() - time_at_clear < self.policy.cooldown_seconds

    def _apply_policy(
        self, index: int, text: str, prediction: Prediction, lang: str | None, escalation: Escalation
    ) -> AlertEvent | None:
        policy = self.policy
        score = prediction.escalate_score
        raise_at, clear_below = policy.raise_threshold(lang), policy.clear_threshold(lang)
        # Hysteresis on the learnt score: a turn between the clear and the raise thresholds is not calm.
        learnt_low = score < clear_below or not self.escalation_policy.uses_learnt(prediction)
        rule_reasons = [reason for reason in escalation.reasons if reason != LEARNT_REASON]
        if self._alert_active:
            new_reasons = [
                reason
                for reason in escalation.reasons
                if escalation.since_turn[reason] == index and reason in policy.update_reasons
            ]
            if new_reasons:  # e.g. abuse after the agent's warning: the supervisor must hear it
                reason = prediction.emotion if prediction.emotion in policy.immediate_labels else "escalation"
                return self._raise(reason, index, text, prediction, raise_at, lang, escalation)
            if learnt_low and not rule_reasons and prediction.emotion in policy.clear_labels:
                self._calm_streak += 1
            else:
                self._calm_streak = 0
            if self._calm_streak < policy.clear_turns:
                return None
            self._alert_active = False
            self._calm_streak = 0
            self._cleared_at = (self.customer_turns, self._clock())
            self._held_back = False
            return self._event("all_clear", "calmed_down", index, text, prediction, clear_below, lang)
        if prediction.emotion in policy.immediate_labels:
            return self._raise(prediction.emotion, index, text, prediction, raise_at, lang, escalation)
        if any(reason in policy.immediate_reasons for reason in escalation.reasons):
            return self._raise("escalation", index, text, prediction, raise_at, lang, escalation)
        # Hysteresis also for a held-back alert: it stays pending while the score is above the clear threshold.
        pending = self._held_back and not learnt_low
        if not escalation.escalate and not pending:
            self._held_back = False
            return None
        if self._in_cooldown():
            if not self._held_back:
                self._held_back_turn = index
            self._held_back = True
            return None
        if not escalation.escalate:  # the held-back episode of the learnt score, still going on
            escalation = Escalation(True, escalation.score, (LEARNT_REASON,), {LEARNT_REASON: self._held_back_turn})
        return self._raise("escalation", index, text, prediction, raise_at, lang, escalation)

    def _raise(
        self,
        reason: str,
        index: int,
        text: str,
        prediction: Prediction,
        threshold: float,
        lang: str | None,
        escalation: Escalation,
    ) -> AlertEvent:
        self._alert_active = True
        self._calm_streak = 0
        self._held_back = False
        self._alerts_raised += 1
        self._last_alert = self._event("alert", reason, index, text, prediction, threshold, lang, escalation)
        return self._last_alert

    def _event(
        self,
        kind: str,
        reason: str,
        index: int | None = None,
        text: str | None = None,
        prediction: Prediction | None = None,
        threshold: float | None = None,
        lang: str | None = None,
        escalation: Escalation | None = None,
    ) -> AlertEvent:
        if escalation is not None:
            message = escalation.message
        elif kind == "all_clear":
            message = "All clear: the customer has calmed down and no escalation rule applies any more."
        elif kind == "ended":
            message = f"The conversation ended ({reason})."
        else:
            message = None
        event = AlertEvent(
            kind=kind,
            conversation_id=self.conversation_id,
            reason=reason,
            reasons=escalation.reasons if escalation is not None else (),
            since_turn=dict(escalation.since_turn) if escalation is not None else {},
            message=message,
            turn_index=index,
            label=prediction.emotion if prediction else None,
            score=prediction.escalate_score if prediction else None,
            threshold=threshold,
            text=text,
            lang=lang or self.lang,
            queue=self.queue,
            team=self.team,
            most_severe_label=self._most_severe,
            alerts_raised=self._alerts_raised,
            time=self._wall_clock(),
        )
        if self._on_event is not None:
            event = self._on_event(event) or event
        return event


SNAPSHOT_VERSION = 1
"""Version of :meth:`ConversationTracker.snapshot`'s data; :meth:`~ConversationTracker.restore` reads only its own."""


def _prediction_data(prediction: Prediction | None) -> dict[str, Any] | None:
    return None if prediction is None else dataclasses.asdict(prediction)


def _prediction_from_data(data: dict[str, Any] | None) -> Prediction | None:
    return None if data is None else Prediction(**data)


def _turn_data(turn: TrackedTurn) -> dict[str, Any]:
    return {
        "index": turn.index,
        "speaker": turn.speaker,
        "text": turn.text,
        "prediction": _prediction_data(turn.prediction),
        "escalation": None if turn.escalation is None else escalation_data(turn.escalation),
    }


def _turn_from_data(data: dict[str, Any]) -> TrackedTurn:
    escalation = data["escalation"]
    return TrackedTurn(
        int(data["index"]),
        data["speaker"],
        data["text"],
        _prediction_from_data(data["prediction"]),
        None if escalation is None else escalation_from_data(escalation),
    )


def _event_from_data(data: dict[str, Any]) -> AlertEvent:
    return AlertEvent(**{**data, "reasons": tuple(data["reasons"]), "since_turn": dict(data["since_turn"])})


def _check_speaker(speaker: str) -> None:
    if speaker not in SPEAKERS:
        raise ValueError(f"unknown speaker {speaker!r}; expected one of {SPEAKERS}")


def _check_lang(lang: str | None) -> None:
    if lang is not None and lang not in LANGUAGES:
        raise ValueError(f"unknown language {lang!r}; expected one of {LANGUAGES}")
