"""Turn signals in training: the masked loss, the agent-turn pool, calibration, the report, a smoke run."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest
import torch

from tonewatch.configfile import ConfigError
from tonewatch.data.records import Record
from tonewatch.data.signal_labels import set_conversations
from tonewatch.labels import AGENT_SIGNALS, CUSTOMER_SIGNALS, SIGNALS
from tonewatch.model.classifier import Classifier
from tonewatch.model.types import Calibration
from tonewatch.training.calibration import MIN_SIGNAL_POSITIVES_PER_LANGUAGE, fit_signal_calibration
from tonewatch.training.config import TrainConfig
from tonewatch.training.dataset import (
    AGENT_TURNS_POOL,
    build_training_data,
    record_to_example,
    source_shares,
)
from tonewatch.training.signals_eval import signal_figures, signal_lines
from tonewatch.training.train import Batch, signal_loss

SUPERVISOR = re.compile("руковод|начальник|старш|主管|经理|领导")
APOLOGY = re.compile("извин|прости|抱歉|对不起|不好意思")


def fixture_overlay(conversations: list[dict], step: int) -> list[dict]:
    """Signal labels for every ``step``-th conversation, by keyword (a fixture, not an annotation)."""
    lines = []
    for conversation in conversations[::step]:
        signals = {}
        for index, turn in enumerate(conversation["turns"]):
            pattern = SUPERVISOR if turn["speaker"] == "customer" else APOLOGY
            if pattern.search(turn["text"].lower()):
                signals[str(index)] = ["supervisor_request" if turn["speaker"] == "customer" else "apology_or_offer"]
        lines.append({"id": conversation["id"], "signals": signals})
    return lines


@pytest.fixture(scope="module")
def overlay_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("signals")
    for name, step in (("callcenter_train", 4), ("callcenter_dev", 5), ("probes", 2)):
        lines = fixture_overlay(set_conversations(name), step)
        (directory / f"{name}.jsonl").write_text("".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines))
    return directory


def batch_with(signals: list[list[float]], weight: list[float] | None = None) -> Batch:
    n = len(signals)
    return Batch(
        input_ids=torch.zeros((n, 1), dtype=torch.long),
        attention_mask=torch.ones((n, 1), dtype=torch.long),
        token_type_ids=torch.zeros((n, 1), dtype=torch.long),
        emotion_allowed=torch.zeros((n, 4), dtype=torch.bool),
        emotion_exact=torch.full((n,), -1),
        escalate=torch.full((n,), -1.0),
        weight=torch.tensor(weight or [1.0] * n),
        signals=torch.tensor(signals),
    )


def test_the_signal_loss_counts_only_labelled_turns_and_their_speakers_signals():
    logits = torch.zeros(2, len(SIGNALS))
    logits[0, 0] = 100.0  # a confident supervisor_request on the labelled turn
    logits[1] = -100.0  # the unlabelled turn's logits must not matter
    unknown = [-1.0] * len(SIGNALS)
    labelled = [1.0, 0.0, 0.0, -1.0, -1.0, -1.0]  # a customer turn: its three signals, no agent signal
    loss = signal_loss(logits, batch_with([labelled, unknown]))
    assert loss.item() == pytest.approx(2 * math.log(2) / 3, rel=1e-4)  # (0 + log 2 + log 2) / 3 pairs
    changed = logits.clone()
    changed[0, 3:] = 50.0  # the agent columns of a customer turn are never asked
    changed[1] = 50.0
    assert signal_loss(changed, batch_with([labelled, unknown])).item() == pytest.approx(loss.item())
    assert signal_loss(logits, batch_with([unknown, unknown])).item() == 0.0


def test_examples_carry_the_speaker_and_one_target_per_signal():
    customer = Record(id="c:1", text="позовите старшего", lang="ru", source="s", tier="train",
                      signals={"supervisor_request": 1, "external_threat": 0, "harm_threat": 0})  # fmt: skip
    agent = Record(id="c:2", text="извините", lang="ru", source="s", tier="train", speaker="agent",
                   signals={"apology_or_offer": 1, "refusal": 0, "abuse_warning": 0})  # fmt: skip
    unlabelled = Record(id="c:3", text="да", lang="ru", source="s", tier="train", emotion="calm")
    assert record_to_example(customer)["signals"] == [1.0, 0.0, 0.0, -1.0, -1.0, -1.0]
    assert record_to_example(agent)["signals"] == [-1.0, -1.0, -1.0, 1.0, 0.0, 0.0]
    assert record_to_example(agent)["speaker"] == "agent" and record_to_example(agent)["escalate"] == -1.0
    assert record_to_example(unlabelled)["signals"] == [-1.0] * len(SIGNALS)


def test_agent_turns_take_their_share_of_each_batch():
    config = TrainConfig(source_shares={"callcenter_train": 0.5, "cold": 0.5}, signals=True, agent_turn_share=0.2)
    shares = source_shares(config, pools={"callcenter_train", "cold", AGENT_TURNS_POOL})
    assert shares == pytest.approx({"callcenter_train": 0.4, "cold": 0.4, AGENT_TURNS_POOL: 0.2})
    assert AGENT_TURNS_POOL not in source_shares(config, pools={"callcenter_train", "cold"})
    without = TrainConfig(source_shares={"callcenter_train": 0.5, "cold": 0.5}, agent_turn_share=0.2)
    assert AGENT_TURNS_POOL not in source_shares(without)
    with pytest.raises(ValueError, match="agent_turn_share must be in"):
        TrainConfig(signals=True, agent_turn_share=1.0)
    with pytest.raises(ValueError, match="needs callcenter_train"):
        TrainConfig(signals=True, source_shares={"cold": 1.0})


def test_training_data_joins_the_signal_labels_and_splits_agent_turns_with_their_conversations(overlay_dir):
    config = TrainConfig(source_shares={"callcenter_train": 1.0}, signals=True, signal_labels_dir=str(overlay_dir))
    data = build_training_data(config)
    annotated = {line["id"] for line in fixture_overlay(set_conversations("callcenter_train"), 4)}
    for split in (data.train, data.validation):
        customer, agent = split["callcenter_train"], split[AGENT_TURNS_POOL]
        assert all((record.signals is not None) == (record.conversation_id in annotated) for record in customer)
        assert {record.conversation_id for record in agent} <= {record.conversation_id for record in customer}
        assert all(record.speaker == "agent" and set(record.signals) == set(AGENT_SIGNALS) for record in agent)
    assert sum(record.signals["supervisor_request"] for record in data.train["callcenter_train"] if record.signals) > 5
    assert sum(record.signals["apology_or_offer"] for record in data.train[AGENT_TURNS_POOL]) > 5
    plain = build_training_data(TrainConfig(source_shares={"callcenter_train": 1.0}))
    assert AGENT_TURNS_POOL not in plain.train and all(r.signals is None for r in plain.train["callcenter_train"])


def test_a_signal_run_without_signal_labels_is_refused(tmp_path):
    config = TrainConfig(source_shares={"callcenter_train": 1.0}, signals=True, signal_labels_dir=str(tmp_path))
    with pytest.raises(ConfigError, match=r"no signal labels to train on: .*callcenter_train\.jsonl does not exist"):
        build_training_data(config)


def _record(index: int, lang: str, speaker: str, signals: dict[str, int]) -> Record:
    return Record(id=f"c{index}:1", text="x", lang=lang, source="s", tier="train", speaker=speaker, signals=signals)


def test_signal_calibration_fits_one_temperature_and_thresholds_per_signal_and_language():
    rng = np.random.default_rng(0)
    records, logits = [], []
    for index in range(200):
        lang = "zh" if index % 2 else "ru"
        positive = index % 4 < 2 if lang == "zh" else index % 40 == 0  # zh: 50 positives, ru: 5
        records.append(_record(index, lang, "customer", {"supervisor_request": int(positive), "external_threat": 0,
                                                         "harm_threat": 0}))  # fmt: skip
        row = np.full(len(SIGNALS), -4.0)
        row[0] = (3.0 if positive else -3.0) + rng.normal(0, 1.0)
        logits.append(row)
    records.append(_record(999, "ru", "agent", {"apology_or_offer": 1, "refusal": 0, "abuse_warning": 0}))
    logits.append(np.array([0.0, 0.0, 0.0, 4.0, -4.0, -4.0]))
    temperature, thresholds = fit_signal_calibration(torch.tensor(np.array(logits)), records, SIGNALS)
    assert 0.05 < temperature < 20 and temperature != 1.0
    assert set(thresholds) == {"supervisor_request", "apology_or_offer"}  # no positive: no threshold (0.5 applies)
    assert "zh" in thresholds["supervisor_request"] and "ru" not in thresholds["supervisor_request"]  # 5 < 10
    assert MIN_SIGNAL_POSITIVES_PER_LANGUAGE == 10
    calibration = Calibration(signal_temperature=temperature, signal_thresholds=thresholds)
    assert calibration.signal_threshold("supervisor_request", "ru") == thresholds["supervisor_request"]["default"]
    assert calibration.signal_threshold("harm_threat", "zh") == 0.5
    assert fit_signal_calibration(torch.zeros(1, len(SIGNALS)), [_record(0, "zh", "customer", {})], SIGNALS) == (
        1.0,
        {},
    )


def test_signal_figures_per_language_and_signal():
    records = [
        _record(0, "zh", "customer", {"supervisor_request": 1, "external_threat": 0, "harm_threat": 0}),
        _record(1, "zh", "customer", {"supervisor_request": 0, "external_threat": 0, "harm_threat": 0}),
        _record(2, "zh", "customer", {"supervisor_request": 1, "external_threat": 0, "harm_threat": 0}),
        _record(3, "ru", "agent", {"apology_or_offer": 1, "refusal": 0, "abuse_warning": 0}),
        Record(id="c9:1", text="x", lang="ru", source="s", tier="eval", emotion="calm"),  # no signal labels
    ]
    probabilities = np.full((5, len(SIGNALS)), 0.1)
    probabilities[[0, 1], 0] = 0.9  # one hit, one false alarm, one miss
    probabilities[3, 3] = 0.9
    calibration = Calibration(signal_thresholds={"supervisor_request": {"default": 0.5}})
    figures = signal_figures(records, probabilities, SIGNALS, calibration)
    assert figures["zh"]["supervisor_request"] == {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2, "n": 3}
    assert figures["zh"]["harm_threat"] == {"precision": None, "recall": None, "f1": None, "support": 0, "n": 3}
    assert set(figures["zh"]) == set(CUSTOMER_SIGNALS) and set(figures["ru"]) == set(AGENT_SIGNALS)
    assert figures["ru"]["apology_or_offer"]["f1"] == 1.0 and figures["ru"]["apology_or_offer"]["n"] == 1


def test_smoke_training_with_signals_gives_a_signal_model_and_a_signal_report(
    tiny_base_dir, tmp_path, make_tiny_config, overlay_dir
):
    from tonewatch.training.card import write_model_card
    from tonewatch.training.evaluate import EvalConfig, evaluate

    config = make_tiny_config(
        tiny_base_dir, tmp_path / "run", max_steps=4, signals=True, signal_labels_dir=str(overlay_dir),
        agent_turn_share=0.3,
    )  # fmt: skip
    summary = train_signal_run(config)
    assert all(math.isfinite(loss) for loss in summary["losses"])
    assert "signal_macro_f1" in summary["validation_history"][-1]
    assert summary["batch_shares"][AGENT_TURNS_POOL] == pytest.approx(0.3)
    assert summary["records"][AGENT_TURNS_POOL]["train"] > 0 and summary["records"][AGENT_TURNS_POOL]["validation"] > 0
    model = Classifier.from_pretrained(tmp_path / "run", backend="torch")
    assert model.signal_names == SIGNALS
    calibration = model.config.calibration
    assert calibration.signal_temperature == summary["calibration"]["signal_temperature"]
    assert set(calibration.signal_thresholds) <= set(SIGNALS)
    prediction = model.classify(["позовите руководителя"])[0]
    assert set(prediction.signals) == set(CUSTOMER_SIGNALS)
    assert set(model.agent_signals(["извините"])[0]) == set(AGENT_SIGNALS)

    quick = EvalConfig(
        public_sources=False, onnx=False, probes=False, functional=False, baseline=False, escalation_modes=False
    )
    report = evaluate(tmp_path / "run", quick)
    signals = report["signals"]
    assert set(signals["sets"]) == {"callcenter_dev", "probes"}  # no callcenter_heldout overlay in the fixture
    assert set(signals["all"]) == {"zh", "ru"}
    assert set(signals["all"]["zh"]) == set(signals["all"]["ru"]) == set(SIGNALS)  # every annotated turn counts
    supervisor = signals["all"]["zh"]["supervisor_request"]
    assert supervisor["support"] > 0 and supervisor["n"] > supervisor["support"]
    assert supervisor["f1"] is not None  # there are positives
    suite = report["validation_suite"]["model"]
    assert suite["signals/zh/supervisor_request/f1"] == supervisor["f1"]
    assert not any(key.startswith("signals/") for key in report["validation_suite"]["baseline"])  # none of its own
    markdown = (tmp_path / "run" / "report.md").read_text()
    assert "## Turn signals" in markdown and "| supervisor_request | customer | zh |" in markdown
    assert f"Signal temperature {calibration.signal_temperature:.3f}" in markdown
    assert signal_lines(None) == []
    card = write_model_card(tmp_path / "run").read_text()
    assert "turn signals" in card.lower() and "`supervisor_request`" in card


def train_signal_run(config):
    from tonewatch.training.train import train

    return train(config)
