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
from tonewatch.model.embeddings import EMBEDDINGS_NAME, save_table
from tonewatch.model.encoder import default_cache_dir, sha256_file, staged_directory
from tonewatch.model.types import TurnInput

logger = logging.getLogger(__name__)

EXPORT_FORMAT = 3
"""Bumped when the exported graph's inputs, outputs or the export steps change (3: ``inputs_embeds`` in, the
word embeddings in ``embeddings.npy``)."""

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


@dataclass(frozen=True)
class OnnxRecipe:
    """How the ONNX model is built: which MatMul groups become int8, and whether close calls are re-checked."""

    quantize: tuple[str, ...] = QUANTIZABLE_GROUPS
    per_channel: bool = True
    reduce_range: bool = True
    """7-bit weights: avoids the int16 saturation of AVX2's u8×s8 multiply (no VNNI)."""
    recheck: bool = True
    """Keep the fp32 graph and re-run the turns whose int8 decision is within the measured error of a boundary."""
    recheck_quantile: float = 0.99
    """Which quantile of the int8 error on calibration text becomes the re-check margin."""

    def __post_init__(self) -> None:
        unknown = set(self.quantize) - set(QUANTIZABLE_GROUPS)
        if unknown:
            raise ValueError(f"unknown quantisation groups {sorted(unknown)}; choose from {QUANTIZABLE_GROUPS}")
        if not 0.5 <= self.recheck_quantile <= 1.0:
            raise ValueError(f"recheck_quantile must be in [0.5, 1], got {self.recheck_quantile}")

    @classmethod
    def named(cls, name: str) -> OnnxRecipe:
        """``int8`` (default: int8 + fp32 re-check of close calls), ``int8-full`` (int8 only) or ``fp32``."""
        if name not in RECIPES:
            raise ConfigError(f"unknown ONNX recipe {name!r}; choose from {sorted(RECIPES)}")
        return RECIPES[name]

    @property
    def name(self) -> str:
        for name, recipe in RECIPES.items():
            if recipe == self:
                return name
        return "custom:" + "+".join(self.quantize) + ("+recheck" if self.recheck else "")


DEFAULT_RECIPE = OnnxRecipe()
RECIPES = {
    "int8": DEFAULT_RECIPE,
    "int8-full": OnnxRecipe(recheck=False),
    "fp32": OnnxRecipe(quantize=(), recheck=False),
}


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
    from onnxruntime.transformers import optimizer

    model = optimizer.optimize_model(
        str(source), model_type="bert", num_heads=num_heads, hidden_size=hidden_size, opt_level=0, use_gpu=False
    )
    fused = {name: count for name, count in model.get_fused_operator_statistics().items() if count}
    model.save_model_to_file(str(target))
    return fused


