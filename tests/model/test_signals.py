"""Turn signals in the model layer: config, network outputs, agent-turn encoding, calibrated signals, ONNX parity."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tonewatch.labels import AGENT_SIGNALS, CUSTOMER_SIGNALS, SIGNALS
from tonewatch.model.backends import OnnxBackend
from tonewatch.model.classifier import Classifier
from tonewatch.model.export import OnnxRecipe, export_onnx
from tonewatch.model.inputs import SPEAKER_PREFIX, encode_turn
from tonewatch.model.types import Calibration, ModelConfig, ModelDirectoryError, TurnInput, read_model_config

CONTEXT = (("customer", "позовите руководителя"), ("agent", "извините, это невозможно"))
ITEMS = [TurnInput("я буду жаловаться", CONTEXT, "ru"), TurnInput("请问", (), "zh"), "abc"]


@pytest.fixture(scope="module")
def signal_classifier(tiny_signal_model_dir):
    return Classifier.from_pretrained(tiny_signal_model_dir, backend="torch")


@pytest.fixture
def far_calibration(signal_classifier):
    """A signal calibration far from the neutral one, restored after the test."""
    calibration = signal_classifier.config.calibration
    saved = dict(vars(calibration))
    calibration.signal_temperature = 0.5
    calibration.signal_thresholds = {"refusal": {"default": 0.9, "ru": 0.1}}
    yield calibration
    vars(calibration).update(saved)


def test_a_model_without_signals_writes_no_signal_fields(tiny_model_dir):
    data = json.loads((tiny_model_dir / "config.json").read_text())
    assert "signals" not in data
    assert not {"signal_temperature", "signal_thresholds"} & set(data["calibration"])
    config = read_model_config(tiny_model_dir)
    assert config.signals == ()
    written = json.dumps(config.to_json(), indent=2, ensure_ascii=False) + "\n"
    assert written == (tiny_model_dir / "config.json").read_text()


def test_a_signal_models_config_round_trips(tiny_signal_model_dir):
    config = read_model_config(tiny_signal_model_dir)
    assert config.signals == SIGNALS
    config.calibration.signal_temperature = 1.7
    config.calibration.signal_thresholds = {"refusal": {"default": 0.4, "zh": 0.35}}
    data = config.to_json()
    assert data["signals"] == list(SIGNALS) and data["calibration"]["signal_temperature"] == 1.7
    again = ModelConfig.from_json(json.loads(json.dumps(data)))
    assert again == config
    assert again.calibration.signal_threshold("refusal", "zh") == 0.35
    assert again.calibration.signal_threshold("refusal", "ru") == 0.4  # no Russian threshold: the default
    assert again.calibration.signal_threshold("refusal") == 0.4
    assert again.calibration.signal_threshold("harm_threat", "zh") == 0.5  # none fitted


@pytest.mark.parametrize(
    ("signals", "message"),
    [(["supervisor_request", "shouting"], "unknown turn signals"), (["refusal", "supervisor_request"], "order")],
)
def test_unknown_or_misordered_signals_are_refused(tiny_signal_model_dir, signals, message):
    data = json.loads((tiny_signal_model_dir / "config.json").read_text())
    data["signals"] = signals
    with pytest.raises(ModelDirectoryError, match=message):
        ModelConfig.from_json(data)


def test_the_network_has_a_signal_output_only_with_signals(signal_classifier, tiny_model_dir):
    ids, mask, types = (torch.from_numpy(array) for array in signal_classifier.encode_batch(ITEMS))
    with torch.no_grad():
        outputs = signal_classifier.network(ids, mask, types)
    assert [tuple(output.shape) for output in outputs] == [(3, 4), (3,), (3, len(SIGNALS))]
    assert torch.isfinite(outputs[2]).all()
    plain = Classifier.from_pretrained(tiny_model_dir, backend="torch")
    assert plain.network.signal_head is None
    with torch.no_grad():
        assert len(plain.network(*(torch.from_numpy(a) for a in plain.encode_batch(ITEMS)))) == 2


def test_a_signal_model_without_its_signal_head_weights_is_refused(tiny_signal_model_dir, tmp_path):
    import shutil

    from safetensors.torch import load_file, save_file

    broken = tmp_path / "broken"
    shutil.copytree(tiny_signal_model_dir, broken)
    weights = {k: v for k, v in load_file(str(broken / "model.safetensors")).items() if "signal_head" not in k}
    save_file(weights, str(broken / "model.safetensors"))
    with pytest.raises(ModelDirectoryError, match="signal_head"):
        Classifier.from_pretrained(broken, backend="torch")


def test_agent_turns_are_marked_and_customer_turns_encode_as_before(signal_classifier):
    tokenizer, limits = signal_classifier.tokenizer, signal_classifier.config.limits
    customer = encode_turn(tokenizer, "я буду жаловаться", CONTEXT, limits)
    assert encode_turn(tokenizer, "я буду жаловаться", CONTEXT, limits, "customer") == customer
    assert signal_classifier.encode(ITEMS[0]) == customer
    agent = signal_classifier.encode(TurnInput("я буду жаловаться", CONTEXT, "ru", speaker="agent"))
    prefix = tokenizer(f"{SPEAKER_PREFIX['agent']} я буду жаловаться", add_special_tokens=False)["input_ids"]
    turn_length = agent.token_type_ids.count(0)
    assert agent.input_ids[1 : turn_length - 1] == prefix[: limits.max_turn_tokens]
    # The same context, of which the longer agent turn leaves less room (the oldest tokens go first).
    agent_context = agent.input_ids[turn_length:]
    assert len(agent_context) > 1 and customer.input_ids[-len(agent_context) :] == agent_context
    with pytest.raises(ValueError, match="unknown speaker"):
        TurnInput("a", speaker="supervisor")


def test_classify_fills_the_calibrated_customer_signals(signal_classifier, far_calibration):
    _, _, signal_logits = signal_classifier.raw_logits(ITEMS, with_signals=True)
    predictions = signal_classifier.classify(ITEMS)
    probabilities = torch.sigmoid(signal_logits / 0.5)
    for row, prediction in enumerate(predictions):
        assert list(prediction.signals) == list(CUSTOMER_SIGNALS)
        expected = [probabilities[row, SIGNALS.index(name)].item() for name in CUSTOMER_SIGNALS]
        assert list(prediction.signals.values()) == pytest.approx(expected, abs=1e-6)
        assert set(prediction.to_dict()["signals"]) == set(CUSTOMER_SIGNALS)


def test_a_model_without_signals_predicts_none(tiny_model_dir):
    plain = Classifier.from_pretrained(tiny_model_dir, backend="torch")
    assert plain.signal_names == ()
    prediction = plain.classify(ITEMS)[0]
    assert prediction.signals == {} and "signals" not in prediction.to_dict()
    assert plain.agent_signals([TurnInput("извините", CONTEXT, "ru")]) == [{}]


def test_agent_signals_read_agent_turns(signal_classifier, far_calibration):
    turns = [TurnInput("извините, это невозможно", CONTEXT, "ru"), TurnInput("如果您继续辱骂，我将结束通话", (), "zh")]
    scores = signal_classifier.agent_signals(turns)
    assert [list(score) for score in scores] == [list(AGENT_SIGNALS)] * 2
    agent_turns = [TurnInput(turn.text, turn.context, turn.lang, speaker="agent") for turn in turns]
    _, _, signal_logits = signal_classifier.raw_logits(agent_turns, with_signals=True)
    expected = torch.sigmoid(signal_logits / 0.5)
    for row, score in enumerate(scores):
        assert list(score.values()) == pytest.approx(
            [expected[row, SIGNALS.index(name)].item() for name in AGENT_SIGNALS], abs=1e-6
        )
    # Read as a customer turn, the same text gives other logits: the speaker prefix is part of the input.
    _, _, as_customer = signal_classifier.raw_logits(turns, with_signals=True)
    assert not torch.allclose(as_customer, signal_logits)
    assert signal_classifier.agent_signals([]) == []


def test_classify_refuses_agent_turns(signal_classifier):
    with pytest.raises(ValueError, match=r"item 1 is an agent turn; read agent turns' signals with agent_signals"):
        signal_classifier.classify(["a", TurnInput("извините", (), "ru", speaker="agent")])


def test_onnx_export_gives_the_signal_logits(signal_classifier, tiny_model_dir, tmp_path):
    import onnx

    fp32 = export_onnx(signal_classifier, tmp_path / "fp32", recipe=OnnxRecipe.named("fp32"), calibration_turns=())
    graph = onnx.load(str(fp32 / "model.onnx"), load_external_data=False).graph
    assert [output.name for output in graph.output] == ["emotion_logits", "escalation_logit", "signal_logits"]
    fast = Classifier(OnnxBackend(fp32), signal_classifier.tokenizer, signal_classifier.config)
    turns = [*ITEMS, TurnInput("извините", CONTEXT, "ru", speaker="agent")]
    reference = signal_classifier.raw_logits(turns, with_signals=True)
    candidate = fast.raw_logits(turns, with_signals=True)
    for expected, got in zip(reference, candidate, strict=True):
        np.testing.assert_allclose(got.numpy(), expected.numpy(), atol=1e-4)
    # Recipe int8 measures a re-check margin for the signals too, and its answers stay close.
    int8 = export_onnx(
        signal_classifier,
        tmp_path / "int8",
        calibration_turns=[TurnInput(t, (), "ru") for t in ("да", "нет", "abc")],
        recipe=OnnxRecipe.named("int8"),
    )
    backend = OnnxBackend(int8)
    assert backend.margins["signal_margin"] >= 0
    quantized = Classifier(backend, signal_classifier.tokenizer, signal_classifier.config)
    np.testing.assert_allclose(
        quantized.raw_logits(turns, with_signals=True)[2].numpy(), reference[2].numpy(), atol=0.3
    )
    assert [p.signals.keys() for p in quantized.classify(ITEMS)] == [p.signals.keys() for p in fast.classify(ITEMS)]


def test_a_non_signal_export_keeps_two_outputs(tiny_model_dir, tmp_path):
    import onnx

    plain = Classifier.from_pretrained(tiny_model_dir, backend="torch")
    target = export_onnx(plain, tmp_path / "plain", recipe=OnnxRecipe.named("fp32"), calibration_turns=())
    graph = onnx.load(str(target / "model.onnx"), load_external_data=False).graph
    assert [output.name for output in graph.output] == ["emotion_logits", "escalation_logit"]


def test_signal_thresholds_default_to_one_half():
    assert Calibration().signal_threshold("refusal", "zh") == 0.5
