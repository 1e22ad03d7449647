"""End-to-end checks on the shipped models, ``default`` and ``fast`` (offline; the base encoder is rebuilt into a
temp cache)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tonewatch.cli import app
from tonewatch.model import DEFAULT_MODEL_DIR, Classifier
from tonewatch.model.types import BUNDLED_MODELS, resolve_model_dir

ROOT = Path(__file__).resolve().parent.parent

# How far the seed alone moves the default recipe's callcenter_dev figures: emotion macro-F1 "between 0.787
# and 0.813 for the same recipe and data" (docs/design.md: four seeds on a GPU and v4 on the CPU); escalation
# F1 0.833-0.859 over the same four GPU seeds (docs/experiments.md, "Trigger conversations, eight seeds on a
# GPU", columns g7-g12), the same width. A shipped report is one draw from that range, so each of its figures
# less this is the floor; the fast model's own seed spread was not measured, so it gets the default's.
SEED_SPREAD = round(0.813 - 0.787, 3)

pytestmark = pytest.mark.skipif(
    not (DEFAULT_MODEL_DIR / "model.safetensors").exists(), reason="no shipped default model in model/default"
)


@pytest.fixture(scope="module", params=sorted(BUNDLED_MODELS))
def bundled(request):
    """``(name, classifier)`` of each shipped model on its default (ONNX Runtime) path."""
    return request.param, Classifier.from_pretrained(request.param)


def test_bundled_names_resolve_and_a_real_path_wins(tmp_path, monkeypatch):
    assert resolve_model_dir(None) == DEFAULT_MODEL_DIR == resolve_model_dir("default")
    assert resolve_model_dir("fast") == DEFAULT_MODEL_DIR.parent / "fast"
    monkeypatch.chdir(tmp_path)
    (tmp_path / "fast").mkdir()
    assert resolve_model_dir("fast") == Path("fast")
    assert resolve_model_dir("runs/x") == Path("runs/x")


def test_readme_label_command_on_the_example_file(tmp_path):
    result = CliRunner().invoke(
        app, ["label", str(ROOT / "examples" / "conversations.jsonl"), "-o", str(tmp_path / "labelled.jsonl")]
    )
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in (tmp_path / "labelled.jsonl").read_text().splitlines()]
    assert [r["id"] for r in records] == ["example-zh-1", "example-ru-1", "example-ru-2"]
    last = {r["id"]: [t for t in r["turns"] if t["speaker"] == "customer"][-1]["prediction"] for r in records}
    assert last["example-ru-1"]["emotion"] == "calm" and not last["example-ru-1"]["escalate"]
    assert last["example-ru-2"]["emotion"] == "abusive" and last["example-ru-2"]["escalate"]
    assert last["example-zh-1"]["emotion"] in ("angry", "abusive") and last["example-zh-1"]["escalate"]


def test_clear_cases_in_both_languages(bundled):
    _name, classifier = bundled
    texts = ["好的，谢谢您的帮助", "Спасибо, всё понятно", "你是猪吗，傻X客服", "Ты тупая что ли? Идиотка"]
    labels = [p.emotion for p in classifier.classify(texts)]
    assert labels == ["calm", "calm", "abusive", "abusive"]


@pytest.mark.parametrize("name", sorted(BUNDLED_MODELS))
def test_shipped_model_is_small_and_complete(name):
    directory = BUNDLED_MODELS[name]
    weights = sum(path.stat().st_size for path in directory.glob("*.safetensors"))
    assert weights <= 16 * 1024 * 1024
    for file in ("config.json", "README.md", "report.md", "report.json", "training_config.json"):
        assert (directory / file).is_file(), file
    assert f"tonewatch-{name}" == json.loads((directory / "config.json").read_text())["name"]


def test_onnx_path_keeps_the_labels_of_the_pytorch_path(bundled):
    """The fast path (what label and serve use by default) against the PyTorch path over callcenter_dev."""
    from tonewatch.conversations import read_conversations
    from tonewatch.data.sources.callcenter import PACKAGE_DATA
    from tonewatch.model.types import conversation_turn_inputs

    name, classifier = bundled
    assert classifier.backend_name == "onnx"
    conversations = read_conversations(PACKAGE_DATA / "callcenter_dev" / "dialogues.jsonl")
    turns = [turn for conversation in conversations for turn in conversation_turn_inputs(conversation)]
    fast = classifier.classify(turns)
    reference = Classifier.from_pretrained(name, backend="torch").classify(turns)
    assert len(turns) > 800
    emotion = sum(a.emotion == b.emotion for a, b in zip(fast, reference, strict=True)) / len(turns)
    escalation = sum(a.escalate == b.escalate for a, b in zip(fast, reference, strict=True)) / len(turns)
    assert emotion >= 0.99 and escalation >= 0.99, (emotion, escalation)


@pytest.mark.slow
def test_in_domain_accuracy_of_the_shipped_models(bundled):
    """callcenter_dev (never trained on): each figure of the model's shipped report, less the seed spread."""
    from tonewatch.data.sources import load_source
    from tonewatch.training.evaluate import predict, set_report

    name, classifier = bundled
    shipped = json.loads((BUNDLED_MODELS[name] / "report.json").read_text())["sets"]["callcenter_dev"]["model"]
    records = load_source("callcenter_dev")
    measured = set_report(records, predict(classifier, records), conversations=True)
    for lang in ("zh", "ru"):
        macro_f1 = measured["by_language"][lang]["emotion"]["exact"]["macro_f1"]
        floor = shipped["by_language"][lang]["emotion"]["exact"]["macro_f1"] - SEED_SPREAD
        assert macro_f1 >= floor, f"{name} {lang} macro-F1 {macro_f1:.3f} < {floor:.3f} (report less the spread)"
    escalation_f1 = measured["escalation"]["f1"]
    floor = shipped["escalation"]["f1"] - SEED_SPREAD
    assert escalation_f1 >= floor, f"{name} escalation F1 {escalation_f1:.3f} < {floor:.3f} (report less the spread)"
