"""The one loader of a tonewatch model directory, and batch classification.

A model directory holds::

    config.json          label maps, base encoder, input limits, LoRA shape, calibration
    model.safetensors    LoRA factors, token-type embeddings, the two heads
    tokenizer files      the base encoder's tokenizer
    README.md            the model card

:meth:`Classifier.from_pretrained` is what training (evaluation), ``tonewatch
label`` and the server all call.
"""

from __future__ import annotations

import json
import logging
import math
import os
import threading
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tonewatch.configfile import ConfigError
from tonewatch.labels import EMOTION_LABELS, ESCALATION_LABEL, ID2LABEL, LABEL2ID
from tonewatch.model.inputs import EncodedInput, InputLimits, encode_turn
from tonewatch.model.modeling import HEAD_PREFIXES, TRAINED_ENCODER_PARAMETERS, TurnClassifierNetwork, merge_lora

logger = logging.getLogger(__name__)

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
MODEL_TYPE = "tonewatch-turn-classifier"
ARCHITECTURE = "joint"
"""The one architecture (turn and context in one token sequence), which ``config.json`` names. The ``turns``
architecture was removed; its last version is the git tag ``archive/turns-and-ensembles``."""
DEFAULT_MODEL_DIR = Path(__file__).resolve().parent / "default"
"""The shipped default model (inside the installed package)."""
BUNDLED_MODELS = {"default": DEFAULT_MODEL_DIR, "fast": DEFAULT_MODEL_DIR.parent / "fast"}
"""Models shipped in the package, by name: ``default`` (6 layers) and ``fast`` (a 3-layer student of it)."""


def resolve_model_dir(model_dir: str | Path | None) -> Path:
    """A model directory from a path, a bundled model's name (``default``, ``fast``), or None (the default).

    A path that exists wins over a bundled name, so a local directory called ``fast`` is still read.
    """
    if model_dir is None:
        return DEFAULT_MODEL_DIR
    path = Path(model_dir)
    if not path.exists() and str(model_dir) in BUNDLED_MODELS:
        return BUNDLED_MODELS[str(model_dir)]
    return path


class ModelDirectoryError(ValueError):
    """A model directory is missing files or label maps, or was made for another label scheme."""


@dataclass
class Calibration:
    """Temperatures (fitted on validation data) and escalation decision thresholds."""

    emotion_temperature: float = 1.0
    escalation_temperature: float = 1.0
    escalation_threshold: float = 0.5
    escalation_thresholds: dict[str, float] = field(default_factory=dict)
    """Per-language thresholds on the calibrated escalation probability; fall back to ``escalation_threshold``."""
    emotion_bias: list[float] = field(default_factory=lambda: [0.0] * len(EMOTION_LABELS))
    """Per-label log-prior shift added to the tempered logits (fitted on validation data; corrects the
    class balance of training toward the in-domain label mix)."""

    def threshold(self, lang: str | None) -> float:
        return self.escalation_thresholds.get(lang or "", self.escalation_threshold)


