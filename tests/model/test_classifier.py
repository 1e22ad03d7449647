from __future__ import annotations

import json
import shutil

import pytest
import torch
from torch import nn

from tonewatch.labels import EMOTION_LABELS, SIGNALS, severity
from tonewatch.model.classifier import Classifier
from tonewatch.model.modeling import merge_lora
from tonewatch.model.types import ModelDirectoryError, TurnInput, read_model_config

CONVERSATION = {
    "id": "c1",
    "lang": "ru",
    "turns": [
        {"speaker": "agent", "text": "здравствуйте"},
        {"speaker": "customer", "text": "опять не работает"},
        {"speaker": "agent", "text": "извините"},
        {"speaker": "customer", "text": "позовите руководителя!"},
    ],
}


@pytest.fixture(scope="module", params=["torch", "onnx"])
def classifier(request, tiny_model_dir):
    """Every test runs on both backends."""
    return Classifier.from_pretrained(tiny_model_dir, backend=request.param)


# Dynamic int8 quantisation scales activations per batch: the ONNX path feeds its int8 graph one row at a time so
# that a turn's scores do not depend on its batch; both paths' scores move with the batch by float rounding only.
BATCH_TOLERANCE = {"torch": 1e-5, "onnx": 1e-5}


def test_config_carries_the_label_maps(tiny_model_dir):
    data = json.loads((tiny_model_dir / "config.json").read_text())
    assert [data["id2label"][str(i)] for i in range(4)] == list(EMOTION_LABELS)
    assert data["label2id"] == {label: i for i, label in enumerate(EMOTION_LABELS)}
    assert read_model_config(tiny_model_dir).limits.max_length == 48


def test_predictions_are_probabilities_and_reproducible(classifier):
    items = ["你好 请问", TurnInput("опять!!!", (("agent", "здравствуйте"),), "ru"), "abc"]
    first = classifier.classify(items)
    assert len(first) == 3
    for prediction in first:
        assert set(prediction.scores) == set(EMOTION_LABELS)
        assert sum(prediction.scores.values()) == pytest.approx(1.0, abs=1e-5)
        assert prediction.emotion == max(prediction.scores, key=prediction.scores.get)
    again = Classifier.from_pretrained(classifier.model_dir, backend=classifier.backend_name).classify(items)
    assert [p.to_dict() for p in again] == [p.to_dict() for p in first]


def test_scores_are_the_calibrated_logits(classifier):
    """Emotion: softmax of the tempered logits plus the label bias, in label order; escalation: the sigmoid of
    the tempered logit, decided against its language's threshold."""
    items = ["你好 请问", TurnInput("опять!!!", (("agent", "здравствуйте"),), "ru"), TurnInput("abc", (), "zh")]
    calibration = classifier.config.calibration
    saved = dict(vars(calibration))
    try:  # a calibration far from the tiny model's neutral one, so that each of its parts shows
        calibration.emotion_temperature, calibration.escalation_temperature = 2.0, 0.5
        calibration.emotion_bias = [0.0, 0.5, 1.0, -1.0]
        calibration.escalation_threshold, calibration.escalation_thresholds = 1.0, {"ru": 0.0}
        emotion_logits, escalation_logits = classifier.raw_logits(items)
        predictions = classifier.classify(items)
    finally:
        vars(calibration).update(saved)
    emotion = torch.softmax(emotion_logits / 2.0 + torch.tensor([0.0, 0.5, 1.0, -1.0]), dim=-1)
    escalation = torch.sigmoid(escalation_logits / 0.5)
    for row, prediction in enumerate(predictions):
        assert [prediction.scores[label] for label in EMOTION_LABELS] == pytest.approx(emotion[row].tolist(), abs=1e-6)
        assert prediction.escalate_score == pytest.approx(escalation[row].item(), abs=1e-6)
    assert [prediction.escalate for prediction in predictions] == [False, True, False]


def test_batching_and_order_do_not_change_predictions(classifier):
    items = ["a", "abcabcabc abc", "你好", "опять не работает совсем"]
    one_by_one = [classifier.classify([item])[0].scores for item in items]
    batched = [p.scores for p in classifier.classify(items, batch_size=3)]
    for single, together in zip(one_by_one, batched, strict=True):
        for label in EMOTION_LABELS:
            assert together[label] == pytest.approx(single[label], abs=BATCH_TOLERANCE[classifier.backend_name])


def test_context_changes_the_input(classifier):
    alone = classifier.classify([TurnInput("да", (), "ru")])[0]
    in_context = classifier.classify([TurnInput("да", (("agent", "извините"), ("customer", "позовите")), "ru")])[0]
    assert alone.scores != in_context.scores


