from __future__ import annotations

import csv
import json

import pytest
from typer.testing import CliRunner

from tonewatch.cli import app
from tonewatch.labelling import LabelInputError, label_file
from tonewatch.labelling.archive import detect_kind
from tonewatch.labels import CUSTOMER_SIGNALS
from tonewatch.model.classifier import Classifier
from tonewatch.model.types import Prediction, TurnInput
from tonewatch.tracking.policy import EscalationPolicy, SignalRule

CONVERSATIONS = [
    {"id": f"c{i}", "lang": "zh", "channel": "chat", "turns": [
        {"speaker": "agent", "text": "您好"},
        {"speaker": "customer", "text": f"我的网络又断了 {i}", "emotion": "frustrated", "escalate": False},
        {"speaker": "agent", "text": "抱歉"},
        {"speaker": "customer", "text": "找你们经理!"},
    ]}
    for i in range(7)
]  # fmt: skip


@pytest.fixture(scope="module")
def classifier(tiny_model_dir):
    return Classifier.from_pretrained(tiny_model_dir)


def assert_same_prediction(written: dict, expected: Prediction) -> None:
    """``written`` is ``expected`` (scores within the int8 path's batch-composition tolerance)."""
    # Every customer turn and text also carries the escalation policy's decision (a text: a one-turn conversation).
    assert set(written) - {"escalation"} == {"emotion", "scores", "escalate", "escalate_score"}
    assert (written["emotion"], written["escalate"]) == (expected.emotion, expected.escalate)
    assert written["scores"] == pytest.approx(expected.scores, abs=2e-3)
    assert written["escalate_score"] == pytest.approx(expected.escalate_score, abs=2e-3)


def write_jsonl(path, records, extra_lines=()):
    lines = [json.dumps(record, ensure_ascii=False) for record in records] + list(extra_lines)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def test_conversations_keep_every_field_and_gain_predictions_on_customer_turns(classifier, tmp_path):
    write_jsonl(tmp_path / "in.jsonl", CONVERSATIONS)
    summary = label_file(classifier, tmp_path / "in.jsonl", tmp_path / "out.jsonl", batch_size=4)
    output = read_jsonl(tmp_path / "out.jsonl")
    assert summary.kind == "conversations" and summary.records == 7 and summary.labelled_turns == 14
    assert [record["id"] for record in output] == [c["id"] for c in CONVERSATIONS]
    for original, labelled in zip(CONVERSATIONS, output, strict=True):
        assert labelled["channel"] == "chat"
        for before, after in zip(original["turns"], labelled["turns"], strict=True):
            assert {k: v for k, v in after.items() if k != "prediction"} == before
            assert ("prediction" in after) == (before["speaker"] == "customer")
        # Each customer turn's prediction is the model's for that turn in its conversation (earlier turns as context).
        written = [turn["prediction"] for turn in labelled["turns"] if "prediction" in turn]
        for prediction, expected in zip(written, classifier.classify_conversation(original), strict=True):
            assert_same_prediction(prediction, expected)
    assert not (tmp_path / "out.jsonl.partial").exists() and not (tmp_path / "out.jsonl.progress").exists()