@dataclass
class ModelConfig:
    """Everything needed to rebuild a trained network around its base encoder."""

    base_model: str
    num_hidden_layers: int
    hidden_size: int
    limits: InputLimits = field(default_factory=InputLimits)
    lora_r: int = 16
    lora_alpha: float = 32.0
    lora_target_modules: tuple[str, ...] = ("query", "key", "value", "dense")
    calibration: Calibration = field(default_factory=Calibration)
    name: str = "tonewatch"
    version: str = "0"
    base_weights_sha256: str | None = None
    architecture: str = ARCHITECTURE
    """Written to ``config.json`` as before; a config without the field is ``joint`` (models v1-v2)."""

    def __post_init__(self) -> None:
        if self.architecture != ARCHITECTURE:
            raise ModelDirectoryError(
                f"architecture {self.architecture!r} is not supported: this tonewatch loads {ARCHITECTURE!r} models "
                "only (the 'turns' architecture was removed; git tag archive/turns-and-ensembles still has it)"
            )

    @property
    def lora_scaling(self) -> float:
        return self.lora_alpha / self.lora_r

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["limits"] = asdict(self.limits)
        data["lora_target_modules"] = list(self.lora_target_modules)
        return {
            "model_type": MODEL_TYPE,
            "id2label": {str(index): label for index, label in ID2LABEL.items()},
            "label2id": dict(LABEL2ID),
            "escalation_label": ESCALATION_LABEL,
            **data,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ModelConfig:
        id2label = data.get("id2label")
        if not id2label or not data.get("label2id"):
            raise ModelDirectoryError("config.json has no id2label/label2id label maps; refusing to load")
        labels = tuple(id2label[str(index)] for index in range(len(id2label)))
        if labels != EMOTION_LABELS:
            raise ModelDirectoryError(f"model labels {labels} differ from this tonewatch's {EMOTION_LABELS}")
        fields = {key: value for key, value in data.items() if key in cls.__dataclass_fields__}
        fields["limits"] = InputLimits(**data.get("limits", {}))
        fields["calibration"] = Calibration(**data.get("calibration", {}))
        fields["lora_target_modules"] = tuple(data.get("lora_target_modules", ()))
        return cls(**fields)


@dataclass(frozen=True)
class Prediction:
    """The model's output for one customer turn (or text), in the shape ``tonewatch label`` writes."""

    emotion: str
    scores: dict[str, float]
    escalate: bool
    escalate_score: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "emotion": self.emotion,
            "scores": {label: round(score, 6) for label, score in self.scores.items()},
            "escalate": self.escalate,
            "escalate_score": round(self.escalate_score, 6),
        }


@dataclass(frozen=True)
class TurnInput:
    """A customer turn to classify: its text, preceding turns ``(speaker, text)`` oldest first, language."""

    text: str
    context: tuple[tuple[str, str], ...] = ()
    lang: str | None = None


def read_model_config(model_dir: str | Path) -> ModelConfig:
    """The :class:`ModelConfig` of ``model_dir``, with clear errors for a directory that is not a model."""
    directory = Path(model_dir)
    config_path = directory / CONFIG_NAME
    if not config_path.is_file():
        raise ModelDirectoryError(f"{directory} is not a tonewatch model directory (no {CONFIG_NAME})")
    try:
        data = json.loads(config_path.read_text())
    except json.JSONDecodeError as error:
        raise ModelDirectoryError(f"{config_path} is not valid JSON: {error}") from None
    if data.get("model_type") != MODEL_TYPE:
        raise ModelDirectoryError(f"{config_path}: model_type {data.get('model_type')!r} is not {MODEL_TYPE!r}")
    return ModelConfig.from_json(data)


def build_network(config: ModelConfig, base_path: str, dropout: float = 0.1) -> TurnClassifierNetwork:
    """The network around the base encoder at ``base_path``, cut to ``config.num_hidden_layers`` layers."""
    from transformers import AutoModel

    encoder = AutoModel.from_pretrained(base_path, add_pooling_layer=False, num_hidden_layers=config.num_hidden_layers)
    return TurnClassifierNetwork(encoder, encoder.config.hidden_size, dropout=dropout)


def _quiet_transformers():
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


BACKENDS = ("auto", "onnx", "torch")
"""``auto``: ONNX Runtime when it is installed (the ONNX model is built on first use and cached), else PyTorch."""
BACKEND_ENV = "TONEWATCH_BACKEND"
"""Environment variable choosing the default backend (``auto`` when unset)."""


class TorchBackend:
    """The merged PyTorch network: ``backend(ids, mask, types)`` gives both logits."""

    name = "torch"
    margins = None

    def __init__(self, network: TurnClassifierNetwork, threads: int | None = None):
        self.network = network.eval()
        if threads:
            torch.set_num_threads(threads)

    @torch.inference_mode()
    def __call__(self, *arrays: np.ndarray, fp32: bool = False):
        tensors = [torch.from_numpy(array) for array in arrays]
        emotion, escalation = self.network(*tensors)
        return emotion.float().numpy(), escalation.float().numpy()