def test_conversation_gives_one_prediction_per_customer_turn(classifier):
    predictions = classifier.classify_conversation(CONVERSATION)
    assert len(predictions) == 2
    assert classifier.classify([]) == []


def test_thresholds_decide_escalation(classifier):
    calibration = classifier.config.calibration
    original = (calibration.escalation_threshold, dict(calibration.escalation_thresholds))
    try:
        calibration.escalation_threshold, calibration.escalation_thresholds = 0.0, {}
        assert all(p.escalate for p in classifier.classify(["a", "b"]))
        calibration.escalation_thresholds = {"ru": 1.01}
        assert not classifier.classify([TurnInput("a", (), "ru")])[0].escalate
        assert classifier.classify([TurnInput("a", (), "zh")])[0].escalate
    finally:
        calibration.escalation_threshold, calibration.escalation_thresholds = original


def test_merge_lora_adds_the_scaled_product():
    encoder = nn.Module()
    encoder.proj = nn.Linear(3, 2, bias=False)
    before = encoder.proj.weight.detach().clone()
    lora_a, lora_b = torch.randn(4, 3), torch.randn(2, 4)
    assert merge_lora(encoder, {"proj.lora_A": lora_a, "proj.lora_B": lora_b}, scaling=0.5) == 1
    torch.testing.assert_close(encoder.proj.weight, before + 0.5 * lora_b @ lora_a)
    with pytest.raises(KeyError, match="missing"):
        merge_lora(encoder, {"missing.lora_A": lora_a, "missing.lora_B": lora_b}, 1.0)


def test_directory_without_label_maps_is_refused(tiny_model_dir, tmp_path):
    copy = tmp_path / "model"
    shutil.copytree(tiny_model_dir, copy)
    data = json.loads((copy / "config.json").read_text())
    del data["id2label"]
    (copy / "config.json").write_text(json.dumps(data))
    with pytest.raises(ModelDirectoryError, match="label maps"):
        Classifier.from_pretrained(copy)


def test_other_label_schemes_and_non_models_are_refused(tiny_model_dir, tmp_path):
    with pytest.raises(ModelDirectoryError, match="not a tonewatch model directory"):
        Classifier.from_pretrained(tmp_path)
    copy = tmp_path / "model"
    shutil.copytree(tiny_model_dir, copy)
    data = json.loads((copy / "config.json").read_text())
    data["id2label"] = {"0": "positive", "1": "negative", "2": "neutral", "3": "other"}
    (copy / "config.json").write_text(json.dumps(data))
    with pytest.raises(ModelDirectoryError, match="differ"):
        Classifier.from_pretrained(copy)


def test_missing_head_tensors_are_an_error(tiny_model_dir, tmp_path):
    from safetensors.torch import load_file, save_file

    copy = tmp_path / "model"
    shutil.copytree(tiny_model_dir, copy)
    state = load_file(str(copy / "model.safetensors"))
    del state["emotion_head.weight"]
    save_file(state, str(copy / "model.safetensors"))
    with pytest.raises(ModelDirectoryError, match=r"emotion_head\.weight"):
        Classifier.from_pretrained(copy)


def test_a_turns_architecture_model_is_refused(tiny_model_dir, tmp_path):
    copy = tmp_path / "model"
    shutil.copytree(tiny_model_dir, copy)
    data = json.loads((copy / "config.json").read_text())
    assert data["architecture"] == "joint"  # still written, as older versions read it
    data["architecture"] = "turns"
    (copy / "config.json").write_text(json.dumps(data))
    for backend in ("torch", "onnx"):
        with pytest.raises(ModelDirectoryError, match="'turns' is not supported"):
            Classifier.from_pretrained(copy, backend=backend)
    del data["architecture"]  # models v1-v2 did not name it: joint
    (copy / "config.json").write_text(json.dumps(data))
    assert read_model_config(copy).architecture == "joint"


