"""The escalation policy: each of the label guide's rules on scripted turns (no model), persistence, TOML."""

from __future__ import annotations

import pytest

from tonewatch.configfile import ConfigError
from tonewatch.labels import EMOTION_LABELS
from tonewatch.model.types import Prediction
from tonewatch.tracking import AlertPolicy, ConversationTracker, EscalationPolicy, EscalationState, load_policy
from tonewatch.tracking.policy import escalate_conversation

NO_SIGNALS = {"supervisor_request": 0.02, "external_threat": 0.02, "harm_threat": 0.01}


def turn(label: str, escalate_score: float = 0.1, **signals: float) -> Prediction:
    """A customer turn of a model with a signal head: ``label`` on top (0.7), the given signals, others low."""
    rest = 0.3 / (len(EMOTION_LABELS) - 1)
    scores = {name: (0.7 if name == label else rest) for name in EMOTION_LABELS}
    return Prediction(label, scores, escalate_score >= 0.5, escalate_score, {**NO_SIGNALS, **signals})


def plain(label: str, escalate_score: float = 0.1) -> Prediction:
    """A customer turn of a model without signals (every model before issue #18)."""
    return Prediction(label, turn(label).scores, escalate_score >= 0.5, escalate_score)


def run(script, policy: EscalationPolicy | None = None):
    """Feed ``script`` (customer Predictions; agent turns as dicts of signals); the escalation after each turn
    (None after agent turns)."""
    state = EscalationState(policy)
    out = []
    for index, step in enumerate(script):
        if isinstance(step, Prediction):
            out.append(state.customer_turn(index, step, "ru"))
        else:
            state.agent_turn(index, step, "ru")
            out.append(None)
    return out


def reasons(escalations):
    return [None if escalation is None else escalation.reasons for escalation in escalations]


# -- the five rules and abuse after a warning ----------------------------------------------------------------


def test_rule_1_a_supervisor_request_stays_while_pending_even_after_the_agent_offers_a_transfer():
    script = [
        turn("calm"),
        {},
        turn("calm", supervisor_request=0.9),  # a calm, polite request: turn 2
        {"refusal": 0.1},
        turn("calm"),  # still pending though calm
        {"apology_or_offer": 0.9},  # "I'm transferring you now"
        turn("frustrated"),
        {"apology_or_offer": 0.8},
        turn("calm"),  # "fine, I'll wait": the handover is promised, not done (the guide: pending)
    ]
    out = run(script)
    assert reasons(out) == [(), None, ("supervisor_request",), None, ("supervisor_request",), None,
                            ("supervisor_request",), None, ("supervisor_request",)]  # fmt: skip
    assert out[2].escalate and out[2].since_turn == {"supervisor_request": 2} and out[2].score == pytest.approx(0.9)
    assert out[8].since_turn == {"supervisor_request": 2}
    # A contact centre whose agents hand over themselves may count an accepted offer as handled.
    handed_over = run(script, EscalationPolicy(persistence={"pending_cleared_by_offer": True}))
    assert reasons(handed_over)[6:] == [("supervisor_request",), None, ()]  # accepted only once calm


def test_rule_1_a_pending_request_also_clears_after_calm_turns_and_a_repeat_restarts_the_count():
    policy = EscalationPolicy(persistence={"pending_calm_turns": 2, "pending_cleared_by_offer": False})
    script = [turn("calm", supervisor_request=0.8), turn("calm"), turn("calm", supervisor_request=0.7), turn("calm"),
              turn("calm")]  # fmt: skip
    out = run(script, policy)
    assert [escalation.escalate for escalation in out] == [True, True, True, True, False]
    assert out[3].since_turn == {"supervisor_request": 0}  # the repeat is the same pending request


def test_rule_2_an_external_threat_stays_pending_and_can_be_turned_off():
    script = [turn("frustrated", external_threat=0.85), {}, turn("calm"), turn("calm")]
    out = run(script)
    assert reasons(out) == [("external_threat",), None, ("external_threat",), ("external_threat",)]
    off = run(script, load_policy_from_text("[external_threat]\nenabled = false\n"))
    assert reasons(off) == [(), None, (), ()]


