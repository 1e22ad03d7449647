"""The ONNX Runtime fast path: export a model directory to ONNX, fuse, quantise, cache.

:func:`export_onnx` turns a model directory's PyTorch classifier into an ONNX directory::

    model.onnx        the merged network (LoRA folded in), every head, raw logits; int8 MatMuls
    model.fp32.onnx   the same graph in fp32, for re-checking close calls (recipe ``int8``)
    embeddings.npy    the word-embedding matrix, which both graphs share (``tonewatch.model.embeddings``);
                      in the cache, a hard link to an identical table of another export where there is one
    tokenizer.json    (and its config) so loading needs neither torch weights nor the base encoder
    onnx.json         what it was built from (a key over the model's files), the recipe, the re-check margins

The graphs start after the word-embedding lookup: they take the looked-up rows
(``inputs_embeds`` [batch, sequence, hidden], float32) with the attention mask
and token types, and add the position and token-type embeddings themselves.
The 250k-row matrix, 89 % of the encoder's weights, is kept once beside them in
its exact 4-bit encoding (54 MB instead of 384 MB in each graph), memory-mapped
by :class:`~tonewatch.model.backends.OnnxBackend`, which looks the rows up per
batch; and the graphs, 43 MB in fp32, export, fuse and load in seconds.

Steps: the PyTorch network (eager attention, so ONNX Runtime recognises the
pattern) is exported with ``torch.onnx``; ONNX Runtime's transformer
optimiser fuses attention, bias + GELU and skip + LayerNorm (without the
lookup in the graph there is no EmbedLayerNormalization: the embedding sum's
LayerNorm stays a LayerNormalization); then the MatMuls of the recipe's groups
are quantised to int8 (dynamic per-batch activation scales, per-channel 7-bit
weights).

Why a re-check: on this project's 2-core AVX2 machine (no VNNI), quantising
every MatMul changed about 3 % of callcenter_dev's emotion labels, and no
subset of layers was both label-preserving and much faster
(``docs/design.md``). So the default recipe runs the int8 graph first and
re-runs in fp32 only the turns whose int8 decision is close to a boundary:
emotion labels whose top-two calibrated logits are nearer than
``emotion_margin``, escalation scores nearer their threshold than
``escalation_margin`` (in logits); in a model with turn signals, also the turns whose signal (of their speaker) is
nearer its threshold than ``signal_margin``. The margins are the 99th percentile of the
int8 graph's error on the calibration turns the caller passes, measured at
export, so a label can only change where int8 erred more than on 99 % of that
text. The loader and ``tonewatch export`` pass customer turns of the shipped
in-domain training conversations
(:func:`tonewatch.model.classifier.package_calibration_turns`). Calibration
(temperatures, bias, thresholds) stays in Python, shared by both backends.

The directory is built on first use into the cache (``<cache>/onnx/<key>``) or
by ``tonewatch export``; :func:`find_onnx` also accepts an ``onnx/`` directory
next to the model whose key matches. A build into the cache removes the
model's exports that will never be used again (an earlier format, earlier
weights). This module reads no data of its own and does not import the
classifier (the loader imports it).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from tonewatch.configfile import ConfigError
from tonewatch.model.backends import FP32_NAME, META_NAME, ONNX_NAME, OnnxBackend, calibrated_margins
from tonewatch.model.cpu import CpuInfo, cpu_info
from tonewatch.model.embeddings import EMBEDDINGS_NAME, save_table
from tonewatch.model.encoder import default_cache_dir, sha256_file, staged_directory
from tonewatch.model.types import TurnInput

logger = logging.getLogger(__name__)

EXPORT_FORMAT = 4
"""Bumped when the exported graph's inputs, outputs or the export steps change (3: ``inputs_embeds`` in, the
word embeddings in ``embeddings.npy``; 4: smoothed int8 with 8-bit weights on VNNI CPUs, skip + LayerNorm unfused,
errors measured one turn at a time, recipe ``auto``)."""

INPUT_NAMES = ("inputs_embeds", "attention_mask", "token_type_ids")
OUTPUT_NAMES = ("emotion_logits", "escalation_logit")
SIGNAL_OUTPUT = "signal_logits"
"""The third output, only in the graph of a model with a signal head (``ModelConfig.signals``)."""


def output_names(signals: Sequence[str]) -> tuple[str, ...]:
    """The graph's outputs for a model predicting ``signals``: older models' two, then the signal logits."""
    return (*OUTPUT_NAMES, SIGNAL_OUTPUT) if signals else OUTPUT_NAMES


QUANTIZABLE_GROUPS = ("attention", "attention_output", "ffn_input", "ffn_output")
"""MatMul groups of each encoder layer: fused QKV attention, attention output
projection, feed-forward up projection (384→1536), down projection (1536→384)."""


SMOOTHING_ALPHA = 0.85
"""How much of each quantised MatMul input's per-channel range moves into its weights (SmoothQuant's alpha)."""
PROBE_TURNS = 200
"""How many calibration turns an export runs through its graphs (one at a time): the smoothing statistics, the int8
graph's error against fp32 (re-check margins, label agreement) and, for ``auto``, the choice of graph."""
TIMED_TURNS = 24
"""How many of them time each graph for ``auto`` (after warming up)."""
LABEL_AGREEMENT = 0.995
"""The share of the probe turns' emotion labels and escalation decisions the int8 graph alone must keep (against
the fp32 graph) for ``auto`` to run it without a re-check."""