def test_inference_matches_the_training_forward(tiny_model_dir):
    """The saved and reloaded model (LoRA merged) computes the logits of the training network's batched forward."""
    from transformers import AutoTokenizer

    from tonewatch.training.dataset import tokenize_batch
    from tonewatch.training.train import collate

    classifier = Classifier.from_pretrained(tiny_model_dir, backend="torch")
    items = [
        TurnInput("опять не работает", (("agent", "здравствуйте"),), "ru"),
        TurnInput("позовите руководителя!", (("agent", "здравствуйте"), ("customer", "опять"), ("agent", "увы")), "ru"),
        TurnInput("你好", (), "zh"),
    ]
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_model_dir))
    batch = {
        "text": [item.text for item in items],
        "context_speakers": [[speaker for speaker, _ in item.context] for item in items],
        "context_texts": [[text for _, text in item.context] for item in items],
        "speaker": ["customer" for _ in items],
    }
    rows = tokenize_batch(batch, tokenizer, classifier.config.limits)
    labels = {
        "emotion_allowed": [0, 0, 0, 0],
        "emotion_exact": -1,
        "escalate": -1.0,
        "weight": 1.0,
        "signals": [-1.0] * len(SIGNALS),
        "speaker": "customer",
    }
    examples = [dict(zip(rows, values, strict=True)) | labels for values in zip(*rows.values(), strict=True)]
    with torch.no_grad():
        emotion, escalation = collate(examples, tokenizer.pad_token_id).logits(classifier.network)
    expected_emotion, expected_escalation = classifier.raw_logits(items)
    torch.testing.assert_close(emotion, expected_emotion, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(escalation, expected_escalation, atol=1e-5, rtol=1e-4)


LONG_TURN = TurnInput(" ".join(f"слово{number}" for number in range(12)), (("agent", "здравствуйте"),), "ru")


def test_a_long_turn_is_read_in_windows_and_labelled_by_its_riskiest(classifier):
    windows = classifier.encode_windows(LONG_TURN)
    assert len(windows) == classifier.window_count(LONG_TURN) > 2
    assert windows[0] == classifier.encode(LONG_TURN)
    # Each window on its own, as the model reads it.
    langs = ["ru"] * len(windows)
    each = classifier.predictions_from_logits(*classifier.logits(windows, langs=langs), langs)
    (got,) = classifier.classify([LONG_TURN])
    riskiest = max(each, key=lambda prediction: (severity(prediction.emotion), prediction.scores[prediction.emotion]))
    assert got.windows == len(windows) and got.to_dict()["windows"] == len(windows)
    assert got.emotion == riskiest.emotion
    assert got.scores == pytest.approx(riskiest.scores, abs=1e-5)
    assert got.escalate_score == pytest.approx(max(prediction.escalate_score for prediction in each), abs=1e-5)


def test_windows_take_the_most_severe_label_then_its_highest_probability_and_every_highest_score(classifier):
    calibration = classifier.config.calibration
    saved = dict(vars(calibration))
    try:  # logits are then calibrated logits: softmax(logits)
        calibration.emotion_temperature, calibration.emotion_bias = 1.0, [0.0] * len(EMOTION_LABELS)
        emotion = torch.tensor(
            [
                [5.0, 0.0, 0.0, 0.0],  # turn 0: calm, sure
                [0.0, 0.0, 0.0, 1.0],  # abusive, unsure
                [0.0, 0.0, 0.0, 3.0],  # abusive, surer: the riskiest
                [0.0, 0.0, 9.0, 0.0],  # angry, very sure, but less severe
                [0.0, 2.0, 0.0, 0.0],  # turn 1, one window: its own
            ]
        )
        escalation = torch.tensor([0.5, -1.0, -2.0, 3.0, 0.1])
        signals = torch.tensor([[1.0, 0.0], [0.0, 2.0], [0.0, 0.0], [0.5, 0.5], [7.0, 8.0]])
        combined = classifier.combine_windows((emotion, escalation, signals), [0, 0, 0, 0, 1])
    finally:
        vars(calibration).update(saved)
    assert torch.equal(combined[0], emotion[[2, 4]])
    assert combined[1].tolist() == pytest.approx([3.0, 0.1])  # an escalation anywhere in the turn counts
    assert combined[2].tolist() == [[1.0, 2.0], [7.0, 8.0]]  # so does each signal


def test_short_turns_beside_a_long_one_are_as_alone_and_progress_counts_turns(classifier):
    items = ["a", LONG_TURN, "你好 请问", "опять!!!"]
    done: list[int] = []
    together = classifier.classify(items, batch_size=3, on_batch=done.append)
    assert sum(done) == len(items) and all(count >= 0 for count in done)
    assert [prediction.windows for prediction in together] == [1, classifier.window_count(LONG_TURN), 1, 1]
    for item, prediction in zip(items, together, strict=True):
        if item is LONG_TURN:
            continue
        (alone,) = classifier.classify([item])
        assert "windows" not in prediction.to_dict()
        assert prediction.to_dict() == alone.to_dict()  # to the 6 decimals that are written out