def _quantize(source: Path, target: Path, recipe: OnnxRecipe) -> int:
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
            reduce_range=recipe.reduce_range,
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
        )
    finally:
        root.setLevel(level)
        root.removeHandler(guard)
    return len(nodes)


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

    ``classifier`` is a :class:`~tonewatch.model.classifier.Classifier` loaded
    from a model directory with ``backend="torch"``. ``calibration_turns`` are
    the turns the re-check margins are measured on (recipe ``int8``; unused by
    recipes without a re-check). ``output_dir`` defaults to the cache. An
    up-to-date directory is reused unless ``force``.
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
    if recipe.recheck and recipe.quantize and not calibration_turns:
        raise ValueError(f"recipe {recipe.name} measures its re-check margins on calibration turns; none were given")
    started = time.perf_counter()
    with staged_directory(target) as work:
        word_embeddings = classifier.network.encoder.get_input_embeddings().weight.detach().numpy()
        encoding = save_table(word_embeddings, work / EMBEDDINGS_NAME)
        embeddings_digest = sha256_file(work / EMBEDDINGS_NAME)
        _link_identical_table(work / EMBEDDINGS_NAME, embeddings_digest, target.parent)
        _export_fp32(classifier, work / "exported.onnx")
        encoder_config = classifier.network.encoder.config
        fused = _optimize(
            work / "exported.onnx", work / "fused.onnx", encoder_config.num_attention_heads, encoder_config.hidden_size
        )
        quantized = _quantize(work / "fused.onnx", work / ONNX_NAME, recipe)
        (work / "exported.onnx").unlink()
        recheck = None
        if recipe.recheck and quantized:
            (work / "fused.onnx").rename(work / FP32_NAME)
            recheck = measure_recheck_margins(classifier, work, recipe.recheck_quantile, calibration_turns)
        else:
            (work / "fused.onnx").unlink()
        classifier.tokenizer.save_pretrained(str(work))
        meta = {
            "format": EXPORT_FORMAT,
            "key": key,
            "model_dir": str(model_dir.resolve()),
            "model_name": classifier.config.name,
            "model_version": classifier.config.version,
            "recipe": {"name": recipe.name, **asdict(recipe)},
            "fused_operators": fused,
            "quantized_nodes": quantized,
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


def measure_recheck_margins(classifier, directory: Path, quantile: float, turns: Sequence[TurnInput]) -> dict:
    """The int8 graph's error against the fp32 graph on ``turns``, as re-check margins.

    Emotion: the error of the int8 top-two margin of calibrated logits;
    escalation: the error of the calibrated escalation logit; signals (a signal
    model): the error of every calibrated signal logit, all signals pooled. Each
    margin is the ``quantile`` of its errors.
    """
    turns = list(turns)
    langs = [turn.lang for turn in turns]
    speakers = [turn.speaker for turn in turns]
    with_signals = bool(classifier.config.head_signals)
    # Both graphs of the work directory. The int8 graph is measured in batches (of 64, sorted by length) and on
    # each turn's first window, as exports of this format always were, so that an export stays the same: the
    # classifier now runs the int8 graph one row at a time, whose error is smaller (on the default model's
    # calibration turns, 99th percentiles 0.81 / 0.82 against 0.95 / 0.87), so these margins re-check more
    # turns than needed, never fewer.
    backend = OnnxBackend(directory, meta={"recheck": {"measuring": True}}, per_row=False)
    # The classifier's own class on the new backend: same tokenisation and batching, and no import of the loader.
    measuring = type(classifier)(backend, classifier.tokenizer, classifier.config, classifier.model_dir)
    encoded = [measuring.encode(turn) for turn in turns]
    outputs = {
        name: tuple(
            array.numpy()
            for array in measuring.logits(
                encoded, langs=langs, precision=precision, speakers=speakers, with_signals=with_signals
            )
        )
        for name, precision in ((ONNX_NAME, "fast"), (FP32_NAME, "fp32"))
    }
    calibration = classifier.config.calibration
    (q_top, q_second, q_escalation), (r_top, r_second, r_escalation) = (
        calibrated_margins(*outputs[name][:2], langs, calibration, pair_from=outputs[ONNX_NAME][0])
        for name in (ONNX_NAME, FP32_NAME)
    )
    emotion_error = np.abs((q_top - q_second) - (r_top - r_second))
    escalation_error = np.abs(q_escalation - r_escalation)
    margins = {
        "emotion_margin": round(float(np.quantile(emotion_error, quantile)), 4),
        "escalation_margin": round(float(np.quantile(escalation_error, quantile)), 4),
        "quantile": quantile,
        "measured_on": f"{len(turns)} calibration turns (sha256 {_turns_digest(turns)})",
        "max_emotion_error": round(float(emotion_error.max()), 4),
        "max_escalation_error": round(float(escalation_error.max()), 4),
    }
    if with_signals:  # thresholds move the decision, not the error: the tempered logits' difference is the error
        signal_error = np.abs(outputs[ONNX_NAME][2] - outputs[FP32_NAME][2]).ravel() / calibration.signal_temperature
        margins["signal_margin"] = round(float(np.quantile(signal_error, quantile)), 4)
        margins["max_signal_error"] = round(float(signal_error.max()), 4)
    return margins