@dataclass(frozen=True)
class OnnxRecipe:
    """How the ONNX model is built: which MatMul groups become int8, how, and whether close calls are re-checked.

    ``choose`` (recipe ``auto``) builds the int8 and fp32 graphs, measures them on the probe turns on this CPU, and
    keeps the fastest that keeps the labels: the int8 graph alone when it keeps :data:`LABEL_AGREEMENT` of them,
    else the int8 graph with the fp32 re-check, unless the fp32 graph alone is faster than either.
    """

    quantize: tuple[str, ...] = QUANTIZABLE_GROUPS
    per_channel: bool = True
    reduce_range: bool | None = None
    """7-bit weights: avoids the int16 saturation of AVX2's u8×s8 multiply. ``None``: 7-bit unless the CPU has VNNI or
    AMX (:mod:`tonewatch.model.cpu`), whose products sum into 32 bits."""
    smoothing: float | None = SMOOTHING_ALPHA
    """SmoothQuant's alpha: each quantised input channel is divided by ``max|x|^a / max|w|^(1-a)`` (its range measured
    on the probe turns) and the weight's row multiplied by it, so one outlying channel no longer sets the whole tensor's
    int8 scale. ``None``: no smoothing."""
    recheck: bool = True
    """Keep the fp32 graph and re-run the turns whose int8 decision is within the measured error of a boundary."""
    recheck_quantile: float = 0.9
    """Which quantile of the int8 error on the probe turns becomes the re-check margin. On the default model and
    callcenter_dev, 0.99 re-checked 17 % of turns and kept every label; 0.9 about 5 %, keeping 99.75 % (a turn's
    decision must both sit that close to a boundary and meet an error larger than 9 in 10)."""
    choose: bool = False
    """``auto``: measure and keep the fastest graph that keeps the labels (see the class)."""

    def __post_init__(self) -> None:
        unknown = set(self.quantize) - set(QUANTIZABLE_GROUPS)
        if unknown:
            raise ValueError(f"unknown quantisation groups {sorted(unknown)}; choose from {QUANTIZABLE_GROUPS}")
        if not 0.5 <= self.recheck_quantile <= 1.0:
            raise ValueError(f"recheck_quantile must be in [0.5, 1], got {self.recheck_quantile}")
        if self.smoothing is not None and not 0.0 <= self.smoothing <= 1.0:
            raise ValueError(f"smoothing must be in [0, 1] or None, got {self.smoothing}")

    @classmethod
    def named(cls, name: str) -> OnnxRecipe:
        """``auto`` (default: the fastest that keeps the labels on this CPU), ``int8`` (int8 + fp32 re-check of
        close calls), ``int8-full`` (int8 only) or ``fp32``."""
        if name not in RECIPES:
            raise ConfigError(f"unknown ONNX recipe {name!r}; choose from {sorted(RECIPES)}")
        return RECIPES[name]

    @property
    def name(self) -> str:
        for name, recipe in RECIPES.items():
            if recipe == self:
                return name
        return "custom:" + "+".join(self.quantize) + ("+recheck" if self.recheck else "")

    def weight_bits(self, cpu: CpuInfo | None = None) -> int:
        """7 or 8: the bits of the int8 weights on ``cpu`` (default: this machine's)."""
        reduce = self.reduce_range if self.reduce_range is not None else not (cpu or cpu_info()).vnni
        return 7 if reduce else 8


