"""The ONNX Runtime path: export, cache, backend choice, agreement with PyTorch (tiny random model)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from typer.testing import CliRunner

from tonewatch.cli import app
from tonewatch.conversations import read_conversations
from tonewatch.data.sources.callcenter import PACKAGE_DATA
from tonewatch.model import export
from tonewatch.model.backends import OnnxBackend, calibrated_margins, shared_pool_threads
from tonewatch.model.classifier import (
    CALIBRATION_CONVERSATIONS,
    CALIBRATION_FILES,
    Classifier,
    package_calibration_turns,
)
from tonewatch.model.cpu import cpu_info, parse_cpuinfo
from tonewatch.model.export import OnnxRecipe, existing_export, export_key, export_onnx, find_onnx
from tonewatch.model.types import Calibration, TurnInput, conversation_turn_inputs

ITEMS = [
    "你好 请问",
    TurnInput("опять!!! позовите руководителя", (("agent", "здравствуйте"), ("customer", "алло")), "ru"),
    "abc",
    "怎么又这样 都第三次了",
]


@pytest.fixture(scope="module")
def torch_classifier(tiny_model_dir):
    return Classifier.from_pretrained(tiny_model_dir, backend="torch")


@pytest.fixture(scope="module")
def calibration_turns():
    return package_calibration_turns(limit=200)


def _logits(classifier):
    encoded = [classifier.encode(item if isinstance(item, TurnInput) else TurnInput(item)) for item in ITEMS]
    emotion, escalation = classifier.logits(encoded)
    return emotion.numpy(), escalation.numpy()


INT8 = OnnxRecipe.named("int8")


def test_export_writes_a_self_contained_directory(tiny_model_dir, torch_classifier, calibration_turns, tmp_path):
    target = export_onnx(torch_classifier, tmp_path / "onnx", calibration_turns=calibration_turns, recipe=INT8)
    names = {path.name for path in target.iterdir()}
    assert {"model.onnx", "model.fp32.onnx", "embeddings.npy", "onnx.json", "tokenizer.json"} <= names
    meta = json.loads((target / "onnx.json").read_text())
    vocab, hidden = torch_classifier.network.encoder.get_input_embeddings().weight.shape
    assert meta["embeddings"]["shape"] == [vocab, hidden]
    assert meta["embeddings"]["encoding"] == "float32"  # a random matrix has no exact compact encoding
    for graph in ("model.onnx", "model.fp32.onnx"):  # the lookup and its matrix stay out of both graphs
        model = onnx.load(str(target / graph))
        assert [value.name for value in model.graph.input] == list(export.INPUT_NAMES)
        assert all(vocab not in initializer.dims for initializer in model.graph.initializer), graph
    assert meta["key"] == export_key(tiny_model_dir, INT8)
    assert meta["recipe"]["name"] == "int8"
    assert meta["cpu"]["features"] == list(cpu_info().features) and meta["weight_bits"] in (7, 8)
    assert meta["model_dir"] == str(Path(tiny_model_dir).resolve())  # `tonewatch cache` finds it from anywhere
    assert meta["quantized_nodes"] == 2 * 4  # 4 MatMul groups in each of the 2 layers
    assert meta["fused_operators"]["Attention"] == 2
    margins = meta["recheck"]
    # int8 moves a random model's logits: a zero margin (say, the int8 graph measured against itself) would
    # never send a close call to the fp32 graph.
    assert margins["emotion_margin"] > 0 and margins["escalation_margin"] > 0
    assert margins["quantile"] == 0.9
    assert margins["measured_on"].startswith("200 calibration turns, one at a time (sha256 ")
    assert 0 <= meta["int8_against_fp32"]["emotion_agreement"] <= 1
    assert not list(tmp_path.glob(".building-*")), "the work directory is moved into place, not left behind"


def test_fp32_export_matches_pytorch(tiny_model_dir, tmp_path, torch_classifier):
    recipe = OnnxRecipe.named("fp32")
    export_onnx(torch_classifier, recipe=recipe, cache_dir=tmp_path, calibration_turns=())  # no re-check
    onnx_dir = find_onnx(tiny_model_dir, tmp_path, recipe)
    assert onnx_dir is not None and onnx_dir.parent == tmp_path / "onnx"
    fast = Classifier(OnnxBackend(onnx_dir), torch_classifier.tokenizer, torch_classifier.config)
    for reference, candidate in zip(_logits(torch_classifier), _logits(fast), strict=True):
        np.testing.assert_allclose(candidate, reference, atol=1e-4)


def test_a_build_into_the_cache_removes_the_models_stale_exports(tiny_model_dir, torch_classifier, tmp_path):
    """An export of an earlier format (or earlier weights) of the same model is never used again."""
    old = tmp_path / "onnx" / "format-2"
    old.mkdir(parents=True)
    meta = {"key": "0" * 20, "model_dir": str(Path(tiny_model_dir).resolve()), "recipe": {"name": "fp32"}}
    (old / "onnx.json").write_text(json.dumps(meta))
    (old / "model.onnx").write_bytes(b"x" * 1000)
    built = export_onnx(torch_classifier, recipe=OnnxRecipe.named("fp32"), cache_dir=tmp_path, calibration_turns=())
    assert built.is_dir() and not old.exists()


def test_exports_of_models_on_the_same_base_share_one_embeddings_file(tiny_model_dir, torch_classifier, tmp_path):
    copy = tmp_path / "model"
    shutil.copytree(tiny_model_dir, copy)
    config = json.loads((copy / "config.json").read_text())
    config["calibration"]["escalation_threshold"] = 0.123  # another model (key), the same word embeddings
    (copy / "config.json").write_text(json.dumps(config))
    fp32 = OnnxRecipe.named("fp32")
    first = export_onnx(torch_classifier, recipe=fp32, cache_dir=tmp_path / "cache", calibration_turns=())
    other = Classifier.from_pretrained(copy, backend="torch")
    second = export_onnx(other, recipe=fp32, cache_dir=tmp_path / "cache", calibration_turns=())
    assert first != second
    assert (first / "embeddings.npy").stat().st_ino == (second / "embeddings.npy").stat().st_ino  # one file
    shared = Classifier(OnnxBackend(second), other.tokenizer, other.config)
    for reference, candidate in zip(_logits(other), _logits(shared), strict=True):
        np.testing.assert_allclose(candidate, reference, atol=1e-4)


def test_int8_export_stays_close_to_pytorch(tiny_model_dir, torch_classifier, calibration_turns):
    fast = Classifier.from_pretrained(tiny_model_dir, backend="onnx")
    assert fast.backend_name == "onnx"
    for reference, candidate in zip(_logits(torch_classifier), _logits(fast), strict=True):
        np.testing.assert_allclose(candidate, reference, atol=0.05)
    full = export_onnx(torch_classifier, recipe=OnnxRecipe.named("int8-full"), calibration_turns=calibration_turns)
    meta = json.loads((full / "onnx.json").read_text())
    assert meta["quantized_nodes"] == 2 * 4 and meta["recheck"] is None
    assert not (full / "model.fp32.onnx").exists()


def test_close_calls_are_rechecked_in_fp32(tiny_model_dir, torch_classifier):
    fast = Classifier.from_pretrained(tiny_model_dir, backend="onnx")
    fast.backend.margins = {"emotion_margin": 0.0, "escalation_margin": 0.0}  # nothing is close: int8 only
    _logits(fast)
    assert fast.backend.rechecked == 0 and fast.backend.turns == len(ITEMS)
    fast.backend.margins = {"emotion_margin": 1e9, "escalation_margin": 1e9}  # everything is close: all fp32
    for reference, candidate in zip(_logits(torch_classifier), _logits(fast), strict=True):
        np.testing.assert_allclose(candidate, reference, atol=1e-4)
    assert fast.backend.rechecked == len(ITEMS)


def test_the_int8_graph_reads_each_row_alone_so_a_turns_logits_do_not_depend_on_its_batch(tiny_model_dir):
    fast = Classifier.from_pretrained(tiny_model_dir, backend="onnx")
    assert fast.backend.per_row  # the default recipe's graph has int8 nodes
    turn = fast.encode(TurnInput("你好 请问"))
    long = fast.encode(TurnInput("опять не работает совсем!!!", (("agent", "здравствуйте, чем могу помочь"),)))
    assert len(long.input_ids) > len(turn.input_ids)  # beside it, the turn is padded
    alone = fast.backend(*fast.pad([turn]))
    beside = fast.backend(*fast.pad([turn, long]))
    for own, shared in zip(alone, beside, strict=True):
        np.testing.assert_array_equal(shared[:1], own)  # exactly: the same int8 computation
    # Fed as one batch, the int8 graph's per-tensor activation scales mix the rows (and the padding).
    fast.backend.per_row = False
    batched = fast.backend(*fast.pad([turn, long]))
    assert any(not np.array_equal(shared[:1], own) for own, shared in zip(alone, batched, strict=True))


def test_every_onnx_session_runs_on_one_shared_thread_pool(tiny_model_dir, caplog):
    fast = Classifier.from_pretrained(tiny_model_dir, backend="onnx", threads=1)
    threads = shared_pool_threads()  # fixed by the first session of this process, whichever it was
    assert fast.backend.session.get_session_options().use_per_session_threads is False
    assert fast.backend.fp32_session.get_session_options().use_per_session_threads is False
    with caplog.at_level("WARNING", logger="tonewatch.model.backends"):
        assert shared_pool_threads(threads + 1) == threads
    assert "thread pool was created with" in caplog.text
    _logits(fast)  # both graphs still run


def test_an_up_to_date_export_is_reused_and_force_rebuilds(
    tiny_model_dir, torch_classifier, calibration_turns, tmp_path
):
    assert existing_export(tiny_model_dir, tmp_path / "onnx") is None
    first = export_onnx(torch_classifier, tmp_path / "onnx", calibration_turns=calibration_turns)
    assert existing_export(tiny_model_dir, tmp_path / "onnx") == first
    assert existing_export(tiny_model_dir, tmp_path / "onnx", recipe=OnnxRecipe.named("fp32")) is None
    stamp = (first / "model.onnx").stat().st_mtime_ns
    assert export_onnx(torch_classifier, tmp_path / "onnx", calibration_turns=()) == first  # reused: no turns needed
    assert (first / "model.onnx").stat().st_mtime_ns == stamp
    export_onnx(torch_classifier, tmp_path / "onnx", force=True, calibration_turns=calibration_turns)
    assert (first / "model.onnx").stat().st_mtime_ns != stamp


def test_changed_weights_or_recipe_make_another_key(tiny_model_dir, tmp_path):
    copy = tmp_path / "model"
    shutil.copytree(tiny_model_dir, copy)
    assert export_key(copy) == export_key(tiny_model_dir)
    assert export_key(copy, OnnxRecipe.named("fp32")) != export_key(copy)
    config = json.loads((copy / "config.json").read_text())
    config["calibration"]["escalation_threshold"] = 0.123
    (copy / "config.json").write_text(json.dumps(config))
    assert export_key(copy) != export_key(tiny_model_dir)


def test_an_export_beside_the_model_is_found_and_a_stale_one_ignored(tiny_model_dir, calibration_turns, tmp_path):
    copy = tmp_path / "model"
    shutil.copytree(tiny_model_dir, copy)
    export_onnx(Classifier.from_pretrained(copy, backend="torch"), copy / "onnx", calibration_turns=calibration_turns)
    assert find_onnx(copy, tmp_path / "empty-cache") == copy / "onnx"
    (copy / "model.safetensors").write_bytes((copy / "model.safetensors").read_bytes() + b" ")
    assert find_onnx(copy, tmp_path / "empty-cache") is None


def test_backend_choice(tiny_model_dir, monkeypatch):
    assert Classifier.from_pretrained(tiny_model_dir).backend_name == "onnx"  # auto, onnxruntime installed
    monkeypatch.setenv("TONEWATCH_BACKEND", "torch")
    assert Classifier.from_pretrained(tiny_model_dir).backend_name == "torch"
    assert Classifier.from_pretrained(tiny_model_dir, backend="onnx").backend_name == "onnx"
    with pytest.raises(ValueError, match="backend"):
        Classifier.from_pretrained(tiny_model_dir, backend="tensorflow")
    monkeypatch.delenv("TONEWATCH_BACKEND")
    monkeypatch.setattr(export, "onnx_available", lambda: False)
    assert Classifier.from_pretrained(tiny_model_dir).backend_name == "torch"


def test_auto_falls_back_to_pytorch_when_the_export_fails(tiny_model_dir, tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("exporter exploded")

    monkeypatch.setattr(export, "export_onnx", broken)
    assert Classifier.from_pretrained(tiny_model_dir, cache_dir=tmp_path).backend_name == "torch"
    with pytest.raises(RuntimeError, match="exploded"):
        Classifier.from_pretrained(tiny_model_dir, cache_dir=tmp_path, backend="onnx")


def test_onnx_classifier_has_no_network(tiny_model_dir):
    with pytest.raises(AttributeError, match="backend='torch'"):
        _ = Classifier.from_pretrained(tiny_model_dir, backend="onnx").network


def test_unknown_recipes_are_refused():
    with pytest.raises(ValueError, match="recipe"):
        OnnxRecipe.named("int4")
    with pytest.raises(ValueError, match="groups"):
        OnnxRecipe(quantize=("softmax",))
    assert OnnxRecipe(quantize=("ffn_input",)).name == "custom:ffn_input+recheck"


def test_export_command(tiny_model_dir, tmp_path):
    result = CliRunner().invoke(
        app, ["export", "--model", str(tiny_model_dir), "-o", str(tmp_path / "out"), "--recipe", "fp32"]
    )
    assert result.exit_code == 0, result.output
    assert "0 int8 MatMuls" in result.output
    assert (tmp_path / "out" / "model.onnx").is_file()
    result = CliRunner().invoke(app, ["export", "--model", str(tiny_model_dir), "--recipe", "int3"])
    assert result.exit_code != 0 and "recipe" in result.output


def test_calibrated_margins_rank_by_the_int8_logits_and_centre_escalation_on_the_threshold():
    calibration = Calibration(
        emotion_temperature=2.0, escalation_temperature=1.0, escalation_threshold=0.5,
        escalation_thresholds={"zh": 0.2}, emotion_bias=[0.0, 0.0, 0.0, 1.0],
    )  # fmt: skip
    emotion = np.array([[4.0, 2.0, 0.0, 0.0]], dtype=np.float32)
    top, second, escalation = calibrated_margins(emotion, np.array([0.0], dtype=np.float32), ["zh"], calibration)
    assert (top[0], second[0]) == (2.0, 1.0)  # 4/2 and the biased abusive 0/2 + 1
    assert escalation[0] == pytest.approx(-np.log(0.2 / 0.8))
    ranked = calibrated_margins(emotion, np.zeros(1), [None], calibration, pair_from=np.array([[0, 9, 5, 0.0]]))
    assert (ranked[0][0], ranked[1][0]) == (1.0, 0.0)  # frustrated, then angry, as the int8 logits rank them
    assert ranked[2][0] == pytest.approx(0.0)


def test_margins_are_measured_on_training_conversations_only():
    # The model layer reads the data layer's shipped in-domain training files without importing the data layer.
    assert CALIBRATION_CONVERSATIONS == PACKAGE_DATA / "callcenter_train"
    turns = package_calibration_turns(limit=50)
    assert len(turns) == 50 and all(turn.text for turn in turns)
    dev_file = PACKAGE_DATA / "callcenter_dev" / "dialogues.jsonl"
    dev = {turn for conversation in read_conversations(dev_file) for turn in conversation_turn_inputs(conversation)}
    # Stock replies ("嗯", "спасибо") occur in both sets; a turn with the same context does not.
    assert dev and not dev.intersection(turns)


def test_margins_are_measured_on_a_fixed_list_of_files_so_new_training_files_change_nothing(tmp_path, monkeypatch):
    from tonewatch.model import classifier as classifier_module

    before = package_calibration_turns(limit=100)
    copy = tmp_path / "callcenter_train"
    copy.mkdir()
    for name in CALIBRATION_FILES:
        (copy / name).write_bytes((CALIBRATION_CONVERSATIONS / name).read_bytes())
    (copy / "ru-new-round.jsonl").write_text(
        '{"id": "x", "lang": "ru", "turns": [{"speaker": "customer", "text": "Новый файл"}]}\n', encoding="utf-8"
    )  # sorts between the fixed files: a glob would move every n-th turn
    monkeypatch.setattr(classifier_module, "CALIBRATION_CONVERSATIONS", copy)
    assert package_calibration_turns(limit=100) == before


def test_export_needs_a_pytorch_classifier_and_calibration_turns_for_a_recheck(
    tiny_model_dir, torch_classifier, tmp_path
):
    onnx = Classifier.from_pretrained(tiny_model_dir, backend="onnx")
    with pytest.raises(ValueError, match="PyTorch classifier"):
        export_onnx(onnx, tmp_path / "a", calibration_turns=ITEMS[1:2])
    with pytest.raises(ValueError, match="calibration turns"):
        export_onnx(torch_classifier, tmp_path / "b", calibration_turns=[])
    assert not (tmp_path / "b").exists()


def test_the_loaders_first_use_export_measures_on_the_package_calibration_turns(tiny_model_dir, tmp_path, monkeypatch):
    passed = []
    real_export = export.export_onnx

    def recording(classifier, *args, calibration_turns, **kwargs):
        passed.append(list(calibration_turns))
        return real_export(classifier, *args, calibration_turns=calibration_turns, **kwargs)

    monkeypatch.setattr(export, "export_onnx", recording)
    fast = Classifier.from_pretrained(tiny_model_dir, backend="onnx", cache_dir=tmp_path)
    assert passed == [package_calibration_turns()] and len(passed[0]) == 800
    assert fast.backend.meta["recheck"]["measured_on"].startswith(f"{export.PROBE_TURNS} calibration turns")


def test_auto_keeps_the_fastest_graph_that_keeps_the_labels():
    measured = {"emotion_agreement": 0.998, "escalation_agreement": 1.0}
    chosen, record = export._choose(0.004, 0.010, measured, recheck_share=0.1)
    assert chosen == "int8-full" and record["ms_per_turn"] == {"int8": 5.0, "fp32": 10.0, "int8-full": 4.0}
    losing = {"emotion_agreement": 0.99, "escalation_agreement": 1.0}  # int8 alone changes 1 % of labels
    assert export._choose(0.004, 0.010, losing, recheck_share=0.1)[0] == "int8"
    assert export._choose(0.009, 0.010, losing, recheck_share=0.2)[0] == "fp32"  # int8 kernels no faster here


def test_an_auto_export_records_its_choice_and_runs_what_it_chose(tiny_model_dir, torch_classifier, tmp_path):
    auto = OnnxRecipe.named("auto")
    target = export_onnx(torch_classifier, tmp_path / "onnx", calibration_turns=package_calibration_turns(40),
                         recipe=auto)  # fmt: skip
    meta = json.loads((target / "onnx.json").read_text())
    chosen = meta["recipe"]["chosen"]
    assert meta["recipe"]["name"] == "auto" and chosen in ("int8-full", "int8", "fp32")
    assert set(meta["recipe"]["ms_per_turn"]) >= {"int8", "fp32"}
    assert (target / "model.fp32.onnx").exists() == (chosen == "int8") == bool(meta["recheck"])
    assert (meta["quantized_nodes"] > 0) == (chosen != "fp32")
    fast = Classifier(OnnxBackend(target), torch_classifier.tokenizer, torch_classifier.config)
    for reference, candidate in zip(_logits(torch_classifier), _logits(fast), strict=True):
        np.testing.assert_allclose(candidate, reference, atol=0.05)


def test_smoothing_moves_ranges_into_the_weights_without_changing_the_function(torch_classifier, tmp_path):
    export_onnx(torch_classifier, tmp_path / "fp32", recipe=OnnxRecipe.named("fp32"), calibration_turns=())
    source = tmp_path / "fp32" / "model.onnx"
    graph = onnx.load(str(source)).graph
    extra = export._with_probe_outputs(source, tmp_path / "probe.onnx", export.QUANTIZABLE_GROUPS)
    assert extra  # every quantised node's input
    widths = {name: None for name in extra}
    for node in graph.node:  # the ranges must have the inputs' widths
        if node.input and node.input[0] in widths:
            weight = next(t for t in graph.initializer if t.name == node.input[1])
            widths[node.input[0]] = weight.dims[0]
    ranges = {name: np.random.default_rng(1).uniform(0.1, 20, widths[name]).astype(np.float32) for name in extra}
    smoothed = export._smooth(source, tmp_path / "smoothed.onnx", ranges, 0.85, export.QUANTIZABLE_GROUPS)
    assert smoothed == len([n for n in graph.node if n.op_type == "Attention"]) * 4
    plain = OnnxBackend.open_session(source)
    moved = OnnxBackend.open_session(tmp_path / "smoothed.onnx")
    rng = np.random.default_rng(2)
    feed = {"inputs_embeds": rng.normal(size=(2, 7, widths[extra[0]])).astype(np.float32),
            "attention_mask": np.ones((2, 7), np.int64), "token_type_ids": np.zeros((2, 7), np.int64)}  # fmt: skip
    for before, after in zip(plain.run(None, feed), moved.run(None, feed), strict=True):
        np.testing.assert_allclose(after, before, atol=1e-4)


def test_cpu_features_are_read_from_cpuinfo():
    text = "processor\t: 0\nmodel name\t: Example CPU @ 2.80GHz\nflags\t\t: fpu sse2 avx2 avx512f avx512_vnni\n"
    model, flags = parse_cpuinfo(text)
    assert model == "Example CPU @ 2.80GHz" and {"avx2", "avx512_vnni"} <= flags
    from tonewatch.model.cpu import CpuInfo

    vnni = CpuInfo("x", "x86_64", 2, ("avx2", "avx512f", "avx512_vnni"))
    avx2 = CpuInfo("x", "x86_64", 2, ("avx2",))
    assert vnni.vnni and not avx2.vnni
    assert OnnxRecipe.named("int8").weight_bits(vnni) == 8 and OnnxRecipe.named("int8").weight_bits(avx2) == 7
    assert OnnxRecipe(reduce_range=True).weight_bits(vnni) == 7


def test_the_recipe_comes_from_the_argument_then_the_environment(monkeypatch):
    monkeypatch.setenv("TONEWATCH_RECIPE", "fp32")
    assert export.pick_recipe(None).name == "fp32" and export.pick_recipe("int8-full").name == "int8-full"
    monkeypatch.delenv("TONEWATCH_RECIPE")
    assert export.pick_recipe(None).name == "auto"
    monkeypatch.setenv("TONEWATCH_RECIPE", "int2")
    with pytest.raises(ValueError, match="recipe"):
        export.pick_recipe(None)


def test_an_auto_export_in_the_cache_is_found_and_not_pruned_as_stale(tiny_model_dir, torch_classifier, tmp_path):
    from tonewatch.model.cache import cache_entries

    auto = OnnxRecipe.named("auto")
    built = export_onnx(
        torch_classifier, recipe=auto, cache_dir=tmp_path, calibration_turns=package_calibration_turns(40)
    )
    assert built.is_dir() and find_onnx(tiny_model_dir, tmp_path, auto) == built
    (entry,) = [entry for entry in cache_entries(tmp_path) if entry.kind == "onnx"]
    assert entry.path == built and not entry.stale and entry.recipe == "auto"


def test_the_expected_agreement_counts_every_pair_of_distance_and_error():
    distances = np.array([0.05, 1.0, 2.0, 3.0])
    errors = np.array([0.01, 0.02, 0.1, 0.5])
    # 0.05 is exceeded by 2 of 4 errors (half of them on its boundary's side), the rest by none: 1 - 0.5 * 2/16
    assert export._expected_agreement(distances, errors) == pytest.approx(1 - 0.5 * 2 / 16, abs=1e-4)
    assert export._expected_agreement(np.array([]), errors) == 1.0
    measured = {"emotion_agreement": 1.0, "escalation_agreement": 1.0, "expected_emotion_agreement": 0.99}
    assert export._choose(0.004, 0.010, measured, recheck_share=0.1)[0] == "int8"  # no luck of the count
