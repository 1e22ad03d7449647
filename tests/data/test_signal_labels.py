"""Turn-signal overlays: reading, checking against the conversations, joining to customer and agent turns."""

from __future__ import annotations

import json

import pytest

from tonewatch.data.records import Record
from tonewatch.data.signal_labels import (
    SignalLabelError,
    agent_signal_records,
    apply_signal_labels,
    load_signal_overlay,
    read_signal_overlay,
    set_conversations,
    signal_set_records,
)
from tonewatch.data.sources import load_source

# ru-train-0001: agent turns 0, 2, 4, 6; customer turns 1, 3, 5, 7. zh-train-0001: agent 0, 2, ...; customer 1, 3, ...
OVERLAY_LINES = [
    {"id": "ru-train-0001", "signals": {"2": ["apology_or_offer", "refusal"], "3": ["supervisor_request"]}},
    {"id": "zh-train-0001", "signals": {}},
]


def write_overlay(path, lines) -> str:
    path.write_text("".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines))
    return str(path)


@pytest.fixture(scope="module")
def train_conversations():
    return set_conversations("callcenter_train")


@pytest.fixture(scope="module")
def train_records():
    return load_source("callcenter_train")


def test_customer_turns_of_annotated_conversations_get_every_customer_signal(
    tmp_path, train_records, train_conversations
):
    overlay = read_signal_overlay(write_overlay(tmp_path / "callcenter_train.jsonl", OVERLAY_LINES))
    labelled = {record.id: record for record in apply_signal_labels(train_records, train_conversations, overlay, "x")}
    assert len(labelled) == len(train_records)
    assert labelled["ru-train-0001:3"].signals == {"supervisor_request": 1, "external_threat": 0, "harm_threat": 0}
    assert labelled["ru-train-0001:1"].signals == {"supervisor_request": 0, "external_threat": 0, "harm_threat": 0}
    assert all(labelled[f"zh-train-0001:{index}"].signals == dict.fromkeys(labelled["ru-train-0001:1"].signals, 0)
               for index in (1, 3))  # fmt: skip
    # A conversation without an overlay line is unknown, not "no signal"; the emotion labels are untouched.
    assert labelled["ru-train-0003:1"].signals is None
    assert labelled["ru-train-0001:3"].emotion == {r.id: r for r in train_records}["ru-train-0001:3"].emotion


def test_agent_turns_of_annotated_conversations_become_records_with_context(tmp_path, train_conversations):
    overlay = read_signal_overlay(write_overlay(tmp_path / "o.jsonl", OVERLAY_LINES))
    records = agent_signal_records(train_conversations, overlay, source="callcenter_train", tier="train")
    ru = [record for record in records if record.conversation_id == "ru-train-0001"]
    assert [record.id for record in ru] == ["ru-train-0001:0", "ru-train-0001:2", "ru-train-0001:4", "ru-train-0001:6"]
    assert [len(record.context) for record in ru] == [0, 2, 4, 6]
    assert ru[1].speaker == "agent" and ru[1].emotion is None and ru[1].escalate is None
    assert ru[1].signals == {"apology_or_offer": 1, "refusal": 1, "abuse_warning": 0}
    assert ru[2].signals == {"apology_or_offer": 0, "refusal": 0, "abuse_warning": 0}
    assert ru[1].context[-1].speaker == "customer" and ru[1].context[0].speaker == "agent"
    assert {record.conversation_id for record in records} == {"ru-train-0001", "zh-train-0001"}


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ({"id": "ru-train-0001", "signals": {"3": ["shouting"]}}, r"turn 3: unknown signals \['shouting'\]"),
        ({"id": "ru-train-0001", "signals": {"three": ["refusal"]}}, "turn index 'three' is not a number"),
        ({"id": "ru-train-0001", "signals": {"3": "refusal"}}, "turn 3: expected a list of signal names"),
        ({"id": "ru-train-0001", "signals": {"3": ["refusal", "refusal"]}}, "turn 3: a signal is listed twice"),
        ({"id": "ru-train-0001"}, "signals must be an object"),
        ({"signals": {}}, "expected an object with a string id"),
    ],
)
def test_malformed_lines_are_refused_with_their_line_number(tmp_path, line, message):
    path = write_overlay(tmp_path / "bad.jsonl", [OVERLAY_LINES[1], line])
    with pytest.raises(SignalLabelError, match=f"bad.jsonl:2: {message}"):
        read_signal_overlay(path)