RECIPE_ENV = "TONEWATCH_RECIPE"
"""Environment variable naming the ONNX recipe the loader builds and uses when none is passed (``auto`` when unset)."""

DEFAULT_RECIPE = OnnxRecipe(choose=True)
RECIPES = {
    "auto": DEFAULT_RECIPE,
    "int8": OnnxRecipe(),
    "int8-full": OnnxRecipe(recheck=False),
    "fp32": OnnxRecipe(quantize=(), smoothing=None, recheck=False),
}


def pick_recipe(name: str | None) -> OnnxRecipe:
    """The recipe ``name``, else ``$TONEWATCH_RECIPE``'s, else ``auto``; an unknown name is a :class:`ConfigError`."""
    return OnnxRecipe.named(name or os.environ.get(RECIPE_ENV) or "auto")


class OnnxUnavailable(RuntimeError):
    """The ONNX path cannot be built or run here (a missing package, an unsupported model)."""


def onnx_available() -> bool:
    """Whether onnxruntime and onnx (needed to export) are importable."""
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def _file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def export_key(model_dir: str | Path, recipe: OnnxRecipe = DEFAULT_RECIPE) -> str:
    """A key over what the ONNX model is built from: the model's config and weights, the recipe, the format."""
    directory = Path(model_dir)
    digest = hashlib.sha256()
    digest.update(f"format={EXPORT_FORMAT}\n".encode())
    digest.update(json.dumps(asdict(recipe), sort_keys=True).encode())
    if recipe.quantize:  # the weights' bits and, for ``auto``, the graph kept depend on the CPU
        digest.update(f"\ncpu={cpu_info().signature}".encode())
    for name in ("config.json", "model.safetensors"):
        path = directory / name
        digest.update(f"\n{name}={_file_digest(path) if path.is_file() else '-'}".encode())
    return digest.hexdigest()[:20]


def cached_onnx_dir(
    model_dir: str | Path, cache_dir: str | Path | None = None, recipe: OnnxRecipe = DEFAULT_RECIPE
) -> Path:
    """Where the cache keeps the ONNX directory of ``model_dir`` built with ``recipe``."""
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    return root / "onnx" / export_key(model_dir, recipe)


def _is_complete(directory: Path, key: str) -> bool:
    meta = directory / META_NAME
    files = (META_NAME, ONNX_NAME, EMBEDDINGS_NAME, "tokenizer.json")
    if not all((directory / name).is_file() for name in files):
        return False
    try:
        data = json.loads(meta.read_text())
    except json.JSONDecodeError:
        return False
    return data.get("key") == key and (not data.get("recheck") or (directory / FP32_NAME).is_file())


def existing_export(
    model_dir: str | Path,
    output_dir: str | Path | None = None,
    *,
    recipe: OnnxRecipe = DEFAULT_RECIPE,
    cache_dir: str | Path | None = None,
) -> Path | None:
    """``output_dir`` (default: the cache's place for ``model_dir``) if it holds an up-to-date export, else None."""
    target = Path(output_dir) if output_dir is not None else cached_onnx_dir(model_dir, cache_dir, recipe)
    return target if _is_complete(target, export_key(model_dir, recipe)) else None


def find_onnx(
    model_dir: str | Path, cache_dir: str | Path | None = None, recipe: OnnxRecipe = DEFAULT_RECIPE
) -> Path | None:
    """An up-to-date ONNX directory for ``model_dir``: ``<model_dir>/onnx`` if its key matches, else the cache's."""
    key = export_key(model_dir, recipe)
    beside = Path(model_dir) / "onnx"
    if _is_complete(beside, key):
        return beside
    cached = cached_onnx_dir(model_dir, cache_dir, recipe)
    return cached if _is_complete(cached, key) else None


def _node_groups(graph) -> dict[str, list[str]]:
    groups: dict[str, list[str]] = {group: [] for group in QUANTIZABLE_GROUPS}
    for node in graph.node:
        if node.op_type == "Attention":
            groups["attention"].append(node.name)
        elif node.op_type == "MatMul" and "/encoder/layer." in node.name:
            if "/attention/output/" in node.name:
                groups["attention_output"].append(node.name)
            elif "/intermediate/" in node.name:
                groups["ffn_input"].append(node.name)
            elif "/output/" in node.name:
                groups["ffn_output"].append(node.name)
    return groups