def test_rule_3_abuse_stays_while_hostile_and_clears_once_the_customer_is_no_longer_hostile():
    out = run([turn("frustrated"), turn("abusive"), turn("frustrated"), turn("abusive"), turn("angry"), turn("calm")])
    assert reasons(out) == [(), ("abuse",), (), ("abuse",), ("persistent_anger", "abuse"), ()]
    assert out[4].since_turn == {"abuse": 3, "persistent_anger": 4} and out[1].score == pytest.approx(0.7)
    # Abusive then angry is also anger in a row; a frustrated turn ends both (the anger no longer persists).
    out = run([turn("abusive"), turn("angry"), turn("frustrated"), turn("calm")])
    assert reasons(out) == [("abuse",), ("persistent_anger", "abuse"), (), ()]
    # A policy may hold persistent anger until the customer is calm.
    held = run([turn("abusive"), turn("angry"), turn("frustrated"), turn("calm")],
               EscalationPolicy(persistence={"anger_clear_labels": ["calm"]}))  # fmt: skip
    assert reasons(held) == [("abuse",), ("persistent_anger", "abuse"), ("persistent_anger",), ()]


def test_rule_3_a_threat_of_harm_is_a_reason_of_its_own():
    out = run([turn("frustrated", harm_threat=0.8), turn("frustrated", harm_threat=0.6), turn("frustrated")])
    assert reasons(out) == [("harm_threat",), ("harm_threat",), ()]
    assert out[1].since_turn == {"harm_threat": 0}


def test_rule_4_anger_after_an_apology_or_two_angry_turns_in_a_row_until_the_customer_is_no_longer_angry():
    after_offer = run([turn("frustrated"), {"apology_or_offer": 0.9}, turn("angry"), turn("angry"),
                       turn("frustrated")])  # fmt: skip
    assert reasons(after_offer) == [(), None, ("persistent_anger",), ("persistent_anger",), ()]
    assert after_offer[3].since_turn == {"persistent_anger": 2}
    # Without an apology one angry turn is not enough; the second in a row is.
    in_a_row = run([turn("angry"), {}, turn("angry"), turn("angry"), turn("calm"), turn("angry")])
    assert reasons(in_a_row) == [(), None, ("persistent_anger",), ("persistent_anger",), (), ()]
    assert in_a_row[3].since_turn == {"persistent_anger": 2}


def test_rule_5_a_refusal_not_accepted_with_negative_affect_and_accepted_once_calm():
    script = [turn("calm"), {"refusal": 0.9}, turn("calm"), turn("frustrated"), {"refusal": 0.8},
              turn("frustrated"), turn("frustrated"), turn("calm"), turn("frustrated")]  # fmt: skip
    out = run(script)
    # The first refusal is accepted (a calm answer); the second is not, until the customer turns calm.
    assert reasons(out) == [(), None, (), (), None, ("refusal_not_accepted",), ("refusal_not_accepted",), (), ()]
    assert out[6].since_turn == {"refusal_not_accepted": 5}


def test_abuse_after_the_agents_warning_tells_the_supervisor_the_agent_may_end_the_call():
    script = [turn("abusive"), {"abuse_warning": 0.95}, turn("abusive"), turn("angry"), turn("calm")]
    out = run(script)
    # Abuse turn after turn is also anger that persists (rule 4).
    active = ("abuse_after_warning", "persistent_anger", "abuse")
    assert reasons(out) == [("abuse",), None, active, active, ()]
    assert "the agent may now end the call (turn 2)" in out[2].message
    assert out[3].to_dict() == {
        "escalate": True,
        "score": pytest.approx(0.8),  # P(angry or abusive) of turn 2, the strongest evidence
        "reasons": list(active),
        "since_turn": {"abuse_after_warning": 2, "persistent_anger": 2, "abuse": 0},
    }
    # Without the warning, the same turns are abuse only.
    assert run([turn("abusive"), {"abuse_warning": 0.2}, turn("frustrated"), turn("abusive")])[3].reasons == ("abuse",)


def test_reasons_are_most_recent_first():
    out = run([turn("abusive"), turn("frustrated", supervisor_request=0.9), turn("abusive", external_threat=0.9)])
    assert out[1].reasons == ("supervisor_request",)
    assert out[2].reasons == ("abuse", "external_threat", "supervisor_request")
    assert out[2].since_turn == {"abuse": 2, "external_threat": 2, "supervisor_request": 1}


# -- models without signals: the learnt score and the emotion rules ------------------------------------------