def test_a_repeated_conversation_and_invalid_json_are_refused(tmp_path):
    with pytest.raises(SignalLabelError, match=r"bad\.jsonl:2: conversation 'zh-train-0001' is annotated twice"):
        read_signal_overlay(write_overlay(tmp_path / "bad.jsonl", [OVERLAY_LINES[1], OVERLAY_LINES[1]]))
    (tmp_path / "bad.jsonl").write_text('{"id": "a", "signals": {}}\n{"id":\n')
    with pytest.raises(SignalLabelError, match=r"bad\.jsonl:2: not JSON"):
        read_signal_overlay(tmp_path / "bad.jsonl")


@pytest.mark.parametrize(
    ("signals", "message"),
    [
        ({"2": ["supervisor_request"]}, r"turn 2 is the agent's; \['supervisor_request'\] are customer "
         "signals"),
        ({"3": ["refusal"]}, r"turn 3 is the customer's; \['refusal'\] are agent signals"),
        ({"8": ["refusal"]}, r"turn 8 is out of range \(the conversation has 8 turns, counted from 0\)"),
    ],
)  # fmt: skip
def test_signals_that_do_not_fit_the_conversation_are_refused(train_records, train_conversations, signals, message):
    overlay = {"ru-train-0001": {int(index): tuple(names) for index, names in signals.items()}}
    with pytest.raises(SignalLabelError, match=rf"^train\.jsonl: 'ru-train-0001' {message}"):
        apply_signal_labels(train_records, train_conversations, overlay, "train.jsonl")


def test_an_id_that_is_not_a_conversation_of_the_set_is_refused(train_records, train_conversations):
    overlay = {"ru-train-0001": {}, "ru-train-9999": {}}
    with pytest.raises(SignalLabelError, match=r"1 annotated conversations are not in the set \(first: 'ru-train-9999"):
        apply_signal_labels(train_records, train_conversations, overlay, "train.jsonl")


def test_a_held_out_set_without_an_overlay_has_no_signal_records(tmp_path):
    assert load_signal_overlay("probes", tmp_path) is None
    assert signal_set_records("probes", tmp_path) is None
    probe = set_conversations("probes")[0]
    write_overlay(tmp_path / "probes.jsonl", [{"id": probe["id"], "signals": {"1": ["supervisor_request"]}}])
    records = signal_set_records("probes", tmp_path)
    customer = [record for record in records if record.speaker == "customer"]
    agent = [record for record in records if record.speaker == "agent"]
    speakers = [turn["speaker"] for turn in probe["turns"]]
    assert len(customer) == speakers.count("customer") and len(agent) == speakers.count("agent")
    assert customer[0].signals["supervisor_request"] == 1 and customer[0].emotion is not None
    assert all(record.tier == "eval" and record.signals is not None for record in records)


def test_records_check_their_speaker_and_signals():
    fields = {"id": "c:1", "text": "извините", "lang": "ru", "source": "t", "tier": "train", "speaker": "agent"}
    assert Record(**fields, signals={"refusal": 1}).signals == {"refusal": 1}
    with pytest.raises(ValueError, match="'supervisor_request' is not an agent signal"):
        Record(**fields, signals={"supervisor_request": 1})
    with pytest.raises(ValueError, match="signal 'refusal' must be 0 or 1"):
        Record(**fields, signals={"refusal": 2})
    with pytest.raises(ValueError, match="an agent turn has no emotion or escalation label"):
        Record(**fields, emotion="calm")
    with pytest.raises(ValueError, match="unknown speaker"):
        Record(**{**fields, "speaker": "bot"})