def _export_fp32(classifier, path: Path) -> None:
    import warnings

    import torch

    network = classifier.network
    encoder = network.encoder

    class LookedUp(torch.nn.Module):
        """The network fed looked-up word embeddings: the lookup (and its matrix) stays out of the graph."""

        def __init__(self):
            super().__init__()
            self.network = network

        def forward(self, inputs_embeds, attention_mask, token_type_ids):
            return self.network(None, attention_mask, token_type_ids, inputs_embeds)

    encoder.set_attn_implementation("eager")  # the pattern ONNX Runtime's optimiser fuses into one Attention op
    outputs = output_names(classifier.config.head_signals)
    try:  # eval mode: forward(inputs_embeds, attention_mask, token_type_ids) -> every head's logits
        ids, mask, types = (
            torch.from_numpy(array) for array in classifier.encode_batch(["您好 我想查一下", "Здравствуйте"])
        )
        inputs = (encoder.get_input_embeddings()(ids).detach(), mask, types)
        dynamic = {name: {0: "batch", 1: "sequence"} for name in INPUT_NAMES}
        dynamic |= {name: {0: "batch"} for name in outputs}
        with torch.inference_mode(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer notes about shapes that are dynamic axes anyway
            torch.onnx.export(
                LookedUp().eval(),
                inputs,
                str(path),
                dynamo=False,
                input_names=list(INPUT_NAMES),
                output_names=list(outputs),
                dynamic_axes=dynamic,
                opset_version=17,
                do_constant_folding=True,
            )
    finally:
        encoder.set_attn_implementation("sdpa")


def _optimize(source: Path, target: Path, num_heads: int, hidden_size: int) -> dict[str, int]:
    """Fuse attention and bias + GELU; leave skip + LayerNorm as Add and LayerNormalization, which ONNX Runtime 1.32
    runs faster on one-turn inputs than its fused SkipLayerNormalization (``DISABLED_OPTIMIZERS`` in
    :mod:`tonewatch.model.backends`)."""
    from onnxruntime.transformers import optimizer
    from onnxruntime.transformers.fusion_options import FusionOptions

    options = FusionOptions("bert")
    options.enable_skip_layer_norm = False
    model = optimizer.optimize_model(
        str(source),
        model_type="bert",
        num_heads=num_heads,
        hidden_size=hidden_size,
        opt_level=0,
        use_gpu=False,
        optimization_options=options,
    )
    fused = {name: count for name, count in model.get_fused_operator_statistics().items() if count}
    model.save_model_to_file(str(target))
    return fused


def _quantized_inputs(graph, groups: Sequence[str]) -> list[tuple[object, str]]:
    """``(node, group)`` of every node of ``groups`` (:func:`_node_groups`), in graph order."""
    names = _node_groups(graph)
    group_of = {name: group for group in groups for name in names[group]}
    return [(node, group_of[node.name]) for node in graph.node if node.name in group_of]


def _with_probe_outputs(source: Path, target: Path, groups: Sequence[str]) -> list[str]:
    """Write ``source`` with the inputs of the quantised nodes as extra outputs (their ranges are the smoothing's
    statistics); returns those tensors' names."""
    import onnx
    from onnx import helper

    model = onnx.load(str(source))
    inputs = list(dict.fromkeys(node.input[0] for node, _ in _quantized_inputs(model.graph, groups)))
    for name in inputs:
        model.graph.output.append(helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    onnx.save(model, str(target))
    return inputs


def _smooth(source: Path, target: Path, ranges: dict[str, np.ndarray], alpha: float, groups: Sequence[str]) -> int:
    """SmoothQuant on the fp32 graph: for each quantised MatMul (and fused attention) input ``x`` with weight ``W``,
    ``s = max|x|^alpha / max|W row|^(1 - alpha)`` per input channel; ``W`` rows are multiplied by ``s`` and ``x`` is
    divided by it: folded into the value projection for the attention output (its input is the attention's
    value mix, channel for channel), by a ``Mul`` elsewhere (a LayerNorm's output also feeds the residual, a GELU is
    not linear). The graph computes the same function; its int8 version sees flatter activations. Returns the
    number of nodes smoothed."""
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(source))
    graph = model.graph
    initializers = {tensor.name: tensor for tensor in graph.initializer}
    producers = {output: node for node in graph.node for output in node.output}

    def read(name: str) -> np.ndarray:
        return numpy_helper.to_array(initializers[name]).astype(np.float32)

    def write(name: str, array: np.ndarray) -> None:
        initializers[name].CopyFrom(numpy_helper.from_array(array.astype(np.float32), name))

    scales_before: dict[str, object] = {}
    smoothed = 0
    for node, group in _quantized_inputs(graph, groups):
        source_name, weight_name = node.input[0], node.input[1]
        if source_name not in ranges or weight_name not in initializers:
            continue
        weight = read(weight_name)
        activation = np.maximum(ranges[source_name], 1e-5)
        weight_range = np.maximum(np.abs(weight).max(axis=1), 1e-5)
        scale = np.clip(activation**alpha / weight_range ** (1 - alpha), 1e-2, 1e2).astype(np.float32)
        producer = producers.get(source_name)
        if group == "attention_output" and producer is not None and producer.op_type == "Attention":
            qkv, bias = read(producer.input[1]), read(producer.input[2])
            hidden = qkv.shape[1] // 3  # q, k, v side by side; the output mixes v's columns, head by head
            qkv[:, 2 * hidden :] /= scale
            bias[2 * hidden :] /= scale
            write(producer.input[1], qkv)
            write(producer.input[2], bias)
        else:
            inverse = f"{node.name}/smoothing_scale"
            graph.initializer.append(numpy_helper.from_array((1.0 / scale).astype(np.float32), inverse))
            scales_before[node.name] = helper.make_node(
                "Mul", [source_name, inverse], [f"{node.name}/smoothed_input"], name=f"{node.name}/smoothing"
            )
            node.input[0] = f"{node.name}/smoothed_input"
        write(weight_name, weight * scale[:, None])
        smoothed += 1
    nodes = []
    for node in graph.node:
        if node.name in scales_before:
            nodes.append(scales_before[node.name])
        nodes.append(node)
    del graph.node[:]
    graph.node.extend(nodes)
    onnx.save(model, str(target))
    return smoothed


def _quantize(source: Path, target: Path, recipe: OnnxRecipe, weight_bits: int) -> int:
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    groups = _node_groups(onnx.load(str(source), load_external_data=False).graph)
    nodes = [name for group in recipe.quantize for name in groups[group]]
    if not nodes:
        shutil.copyfile(source, target)
        return 0
    # The quantiser logs through the root logger (an INFO line per tensor, a WARNING about pre-processing,
    # and logging.warning() would install a handler on an unconfigured root): keep that quiet.
    root, guard = logging.getLogger(), logging.NullHandler()
    level = root.level
    root.addHandler(guard)
    root.setLevel(logging.ERROR)
    try:
        quantize_dynamic(
            str(source),
            str(target),
            nodes_to_quantize=nodes,
            weight_type=QuantType.QInt8,
            per_channel=recipe.per_channel,
            reduce_range=weight_bits < 8,
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
        )
    finally:
        root.setLevel(level)
        root.removeHandler(guard)
    return len(nodes)


class _Probe:
    """The probe turns, encoded once, fed one at a time (first window, no padding) to the graphs of an export."""

    def __init__(self, classifier, embeddings_path: Path, turns: Sequence[TurnInput]):
        from tonewatch.model.embeddings import EmbeddingTable

        self.turns = list(turns)
        self.langs = [turn.lang for turn in self.turns]
        self.speakers = [turn.speaker for turn in self.turns]
        self.calibration = classifier.config.calibration
        self.signal_temperature = classifier.config.calibration.signal_temperature
        table = EmbeddingTable(embeddings_path)
        self.feeds = []
        for turn in self.turns:
            ids, mask, types = classifier.pad([classifier.encode(turn)])
            self.feeds.append({"inputs_embeds": table.lookup(ids), "attention_mask": mask, "token_type_ids": types})

    def run(self, path: Path, extra: Sequence[str] = ()) -> tuple[list[np.ndarray], dict[str, np.ndarray]]:
        """Every turn through the graph at ``path``: its stacked outputs, and the per-channel ranges (max |x|) of the
        ``extra`` outputs over all turns."""
        session = OnnxBackend.open_session(path)
        names = [output.name for output in session.get_outputs()]
        main = [name for name in names if name not in extra]
        rows: list[list[np.ndarray]] = []
        ranges: dict[str, np.ndarray] = {}
        for feed in self.feeds:
            values = dict(zip(names, session.run(None, feed), strict=True))
            rows.append([values[name] for name in main])
            for name in extra:
                value = np.abs(values[name]).reshape(-1, values[name].shape[-1]).max(axis=0)
                ranges[name] = np.maximum(ranges[name], value) if name in ranges else value
        return [np.concatenate(column) for column in zip(*rows, strict=True)], ranges

    def seconds_per_turn(self, paths: Sequence[Path], turns: int = TIMED_TURNS, rounds: int = 3) -> list[float]:
        """The median time of one turn through each graph of ``paths`` (the first ``turns`` probe turns, after a
        warm-up). The graphs take turns, turn by turn and in alternating order, so that other work on the machine
        slows each of them alike and the comparison holds on a busy machine too."""
        sessions = [OnnxBackend.open_session(path) for path in paths]
        feeds = self.feeds[:turns]
        for session in sessions:
            for feed in feeds[:4]:
                session.run(None, feed)
        times: list[list[float]] = [[] for _ in sessions]
        for round_ in range(rounds):
            for index, feed in enumerate(feeds):
                order = list(range(len(sessions)))
                if (index + round_) % 2:
                    order.reverse()
                for which in order:
                    started = time.perf_counter()
                    sessions[which].run(None, feed)
                    times[which].append(time.perf_counter() - started)
        return [float(np.median(graph_times)) for graph_times in times]

    def compare(self, quantized: list[np.ndarray], reference: list[np.ndarray], quantile: float) -> dict:
        """The int8 graph's decisions and errors against the fp32 graph's: label agreement, re-check margins."""
        (q_top, q_second, q_escalation), (r_top, r_second, r_escalation) = (
            calibrated_margins(*outputs[:2], self.langs, self.calibration, pair_from=quantized[0])
            for outputs in (quantized, reference)
        )
        customer = np.array([speaker == "customer" for speaker in self.speakers])
        bias = np.asarray(self.calibration.emotion_bias, dtype=np.float32)
        labels = [(outputs[0] / self.calibration.emotion_temperature + bias).argmax(axis=1) for outputs in
                  (quantized, reference)]  # fmt: skip
        emotion_error = np.abs((q_top - q_second) - (r_top - r_second))
        escalation_error = np.abs(q_escalation - r_escalation)
        own_top, own_second, _ = calibrated_margins(*reference[:2], self.langs, self.calibration)
        result = {
            "emotion_agreement": round(float(np.mean((labels[0] == labels[1])[customer])), 4),
            "escalation_agreement": round(float(np.mean(((q_escalation > 0) == (r_escalation > 0))[customer])), 4),
            "expected_emotion_agreement": _expected_agreement((own_top - own_second)[customer], emotion_error),
            "expected_escalation_agreement": _expected_agreement(np.abs(r_escalation[customer]), escalation_error),
            "emotion_margin": round(float(np.quantile(emotion_error, quantile)), 4),
            "escalation_margin": round(float(np.quantile(escalation_error, quantile)), 4),
            "quantile": quantile,
            "measured_on": f"{len(self.turns)} calibration turns, one at a time (sha256 {_turns_digest(self.turns)})",
            "max_emotion_error": round(float(emotion_error.max()), 4),
            "max_escalation_error": round(float(escalation_error.max()), 4),
        }
        if len(quantized) > 2:  # thresholds move the decision, not the error: the tempered logits' difference is
            signal_error = np.abs(quantized[2] - reference[2]).ravel() / self.signal_temperature
            result["signal_margin"] = round(float(np.quantile(signal_error, quantile)), 4)
            result["max_signal_error"] = round(float(signal_error.max()), 4)
        return result


def _expected_agreement(margins: np.ndarray, errors: np.ndarray) -> float:
    """The share of decisions the int8 graph is expected to keep, from every pair of a decision's distance to its
    boundary (fp32) and an int8 error of the probe turns: a decision changes when an error larger than its
    distance falls on the side of the boundary (half of them). Counting changed labels among 200 turns tells
    99.4 % from 100 % by luck (one label or none); this uses all 200 × 200 pairs."""
    if not len(margins) or not len(errors):
        return 1.0
    ordered = np.sort(errors)
    larger = len(ordered) - np.searchsorted(ordered, margins, side="right")  # errors larger than each distance
    return round(float(1.0 - 0.5 * np.mean(larger / len(ordered))), 4)


def _choose(int8_seconds: float, fp32_seconds: float, measured: dict, recheck_share: float) -> tuple[str, dict]:
    """Recipe ``auto``'s choice: the fastest of int8 alone (if it keeps the labels), int8 with the re-check, fp32.

    int8 alone must keep :data:`LABEL_AGREEMENT` of the probe turns' labels both as counted and as expected from
    the error distribution (:func:`_expected_agreement`), emotion and escalation."""
    keeps = (
        min(
            measured["emotion_agreement"],
            measured["escalation_agreement"],
            measured.get("expected_emotion_agreement", 1.0),
            measured.get("expected_escalation_agreement", 1.0),
        )
        >= LABEL_AGREEMENT
    )
    costs = {"int8": int8_seconds + recheck_share * fp32_seconds, "fp32": fp32_seconds}
    if keeps:
        costs["int8-full"] = int8_seconds
    chosen = min(costs, key=costs.get)
    return chosen, {
        "chosen": chosen,
        "int8_keeps_labels": keeps,
        "label_agreement_needed": LABEL_AGREEMENT,
        "ms_per_turn": {name: round(1000 * seconds, 3) for name, seconds in costs.items()},
        "recheck_share": round(recheck_share, 4),
        "timed_on": f"{TIMED_TURNS} calibration turns, one at a time, 3 rounds interleaved, median",
    }


def export_onnx(
    classifier,
    output_dir: str | Path | None = None,
    *,
    calibration_turns: Sequence[TurnInput],
    recipe: OnnxRecipe = DEFAULT_RECIPE,
    cache_dir: str | Path | None = None,
    force: bool = False,
) -> Path:
    """Build the ONNX directory of ``classifier``'s model directory; returns it.

    ``classifier`` is a :class:`~tonewatch.model.classifier.Classifier` loaded from a model directory with
    ``backend="torch"``. ``calibration_turns`` are the turns an int8 recipe measures on (the first
    :data:`PROBE_TURNS`, evenly spread): activation ranges for the smoothing, the int8 error (re-check margins,
    label agreement) and, for ``auto``, the time of each graph. ``output_dir`` defaults to the cache. An up-to-date
    directory is reused unless ``force``.
    """
    if not onnx_available():
        raise OnnxUnavailable("the ONNX path needs the onnx and onnxruntime packages (pip install onnx onnxruntime)")
    if classifier.backend_name != "torch" or classifier.model_dir is None:
        raise ValueError("export_onnx needs a PyTorch classifier loaded from a model directory (backend='torch')")
    model_dir = Path(classifier.model_dir)
    key = export_key(model_dir, recipe)
    target = Path(output_dir) if output_dir is not None else cached_onnx_dir(model_dir, cache_dir, recipe)
    if not force and _is_complete(target, key):
        return target
    if recipe.quantize and not calibration_turns:
        raise ValueError(f"recipe {recipe.name} measures the int8 graph on calibration turns; none were given")
    started = time.perf_counter()
    cpu = cpu_info()
    turns = list(calibration_turns)
    turns = turns[:: max(1, len(turns) // PROBE_TURNS)][:PROBE_TURNS]
    with staged_directory(target) as work:
        word_embeddings = classifier.network.encoder.get_input_embeddings().weight.detach().numpy()
        encoding = save_table(word_embeddings, work / EMBEDDINGS_NAME)
        embeddings_digest = sha256_file(work / EMBEDDINGS_NAME)
        _link_identical_table(work / EMBEDDINGS_NAME, embeddings_digest, target.parent)
        _export_fp32(classifier, work / "exported.onnx")
        encoder_config = classifier.network.encoder.config
        fused = _optimize(
            work / "exported.onnx", work / FP32_NAME, encoder_config.num_attention_heads, encoder_config.hidden_size
        )
        (work / "exported.onnx").unlink()
        quantized, measured, choice, bits = 0, None, None, None
        if recipe.quantize:
            probe = _Probe(classifier, work / EMBEDDINGS_NAME, turns)
            extra = _with_probe_outputs(work / FP32_NAME, work / "probe.onnx", recipe.quantize)
            reference, ranges = probe.run(work / "probe.onnx", extra)
            (work / "probe.onnx").unlink()
            smoothed = work / FP32_NAME
            if recipe.smoothing is not None:
                smoothed = work / "smoothed.onnx"
                _smooth(work / FP32_NAME, smoothed, ranges, recipe.smoothing, recipe.quantize)
            bits = recipe.weight_bits(cpu)
            quantized = _quantize(smoothed, work / ONNX_NAME, recipe, bits)
            if smoothed != work / FP32_NAME:
                smoothed.unlink()
            int8_outputs = probe.run(work / ONNX_NAME)[0]
            measured = probe.compare(int8_outputs, reference, recipe.recheck_quantile)
            if recipe.choose:
                customer = np.array([speaker == "customer" for speaker in probe.speakers])
                share = float(np.mean(_close(probe, int8_outputs, measured)[customer]))
                int8_seconds, fp32_seconds = probe.seconds_per_turn([work / ONNX_NAME, work / FP32_NAME])
                chosen, choice = _choose(int8_seconds, fp32_seconds, measured, share)
                if chosen == "fp32":
                    (work / FP32_NAME).replace(work / ONNX_NAME)
                    quantized = 0
        if not quantized and (work / FP32_NAME).exists():
            (work / FP32_NAME).replace(work / ONNX_NAME)
        recheck = None
        keep_fp32 = quantized and (choice["chosen"] == "int8" if choice else recipe.recheck)
        if keep_fp32:
            recheck = {name: value for name, value in measured.items() if "agreement" not in name}
        elif (work / FP32_NAME).exists():
            (work / FP32_NAME).unlink()
        classifier.tokenizer.save_pretrained(str(work))
        meta = {
            "format": EXPORT_FORMAT,
            "key": key,
            "model_dir": str(model_dir.resolve()),
            "model_name": classifier.config.name,
            "model_version": classifier.config.version,
            "recipe": {"name": recipe.name, **asdict(recipe), **(choice or {})},
            "cpu": cpu.as_dict(),
            "weight_bits": bits,
            "fused_operators": fused,
            "quantized_nodes": quantized,
            "int8_against_fp32": measured,
            "recheck": recheck,
            "embeddings": {
                "file": EMBEDDINGS_NAME,
                "encoding": encoding,
                "shape": list(word_embeddings.shape),
                "bytes": (work / EMBEDDINGS_NAME).stat().st_size,
                "sha256": embeddings_digest,
            },
            "onnx_bytes": (work / ONNX_NAME).stat().st_size,
            "export_seconds": round(time.perf_counter() - started, 1),
        }
        (work / META_NAME).write_text(json.dumps(meta, indent=2) + "\n")
    logger.info("built the ONNX model of %s in %.0f s: %s", model_dir, meta["export_seconds"], target)
    if output_dir is None:
        from tonewatch.model.cache import prune_stale_exports

        for entry in prune_stale_exports(model_dir, target.parent.parent):
            logger.info("removed %s, an export of %s that is never used again", entry.path, model_dir)
    return target


def _close(probe: _Probe, quantized: list[np.ndarray], margins: dict) -> np.ndarray:
    """Which probe turns the re-check would re-run (their int8 decision within the margins of a boundary)."""
    top, second, escalation = calibrated_margins(*quantized[:2], probe.langs, probe.calibration)
    return (top - second < margins["emotion_margin"]) | (np.abs(escalation) < margins["escalation_margin"])


def _link_identical_table(path: Path, digest: str, exports: Path) -> None:
    """Make ``path`` a hard link to an identical table of another export in ``exports``, if there is one.

    Models on the same base encoder have the same word embeddings (LoRA leaves them as they are): one file on
    disk, and one copy in memory for the processes that map it, whichever model they run. Where links are not
    possible (another file system), ``path`` stays a copy.
    """
    for meta_path in sorted(exports.glob(f"*/{META_NAME}")):
        try:
            table = json.loads(meta_path.read_text()).get("embeddings") or {}
        except (OSError, json.JSONDecodeError):
            continue
        other = meta_path.parent / table.get("file", EMBEDDINGS_NAME)
        if table.get("sha256") != digest or not other.is_file() or other.stat().st_size != path.stat().st_size:
            continue
        linked = path.with_name(path.name + ".link")
        try:
            os.link(other, linked)
        except OSError:
            return
        os.replace(linked, path)
        return


def _turns_digest(turns: Sequence[TurnInput]) -> str:
    """A short digest of turns (text, context, language), to tell which calibration turns an export measured on."""
    digest = hashlib.sha256()
    for turn in turns:
        digest.update(json.dumps([turn.text, turn.context, turn.lang], ensure_ascii=False).encode())
    return digest.hexdigest()[:16]