def test_a_model_without_signals_falls_back_to_the_learnt_score_and_the_emotion_rules():
    out = run([plain("calm", 0.2), {}, plain("frustrated", 0.7), plain("frustrated", 0.8), plain("calm", 0.1),
               plain("angry", 0.3), plain("angry", 0.3), plain("abusive", 0.2)])  # fmt: skip
    assert reasons(out) == [(), None, ("learnt_score",), ("learnt_score",), (), (), ("persistent_anger",),
                            ("abuse", "persistent_anger")]  # fmt: skip
    assert out[3].since_turn == {"learnt_score": 2} and out[3].score == pytest.approx(0.8)
    assert [e.escalate for e in out if e] == [False, True, True, False, False, True, True]


@pytest.mark.parametrize(("learnt_head", "expected"), [("fallback", ()), ("or", ("learnt_score",)), ("off", ())])
def test_learnt_head_decides_whether_the_learnt_score_counts_for_a_model_with_signals(learnt_head, expected):
    (escalation,) = run([turn("frustrated", 0.9)], EscalationPolicy(learnt_head=learnt_head))
    assert escalation.reasons == expected


def test_learnt_head_off_ignores_the_score_of_a_model_without_signals():
    assert run([plain("frustrated", 0.9)], EscalationPolicy(learnt_head="off"))[0].reasons == ()


def test_escalate_conversation_reads_agent_signals_by_turn_index():
    conversation = {"id": "c", "lang": "zh", "turns": [
        {"speaker": "customer", "text": "你是猪吗"}, {"speaker": "agent", "text": "如果您继续辱骂，我将不得不结束通话"},
        {"speaker": "customer", "text": "傻X"}]}  # fmt: skip
    escalations = escalate_conversation(
        EscalationPolicy(), conversation, [turn("abusive"), turn("abusive")], {1: {"abuse_warning": 0.9}}
    )
    assert [e.reasons[0] for e in escalations] == ["abuse", "abuse_after_warning"]
    assert escalations[1].since_turn["abuse_after_warning"] == 2
    unwarned = escalate_conversation(EscalationPolicy(), conversation, [turn("abusive"), turn("abusive")])
    assert "abuse_after_warning" not in unwarned[1].reasons and "abuse" in unwarned[1].reasons


# -- configuration --------------------------------------------------------------------------------------------


def load_policy_from_text(text: str, tmp_path=None) -> EscalationPolicy:
    import pathlib
    import tempfile

    folder = pathlib.Path(tempfile.mkdtemp()) if tmp_path is None else tmp_path
    path = folder / "escalation.toml"
    path.write_text(text, encoding="utf-8")
    return load_policy(path)


def test_per_language_thresholds_and_emotion_probability_thresholds(tmp_path):
    policy = load_policy_from_text(
        "[supervisor_request]\nthreshold = 0.6\nthresholds = { ru = 0.3 }\n[abuse]\nthreshold = 0.5\n", tmp_path
    )
    assert policy.supervisor_request.at("ru") == 0.3 and policy.supervisor_request.at("zh") == 0.6
    state = EscalationState(policy)
    assert state.customer_turn(0, turn("calm", supervisor_request=0.4), "ru").reasons == ("supervisor_request",)
    assert EscalationState(policy).customer_turn(0, turn("calm", supervisor_request=0.4), "zh").reasons == ()
    # With a probability threshold, an angry turn whose P(abusive) reaches it is abuse.
    leaning = Prediction("angry", {"calm": 0.0, "frustrated": 0.0, "angry": 0.45, "abusive": 0.55}, False, 0.1, {})
    assert EscalationState(policy).customer_turn(0, leaning, "zh").reasons == ("abuse",)
    assert EscalationState().customer_turn(0, leaning, "zh").reasons == ()


def test_the_shipped_defaults_file_is_the_default_policy():
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "configs" / "escalation.toml"
    assert load_policy(path) == EscalationPolicy()