_POOL_LOCK = threading.Lock()
_POOL_THREADS: int | None = None


def shared_pool_threads(threads: int | None = None) -> int:
    """The intra-op threads of the process-wide ONNX Runtime pool that every tonewatch session runs on.

    The int8 graph and its fp32 re-check graph take turns on the same cores. With a pool per session, a
    pool spinning after its run slows the other's, and a pool that does not spin wakes slowly for every
    operator; one shared, spinning pool avoids both (on model v2: single-turn p50 15.5 ms instead of
    17.7, batch 68 turns/s instead of 60). ONNX Runtime fixes the pool's size when the first session is
    created, for the whole process, and then refuses sessions with threads of their own; so the first
    backend's ``threads`` (default: the CPU count, at most 8) applies to every later one; a later call
    that asks for another number is warned, one that asks for none gets the pool as it is.
    """
    global _POOL_THREADS
    with _POOL_LOCK:
        if _POOL_THREADS is None:
            from onnxruntime.capi import _pybind_state

            _POOL_THREADS = threads or min(os.cpu_count() or 1, 8)
            _pybind_state.set_global_thread_pool_sizes(_POOL_THREADS, 1)
        elif threads and threads != _POOL_THREADS:
            logger.warning(
                "ONNX Runtime's thread pool was created with %d threads in this process; %d asked for now",
                _POOL_THREADS,
                threads,
            )
        return _POOL_THREADS


class OnnxBackend:
    """ONNX Runtime sessions over an exported directory (``tonewatch.model.export``).

    With a re-check graph (recipe ``int8``) the classifier re-runs close calls through :meth:`run_fp32`.
    """

    name = "onnx"

    def __init__(self, onnx_dir: Path, threads: int | None = None, meta: dict | None = None):
        """``meta`` stands in for the directory's ``onnx.json`` (the export measures margins before writing it)."""
        from tonewatch.model.export import FP32_NAME, META_NAME, ONNX_NAME

        self.onnx_dir = onnx_dir
        self.meta = meta if meta is not None else json.loads((onnx_dir / META_NAME).read_text())
        self.margins = self.meta.get("recheck")
        self.session = self.open_session(onnx_dir / ONNX_NAME, threads)
        self.fp32_session = self.open_session(onnx_dir / FP32_NAME, threads) if self.margins else None
        self.turns = 0
        self.rechecked = 0

    @staticmethod
    def open_session(path: Path, threads: int | None = None):
        """A session on the process's one shared ONNX Runtime thread pool (see :func:`shared_pool_threads`)."""
        import onnxruntime as ort

        shared_pool_threads(threads)
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.use_per_session_threads = False
        options.log_severity_level = 3
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    @staticmethod
    def _run(session, arrays: Sequence[np.ndarray]):
        """Feed ``arrays`` (input_ids, attention_mask, token_type_ids); both logits."""
        names = ("input_ids", "attention_mask", "token_type_ids")
        emotion, escalation = session.run(None, dict(zip(names, arrays, strict=True)))
        return emotion, escalation

    def __call__(self, *arrays: np.ndarray, fp32: bool = False):
        """The main graph's output, or the fp32 graph's with ``fp32`` (counted as re-checked)."""
        if fp32 and self.fp32_session is not None:
            return self.run_fp32(*arrays)
        self.turns += len(arrays[0])
        return self._run(self.session, arrays)

    def run_fp32(self, *arrays: np.ndarray):
        self.rechecked += len(arrays[0])
        return self._run(self.fp32_session, arrays)