def test_texts_and_csv_inputs(classifier, tmp_path):
    write_jsonl(
        tmp_path / "texts.jsonl", [{"id": 1, "text": "опять не работает", "lang": "ru"}, {"id": 2, "text": "ok"}]
    )
    label_file(classifier, tmp_path / "texts.jsonl", tmp_path / "texts.out.jsonl")
    texts = read_jsonl(tmp_path / "texts.out.jsonl")
    assert [t["id"] for t in texts] == [1, 2]
    expected = classifier.classify([TurnInput("опять не работает", (), "ru"), TurnInput("ok")])
    for text, prediction in zip(texts, expected, strict=True):
        assert_same_prediction(text["prediction"], prediction)

    with open(tmp_path / "in.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["ticket", "text"])
        writer.writerows([["a1", "你们是骗子"], ["a2", "谢谢, 好的"]])
    label_file(classifier, tmp_path / "in.csv", tmp_path / "out.csv")
    with open(tmp_path / "out.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["ticket"] for row in rows] == ["a1", "a2"]
    for row, prediction in zip(rows, classifier.classify(["你们是骗子", "谢谢, 好的"]), strict=True):
        assert_same_prediction(json.loads(row["prediction"]), prediction)
    label_file(classifier, tmp_path / "in.csv", tmp_path / "csv.jsonl")
    assert read_jsonl(tmp_path / "csv.jsonl")[1]["text"] == "谢谢, 好的"


def test_unreadable_lines_are_reported_with_line_numbers_and_skipped_or_fatal(classifier, tmp_path):
    bad_conversation = json.dumps({"id": "x", "turns": [{"speaker": "robot", "text": "hi"}]})
    write_jsonl(tmp_path / "in.jsonl", CONVERSATIONS[:2], extra_lines=["{broken", bad_conversation])
    seen = []
    summary = label_file(classifier, tmp_path / "in.jsonl", tmp_path / "out.jsonl", on_bad_line=seen.append)
    assert [bad.line_number for bad in seen] == [3, 4] and "invalid JSON" in seen[0].reason
    assert "speaker" in seen[1].reason and len(summary.skipped) == 2
    assert len(read_jsonl(tmp_path / "out.jsonl")) == 2
    with pytest.raises(LabelInputError, match=r"in\.jsonl:3"):
        label_file(classifier, tmp_path / "in.jsonl", tmp_path / "strict.jsonl", strict=True)


def test_invalid_gold_labels_do_not_drop_a_record_they_are_kept_labelled_and_warned_about(classifier, tmp_path):
    gold = json.loads(json.dumps(CONVERSATIONS[1]))
    gold["turns"][1]["emotion"] = "furious"
    gold["turns"][3]["escalate"] = "yes"
    no_text = {"id": "x", "turns": [{"speaker": "customer", "text": ""}]}
    write_jsonl(tmp_path / "in.jsonl", [CONVERSATIONS[0], gold, no_text, CONVERSATIONS[2]])
    warnings, skipped = [], []
    summary = label_file(
        classifier,
        tmp_path / "in.jsonl",
        tmp_path / "out.jsonl",
        on_bad_line=skipped.append,
        on_warning=warnings.append,
        batch_size=2,
    )
    output = read_jsonl(tmp_path / "out.jsonl")
    assert [record["id"] for record in output] == ["c0", "c1", "c2"]  # only the turn without text is dropped
    kept = output[1]
    assert kept["turns"][1]["emotion"] == "furious" and kept["turns"][3]["escalate"] == "yes"  # untouched
    assert {"prediction"} <= set(kept["turns"][1]) and {"prediction"} <= set(kept["turns"][3])
    assert [warning.line_number for warning in warnings] == [2] and summary.warnings == warnings  # once per record
    (reason,) = [warning.reason for warning in warnings]
    assert "unknown emotion 'furious'" in reason and "'escalate' must be true or false" in reason
    assert [bad.line_number for bad in skipped] == [3] and "'text' must be a non-empty string" in skipped[0].reason
    assert summary.records == 3 and summary.labelled_turns == 6
    # --strict is about unreadable records: invalid gold labels alone do not fail it.
    write_jsonl(tmp_path / "gold.jsonl", [gold])
    assert label_file(classifier, tmp_path / "gold.jsonl", tmp_path / "strict.jsonl", strict=True).records == 1


def test_cli_label_warns_about_invalid_gold_labels_with_the_line(tiny_model_dir, tmp_path):
    gold = json.loads(json.dumps(CONVERSATIONS[0]))
    gold["turns"][1]["emotion"] = "furious"
    write_jsonl(tmp_path / "in.jsonl", [CONVERSATIONS[1], gold])
    result = CliRunner().invoke(
        app, ["label", str(tmp_path / "in.jsonl"), "-o", str(tmp_path / "o.jsonl"), "--model", str(tiny_model_dir)]
    )
    assert result.exit_code == 0, result.output
    assert [line for line in result.output.splitlines() if line.startswith("warning:")] == [
        "warning: line 2: labelled, but its gold labels are invalid: conversation c0, turn 1: unknown emotion "
        "'furious'; expected one of ('calm', 'frustrated', 'angry', 'abusive')"
    ]
    assert len(read_jsonl(tmp_path / "o.jsonl")) == 2


class FailingAfter:
    """A classifier that dies after ``calls`` model calls, like an interrupted run."""

    def __init__(self, inner, calls):
        self.inner, self.calls = inner, calls

    def classify(self, items, batch_size=64):
        if self.calls == 0:
            raise KeyboardInterrupt
        self.calls -= 1
        return self.inner.classify(items, batch_size)


def test_resume_neither_loses_nor_duplicates_records(classifier, tmp_path):
    write_jsonl(tmp_path / "in.jsonl", CONVERSATIONS)
    label_file(classifier, tmp_path / "in.jsonl", tmp_path / "clean.jsonl", batch_size=4)
    with pytest.raises(KeyboardInterrupt):
        label_file(FailingAfter(classifier, 2), tmp_path / "in.jsonl", tmp_path / "out.jsonl", batch_size=4)
    assert not (tmp_path / "out.jsonl").exists()
    partial = tmp_path / "out.jsonl.partial"
    with open(partial, "a", encoding="utf-8") as handle:
        handle.write('{"id": "half-written')  # a batch cut off mid-write
    summary = label_file(classifier, tmp_path / "in.jsonl", tmp_path / "out.jsonl", batch_size=4, resume=True)
    assert summary.resumed_from == 4
    assert (tmp_path / "out.jsonl").read_text() == (tmp_path / "clean.jsonl").read_text()


def test_kind_detection_errors(tmp_path):
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(LabelInputError, match="empty"):
        detect_kind(tmp_path / "empty.jsonl")
    (tmp_path / "x.csv").write_text("a,b\n1,2\n")
    with pytest.raises(LabelInputError, match="no 'text' column"):
        detect_kind(tmp_path / "x.csv")
    (tmp_path / "y.jsonl").write_text('{"foo": 1}\n')
    with pytest.raises(LabelInputError, match="'turns'"):
        detect_kind(tmp_path / "y.jsonl")


def test_cli_label_with_a_model_dir_and_error_exit_code(tiny_model_dir, tmp_path):
    write_jsonl(tmp_path / "in.jsonl", CONVERSATIONS[:2])
    runner = CliRunner()
    result = runner.invoke(
        app, ["label", str(tmp_path / "in.jsonl"), "-o", str(tmp_path / "o.jsonl"), "--model", str(tiny_model_dir)]
    )
    assert result.exit_code == 0, result.output
    assert len(read_jsonl(tmp_path / "o.jsonl")) == 2
    missing = runner.invoke(
        app, ["label", str(tmp_path / "nope.jsonl"), "-o", str(tmp_path / "o2.jsonl"), "--model", str(tiny_model_dir)]
    )
    assert missing.exit_code == 2 and "does not exist" in missing.output
    not_a_model = runner.invoke(
        app, ["label", str(tmp_path / "in.jsonl"), "-o", str(tmp_path / "o3.jsonl"), "--model", str(tmp_path)]
    )
    assert not_a_model.exit_code == 2 and "not a tonewatch model directory" in not_a_model.output


# -- the escalation policy in the output --------------------------------------------------------------------------


class SignalModel:
    """A model with a signal head, scripted by text: customer turns' predictions and agent turns' signals."""

    signal_names = ("supervisor_request", "external_threat", "harm_threat", "apology_or_offer", "refusal",
                    "abuse_warning")  # fmt: skip

    def __init__(self, customer: dict[str, tuple[str, dict]], agent: dict[str, dict]):
        self.customer, self.agent = customer, agent
        self.agent_inputs: list[TurnInput] = []

    def classify(self, items, batch_size=64):
        predictions = []
        for item in items:
            label, signals = self.customer[item.text]
            scores = {name: (0.7 if name == label else 0.1) for name in ("calm", "frustrated", "angry", "abusive")}
            predictions.append(Prediction(label, scores, False, 0.2, signals))
        return predictions

    def agent_signals(self, items, batch_size=64):
        self.agent_inputs.extend(items)
        return [self.agent.get(item.text, {}) for item in items]


ESCALATING = {"id": "e1", "lang": "ru", "turns": [
    {"speaker": "agent", "text": "Здравствуйте"},
    {"speaker": "customer", "text": "Верните деньги"},
    {"speaker": "agent", "text": "К сожалению, вернуть деньги невозможно"},
    {"speaker": "customer", "text": "Это издевательство, позовите старшего!"},
    {"speaker": "agent", "text": "Соединяю вас с руководителем"},
    {"speaker": "customer", "text": "Хорошо, жду"},
]}  # fmt: skip
SIGNAL_MODEL_SCRIPT = {
    "Верните деньги": ("frustrated", {"supervisor_request": 0.05}),
    "Это издевательство, позовите старшего!": ("angry", {"supervisor_request": 0.93}),
    "Хорошо, жду": ("calm", {"supervisor_request": 0.1}),
}
AGENT_SCRIPT = {
    "К сожалению, вернуть деньги невозможно": {"refusal": 0.9, "apology_or_offer": 0.3},
    "Соединяю вас с руководителем": {"apology_or_offer": 0.85},
}


def test_a_text_gets_the_escalation_of_a_one_turn_conversation(tmp_path):
    model = SignalModel(SIGNAL_MODEL_SCRIPT, AGENT_SCRIPT)
    texts = [{"id": "t1", "text": "Это издевательство, позовите старшего!", "lang": "ru"},
             {"id": "t2", "text": "Хорошо, жду", "lang": "ru"}]  # fmt: skip
    write_jsonl(tmp_path / "texts.jsonl", texts)
    label_file(model, tmp_path / "texts.jsonl", tmp_path / "out.jsonl")
    first, second = (row["prediction"]["escalation"] for row in read_jsonl(tmp_path / "out.jsonl"))
    assert first == {"escalate": True, "score": pytest.approx(0.93), "reasons": ["supervisor_request"],
                     "since_turn": {"supervisor_request": 0}}  # fmt: skip
    assert second["reasons"] == [] and not second["escalate"]  # each text on its own: nothing carried over


def test_texts_and_conversations_without_lang_get_their_scripts_thresholds(tmp_path):
    # The policy's zh threshold of rule 2 (0.6), not the fallback (0.5), applies to Chinese without `lang`.
    threat = "如果今天不给我退款，我就去消协投诉"
    model = SignalModel({threat: ("frustrated", {"external_threat": 0.55})}, {})
    policy = EscalationPolicy(external_threat=SignalRule(threshold=0.5, thresholds={"zh": 0.6}))
    texts = [{"id": "given", "text": threat, "lang": "zh"}, {"id": "unsaid", "text": threat}]
    write_jsonl(tmp_path / "texts.jsonl", texts)
    label_file(model, tmp_path / "texts.jsonl", tmp_path / "texts.out.jsonl", policy=policy)
    given, unsaid = (row["prediction"]["escalation"] for row in read_jsonl(tmp_path / "texts.out.jsonl"))
    assert unsaid == given and not unsaid["escalate"]
    conversation = {"id": "c", "turns": [{"speaker": "agent", "text": "您好"}, {"speaker": "customer", "text": threat}]}
    write_jsonl(tmp_path / "in.jsonl", [conversation])
    label_file(model, tmp_path / "in.jsonl", tmp_path / "out.jsonl", policy=policy)
    (labelled,) = read_jsonl(tmp_path / "out.jsonl")
    assert labelled["turns"][1]["prediction"]["escalation"] == given
    assert "lang" not in labelled  # the record is written as read


def test_conversation_output_carries_the_policys_escalation_with_reasons_and_turns(tmp_path):
    model = SignalModel(SIGNAL_MODEL_SCRIPT, AGENT_SCRIPT)
    write_jsonl(tmp_path / "in.jsonl", [ESCALATING])
    label_file(model, tmp_path / "in.jsonl", tmp_path / "out.jsonl")
    (labelled,) = read_jsonl(tmp_path / "out.jsonl")
    written = [turn["prediction"] for turn in labelled["turns"] if "prediction" in turn]
    assert [p["escalation"]["reasons"] for p in written] == [
        [],
        ["supervisor_request", "refusal_not_accepted"],
        ["supervisor_request"],  # the transfer is promised, the customer waits: still pending; refusal accepted
    ]
    assert written[1]["escalation"]["since_turn"] == {"supervisor_request": 3, "refusal_not_accepted": 3}
    assert written[1]["escalation"]["escalate"] and written[1]["escalation"]["score"] == pytest.approx(0.93)
    # The old fields stay: the model's own escalate and escalate_score, and its signals.
    assert (written[1]["escalate"], written[1]["escalate_score"]) == (False, 0.2)
    assert written[1]["signals"] == {"supervisor_request": 0.93}
    # Agent turns are read with their preceding turns as context.
    context = (("agent", "Здравствуйте"), ("customer", "Верните деньги"))
    assert model.agent_inputs[1] == TurnInput("К сожалению, вернуть деньги невозможно", context, "ru")


def test_label_policy_file_turns_a_rule_off_and_a_bad_file_is_exit_2(tiny_model_dir, tmp_path, monkeypatch):
    model = SignalModel(SIGNAL_MODEL_SCRIPT, AGENT_SCRIPT)
    (tmp_path / "policy.toml").write_text("[supervisor_request]\nenabled = false\n", encoding="utf-8")
    write_jsonl(tmp_path / "in.jsonl", [ESCALATING])
    monkeypatch.setattr(Classifier, "from_pretrained", classmethod(lambda cls, *args, **kwargs: model))
    runner = CliRunner()
    result = runner.invoke(
        app,
        [
            "label",
            str(tmp_path / "in.jsonl"),
            "-o",
            str(tmp_path / "o.jsonl"),
            "--policy",
            str(tmp_path / "policy.toml"),
        ],
    )
    assert result.exit_code == 0, result.output
    (labelled,) = read_jsonl(tmp_path / "o.jsonl")
    assert labelled["turns"][3]["prediction"]["escalation"]["reasons"] == ["refusal_not_accepted"]
    (tmp_path / "bad.toml").write_text("[supervisor_request]\nthreshhold = 0.4\n", encoding="utf-8")
    bad = runner.invoke(
        app,
        ["label", str(tmp_path / "in.jsonl"), "-o", str(tmp_path / "o2.jsonl"), "--policy", str(tmp_path / "bad.toml")],
    )
    assert bad.exit_code == 2 and "unknown key 'threshhold'" in bad.output and "bad.toml" in bad.output
    assert not (tmp_path / "o2.jsonl").exists()


def test_the_tiny_model_without_signals_escalates_by_its_learnt_score(classifier, tmp_path):
    write_jsonl(tmp_path / "in.jsonl", CONVERSATIONS[:1])
    label_file(classifier, tmp_path / "in.jsonl", tmp_path / "out.jsonl")
    written = [turn["prediction"] for turn in read_jsonl(tmp_path / "out.jsonl")[0]["turns"] if "prediction" in turn]
    for prediction in written:
        escalation = prediction["escalation"]
        assert ("learnt_score" in escalation["reasons"]) == prediction["escalate"]
        assert escalation["score"] >= prediction["escalate_score"] - 1e-6
        assert set(escalation["reasons"]) <= {"learnt_score", "abuse", "persistent_anger"}


def test_a_real_signal_model_gives_every_escalated_turn_a_reason_and_its_turn(tiny_signal_model_dir, tmp_path):
    """The tiny random signal model through label_file: signals on customer turns, agent turns read, and every
    escalated turn names at least one reason with the customer turn that set it off (at or before it)."""
    model = Classifier.from_pretrained(tiny_signal_model_dir, backend="torch")
    conversations = [
        {
            "id": f"c{k}",
            "lang": lang,
            "turns": [
                {"speaker": "agent", "text": agent},
                {"speaker": "customer", "text": first},
                {"speaker": "agent", "text": agent},
                {"speaker": "customer", "text": second},
            ],
        }
        for k, (lang, agent, first, second) in enumerate(
            [
                ("ru", "Здравствуйте", "Позовите руководителя", "Я напишу жалобу в Роспотребнадзор"),
                ("zh", "您好", "我要投诉你们", "叫你们经理来"),
            ]
        )
    ]
    write_jsonl(tmp_path / "in.jsonl", conversations)
    # the rules alone, with a supervisor-request threshold every probability reaches: that rule must fire on
    # the first customer turn and be held; whatever else escalates does so by a named rule
    policy = EscalationPolicy(learnt_head="off", supervisor_request=SignalRule(threshold=0.0))
    label_file(model, tmp_path / "in.jsonl", tmp_path / "out.jsonl", policy=policy)
    for labelled in read_jsonl(tmp_path / "out.jsonl"):
        customer_indices = [k for k, turn in enumerate(labelled["turns"]) if turn["speaker"] == "customer"]
        for index in customer_indices:
            prediction = labelled["turns"][index]["prediction"]
            assert set(prediction["signals"]) == set(CUSTOMER_SIGNALS)
            escalation = prediction["escalation"]
            assert escalation["escalate"] == bool(escalation["reasons"])
            assert set(escalation["since_turn"]) == set(escalation["reasons"])
            for since in escalation["since_turn"].values():
                assert since in customer_indices and since <= index
            assert escalation["since_turn"]["supervisor_request"] == customer_indices[0]