@pytest.mark.parametrize(
    ("text", "match"),
    [
        (
            "[supervisor_requst]\nenabled = false\n",
            "unknown key 'supervisor_requst'.*did you mean 'supervisor_request'",
        ),
        ("[abuse]\nenabeld = false\n", "abuse: unknown key 'enabeld'"),
        ("[external_threat]\nthreshold = 1.5\n", "external_threat.*threshold must be a probability"),
        ("[external_threat]\nthresholds = { en = 0.5 }\n", "unknown language 'en'"),
        ("learnt_head = 'and'\n", "learnt_head must be one of"),
        ("[persistence]\nhostile_clear_labels = ['furious']\n", "unknown labels"),
        ("[abuse]\nenabled = 'no'\n", "abuse.enabled must be true or false"),
        ("[persistent_anger]\nin_a_row = 1\n", "in_a_row"),
    ],
)
def test_bad_policy_files_get_typed_errors_naming_the_file_and_key(tmp_path, text, match):
    with pytest.raises(ConfigError, match=match) as error:
        load_policy_from_text(text, tmp_path)
    assert str(tmp_path / "escalation.toml") in str(error.value)


# -- the tracker runs the policy --------------------------------------------------------------------------------


def test_tracker_alerts_carry_reasons_since_turn_and_a_message_and_realert_on_abuse_after_warning():
    tracker = ConversationTracker("c", policy=AlertPolicy(escalation_threshold=0.5, cooldown_seconds=0))
    tracker.observe("agent", "Здравствуйте")
    first = tracker.observe("customer", "Позовите старшего", turn("calm", supervisor_request=0.9))
    assert first.alert is not None and first.alert.reasons == ("supervisor_request",)
    assert first.alert.since_turn == {"supervisor_request": 1} and "supervisor" in first.alert.message
    assert first.escalation.reasons == ("supervisor_request",) and first.state.escalate
    assert first.state.to_dict()["recent_turns"][-1]["prediction"]["escalation"]["reasons"] == ["supervisor_request"]
    tracker.observe("agent", "Если вы продолжите выражаться, я завершу звонок", signals={"abuse_warning": 0.9})
    again = tracker.observe("customer", "Ты тупая", turn("abusive"))
    assert again.alert is not None and again.alert.reasons[0] == "abuse_after_warning"
    assert again.alert.since_turn["abuse_after_warning"] == 3 and "may now end the call" in again.alert.message
    assert again.alert.to_dict()["reasons"] == ["abuse_after_warning", "abuse", "supervisor_request"]
    # A pending request keeps the alert on however calm the customer sounds.
    assert all(tracker.observe("customer", "ну", turn("calm")).event is None for _ in range(2))
    assert tracker.state.alert_active


def test_tracker_all_clear_waits_for_the_policy_to_clear():
    tracker = ConversationTracker("c", policy=AlertPolicy(clear_turns=1, escalation_threshold=0.5))
    assert tracker.observe("customer", "x", turn("frustrated", harm_threat=0.9)).alert.reasons == ("harm_threat",)
    assert tracker.observe("customer", "y", turn("angry")).event is None
    clear = tracker.observe("customer", "z", turn("calm")).event
    assert clear.kind == "all_clear" and clear.reasons == () and "calmed down" in clear.message


class SignalClassifier:
    """A model with a signal head: customer predictions from a script, agent signals from a script."""

    signal_names = ("supervisor_request", "external_threat", "harm_threat", "apology_or_offer", "refusal",
                    "abuse_warning")  # fmt: skip

    def __init__(self, customer: dict[str, Prediction], agent: dict[str, dict[str, float]]):
        from tonewatch.model.types import Calibration, ModelConfig

        self.customer, self.agent, self.agent_inputs = customer, agent, []
        self.config = ModelConfig(base_model="scripted", num_hidden_layers=1, hidden_size=8,
                                  calibration=Calibration(escalation_threshold=0.5))  # fmt: skip

    def classify(self, items, batch_size: int = 64):
        return [self.customer[item.text] for item in items]

    def agent_signals(self, items, batch_size: int = 64):
        self.agent_inputs.extend(items)
        return [self.agent.get(item.text, {}) for item in items]


def test_add_turn_reads_agent_signals_when_the_model_predicts_them():
    classifier = SignalClassifier(
        {"退款!": turn("frustrated"), "凭什么不行": turn("angry")}, {"抱歉，这个无法退款": {"refusal": 0.9}}
    )
    tracker = ConversationTracker.for_classifier(classifier, "z", lang="zh")
    tracker.add_turn("customer", "退款!")
    tracker.add_turn("agent", "抱歉，这个无法退款")
    update = tracker.add_turn("customer", "凭什么不行")
    assert classifier.agent_inputs[0].context == (("customer", "退款!"),)
    assert update.alert is not None and update.alert.reasons == ("refusal_not_accepted",)
    assert update.alert.since_turn == {"refusal_not_accepted": 2}