def calibrated_margins(
    emotion_logits: np.ndarray,
    escalation_logits: np.ndarray,
    langs: Sequence[str | None],
    calibration: Calibration,
    pair_from: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(top, second, escalation)``: the two largest calibrated emotion logits (ranked by ``pair_from``'s
    logits when given) and the calibrated escalation logit minus its language's threshold logit."""
    bias = np.asarray(calibration.emotion_bias, dtype=np.float32)
    tempered = emotion_logits / calibration.emotion_temperature + bias
    ranking = tempered if pair_from is None else pair_from / calibration.emotion_temperature + bias
    order = np.argsort(-ranking, axis=1)
    rows = np.arange(len(tempered))
    thresholds = np.clip([calibration.threshold(lang) for lang in langs], 1e-6, 1 - 1e-6)
    escalation = escalation_logits / calibration.escalation_temperature - np.log(thresholds / (1 - thresholds))
    return tempered[rows, order[:, 0]], tempered[rows, order[:, 1]], escalation


def _pick_backend(backend: str | None) -> str:
    chosen = backend or os.environ.get(BACKEND_ENV) or "auto"
    if chosen not in BACKENDS:
        raise ConfigError(f"unknown backend {chosen!r} (from the argument or ${BACKEND_ENV}); choose from {BACKENDS}")
    return chosen


class Classifier:
    """A loaded model: turns in, calibrated predictions out.

    The model runs on one of two backends that make the same decisions: the
    PyTorch network, or its ONNX Runtime export (fused, partly int8; faster on
    CPUs). Tokenisation and calibration are shared.
    """

    def __init__(
        self,
        backend,
        tokenizer,
        config: ModelConfig,
        model_dir: Path | None = None,
    ):
        if isinstance(backend, TurnClassifierNetwork):
            backend = TorchBackend(backend)
        self.backend = backend
        self.tokenizer = tokenizer
        self.config = config
        self.model_dir = model_dir

    @property
    def backend_name(self) -> str:
        return self.backend.name

    @property
    def network(self) -> TurnClassifierNetwork:
        """The PyTorch network (PyTorch backend only)."""
        if not isinstance(self.backend, TorchBackend):
            raise AttributeError("this classifier runs on ONNX Runtime; load it with backend='torch' for the network")
        return self.backend.network

    @classmethod
    def from_pretrained(
        cls,
        model_dir: str | Path | None = None,
        *,
        cache_dir: str | Path | None = None,
        backend: str | None = None,
        threads: int | None = None,
        recipe: str | None = None,
    ) -> Classifier:
        """Load a model directory or a bundled model's name (default: the shipped model), rebuilding its base
        encoder offline if needed.

        ``backend``: ``auto`` (default, or ``$TONEWATCH_BACKEND``) uses ONNX
        Runtime when available, building the ONNX model once into the cache;
        ``onnx`` requires it; ``torch`` forces the PyTorch path. ``threads``
        caps the CPU threads of either runtime. ``recipe`` names the ONNX
        build (``int8``, the default; ``int8-full``; ``fp32``).
        """
        from tonewatch.model import export

        directory = resolve_model_dir(model_dir)
        config = read_model_config(directory)
        chosen = _pick_backend(backend)
        if chosen == "torch" or (chosen == "auto" and not export.onnx_available()):
            return cls._load_torch(directory, config, cache_dir, threads)
        onnx_recipe = export.OnnxRecipe.named(recipe or "int8")
        shared_pool_threads(threads)  # before a first-use export opens sessions of its own
        onnx_dir = export.find_onnx(directory, cache_dir, onnx_recipe)
        if onnx_dir is None:
            logger.warning("building the ONNX Runtime model of %s once (about a minute; cached)", directory)
            torch_classifier = cls._load_torch(directory, config, cache_dir, threads)
            try:
                onnx_dir = export.export_onnx(
                    directory, cache_dir=cache_dir, recipe=onnx_recipe, classifier=torch_classifier
                )
            except Exception as error:  # the PyTorch path still works: say why and fall back (auto only)
                if chosen == "onnx":
                    raise
                logger.warning("could not build the ONNX model (%s); using PyTorch", error)
                return torch_classifier
            del torch_classifier
        from transformers import AutoTokenizer

        _quiet_transformers()
        tokenizer = AutoTokenizer.from_pretrained(str(onnx_dir))
        return cls(OnnxBackend(onnx_dir, threads), tokenizer, config, directory)

    @classmethod
    def _load_torch(
        cls, directory: Path, config: ModelConfig, cache_dir: str | Path | None, threads: int | None
    ) -> Classifier:
        from safetensors.torch import load_file
        from transformers import AutoTokenizer

        from tonewatch.model.encoder import resolve_base_model

        _quiet_transformers()
        weights_path = directory / WEIGHTS_NAME
        if not weights_path.is_file():
            raise ModelDirectoryError(f"{directory} has no {WEIGHTS_NAME}")
        base_path = resolve_base_model(config.base_model, cache_dir)  # verifies the 470 MB base once
        network = build_network(config, base_path, dropout=0.0)
        state = load_file(str(weights_path))
        lora = {key[len("encoder.") :]: value for key, value in state.items() if ".lora_" in key}
        merge_lora(network.encoder, lora, config.lora_scaling)
        rest = {key: value for key, value in state.items() if ".lora_" not in key}
        expected = {key for key in network.state_dict() if key.startswith(HEAD_PREFIXES)}
        missing = expected - rest.keys()
        if missing:
            raise ModelDirectoryError(f"{weights_path} lacks {sorted(missing)}")
        unexpected = rest.keys() - expected - set(TRAINED_ENCODER_PARAMETERS)
        if unexpected:
            raise ModelDirectoryError(f"{weights_path} has unexpected tensors {sorted(unexpected)}")
        network.load_state_dict(rest, strict=False)
        # A shipped model directory may leave the 17 MB tokenizer to the base encoder it names.
        tokenizer_dir = directory if (directory / "tokenizer.json").is_file() else Path(base_path)
        tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir))
        return cls(TorchBackend(network, threads), tokenizer, config, directory)

    def encode(self, item: TurnInput) -> EncodedInput:
        return encode_turn(self.tokenizer, item.text, item.context, self.config.limits)

    def pad(self, encoded: Sequence[EncodedInput]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(input_ids, attention_mask, token_type_ids)`` int64 arrays, padded to the longest item."""
        ids, mask = self.pad_ids([item.input_ids for item in encoded])
        types = np.zeros_like(ids)
        for row, item in enumerate(encoded):
            types[row, : len(item.token_type_ids)] = item.token_type_ids
        return ids, mask, types

    def encode_batch(self, items: Sequence[TurnInput | str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Padded model inputs for ``items``."""
        turns = [item if isinstance(item, TurnInput) else TurnInput(item) for item in items]
        return self.pad([self.encode(turn) for turn in turns])

    def logits(
        self,
        encoded: Sequence[EncodedInput],
        batch_size: int = 64,
        langs: Sequence[str | None] | None = None,
        precision: str = "auto",
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Raw (uncalibrated) emotion logits and escalation logits, batched by length to limit padding.

        On the ONNX backend with a re-check graph (``precision`` ``auto``), the turns whose int8 decision lies
        within the measured int8 error of a boundary (``langs`` pick the escalation thresholds) are re-run in
        fp32; see :meth:`raw_logits` for ``precision``.
        """
        langs = list(langs) if langs is not None else [None] * len(encoded)
        order = sorted(range(len(encoded)), key=lambda index: len(encoded[index].input_ids))
        emotion = np.empty((len(encoded), len(EMOTION_LABELS)), dtype=np.float32)
        escalation = np.empty(len(encoded), dtype=np.float32)
        margins = getattr(self.backend, "margins", None) if precision == "auto" else None
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            items = [encoded[index] for index in chunk]
            # int8 first where there are two graphs; precision "fp32" asks for the fp32 graph only
            chunk_emotion, chunk_escalation = self.backend(*self.pad(items), fp32=precision == "fp32")
            if margins:
                top, second, decision = calibrated_margins(
                    chunk_emotion, chunk_escalation, [langs[index] for index in chunk], self.config.calibration
                )
                close = np.flatnonzero(
                    (top - second < margins["emotion_margin"]) | (np.abs(decision) < margins["escalation_margin"])
                )
                if len(close):
                    recheck = self.backend(*self.pad([items[row] for row in close]), fp32=True)
                    chunk_emotion[close], chunk_escalation[close] = recheck
            emotion[chunk], escalation[chunk] = chunk_emotion, chunk_escalation
        return torch.from_numpy(emotion), torch.from_numpy(escalation)

    def predictions_from_logits(
        self, emotion_logits: torch.Tensor, escalation_logits: torch.Tensor, langs: Sequence[str | None]
    ) -> list[Prediction]:
        calibration = self.config.calibration
        bias = torch.tensor(calibration.emotion_bias, dtype=emotion_logits.dtype)
        probabilities = torch.softmax(emotion_logits / calibration.emotion_temperature + bias, dim=-1)
        escalation = torch.sigmoid(escalation_logits / calibration.escalation_temperature)
        predictions = []
        for row, lang in enumerate(langs):
            scores = {label: float(probabilities[row, index]) for index, label in ID2LABEL.items()}
            score = float(escalation[row])
            if math.isnan(score):
                raise RuntimeError("the model produced NaN scores")
            predictions.append(
                Prediction(
                    emotion=max(scores, key=scores.get),
                    scores=scores,
                    escalate=score >= calibration.threshold(lang),
                    escalate_score=score,
                )
            )
        return predictions

    def raw_logits(
        self, items: Sequence[TurnInput | str], batch_size: int = 64, precision: str = "auto"
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Uncalibrated emotion and escalation logits of ``items``.

        ``precision``: ``auto`` re-checks close int8 calls in fp32 (ONNX
        default recipe); ``fast`` uses the main graph only; ``fp32`` the fp32
        graph only (all three are the same on PyTorch).
        """
        turns = [item if isinstance(item, TurnInput) else TurnInput(item) for item in items]
        langs = [turn.lang for turn in turns]
        return self.logits([self.encode(turn) for turn in turns], batch_size, langs, precision)

    def pad_ids(self, sequences: Sequence[Sequence[int]]) -> tuple[np.ndarray, np.ndarray]:
        """``(input_ids, attention_mask)`` int64 arrays, padded to the longest sequence."""
        width = max(len(sequence) for sequence in sequences)
        ids = np.full((len(sequences), width), self.tokenizer.pad_token_id, dtype=np.int64)
        mask = np.zeros((len(sequences), width), dtype=np.int64)
        for row, sequence in enumerate(sequences):
            ids[row, : len(sequence)] = sequence
            mask[row, : len(sequence)] = 1
        return ids, mask

    def classify(self, items: Sequence[TurnInput | str], batch_size: int = 64) -> list[Prediction]:
        """Predictions for ``items`` (turns with context, or bare strings), in order."""
        turns = [item if isinstance(item, TurnInput) else TurnInput(item) for item in items]
        if not turns:
            return []
        langs = [turn.lang for turn in turns]
        emotion, escalation = self.raw_logits(turns, batch_size)
        return self.predictions_from_logits(emotion, escalation, langs)

    def classify_conversation(self, conversation: dict, batch_size: int = 64) -> list[Prediction]:
        """Predictions for every customer turn of a conversation in the project's format, in turn order."""
        turns = conversation_turn_inputs(conversation)
        return self.classify(turns, batch_size) if turns else []


def conversation_turn_inputs(conversation: dict) -> list[TurnInput]:
    """One :class:`TurnInput` per customer turn, each with every earlier turn as context."""
    lang = conversation.get("lang")
    inputs, context = [], []
    for turn in conversation["turns"]:
        text = turn["text"].strip()
        if turn["speaker"] == "customer":
            inputs.append(TurnInput(text, tuple(context), lang))
        context.append((turn["speaker"], text))
    return inputs
