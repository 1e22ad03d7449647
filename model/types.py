"""What a tonewatch model directory is, without torch: its config, calibration, inputs and outputs.

A model directory holds::

    config.json          label maps, base encoder, input limits, LoRA shape, calibration
    model.safetensors    LoRA factors, token-type embeddings, the two heads
    tokenizer files      the base encoder's tokenizer
    README.md            the model card

:func:`read_model_config` reads ``config.json``;
:func:`tonewatch.model.directory.save_pretrained` writes a directory and
:meth:`tonewatch.model.classifier.Classifier.from_pretrained` loads one. This
module imports neither torch nor transformers, so the conversation tracker and
the server's configuration can use these types cheaply.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tonewatch.conversations import conversation_lang
from tonewatch.labels import (
    EMOTION_LABELS,
    ESCALATION_LABEL,
    ID2LABEL,
    LABEL2ID,
    SIGNAL_SPEAKER,
    SIGNALS,
    SPEAKERS,
    detect_lang,
)
from tonewatch.model.inputs import InputLimits

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
    signal_temperature: float = 1.0
    """One temperature shared by every turn-signal logit (models with a signal head only)."""
    signal_thresholds: dict[str, dict[str, float]] = field(default_factory=dict)
    """Decision threshold on each signal's calibrated probability: ``{signal: {"default": t, "zh": t_zh, ...}}``;
    a language without its own threshold uses ``default``, a signal without any uses 0.5."""

    def threshold(self, lang: str | None) -> float:
        return self.escalation_thresholds.get(lang or "", self.escalation_threshold)

    def signal_threshold(self, signal: str, lang: str | None = None) -> float:
        """The threshold of ``signal`` for a turn in ``lang`` (None: the signal's default threshold)."""
        thresholds = self.signal_thresholds.get(signal, {})
        return thresholds.get(lang or "", thresholds.get(SIGNAL_THRESHOLD_DEFAULT, 0.5))


SIGNAL_THRESHOLD_DEFAULT = "default"
"""The key of a signal's threshold for every language without its own (``Calibration.signal_thresholds``)."""
SIGNAL_READERS: tuple[str, ...] = ("head", "char_ngrams")
"""What may read a model's turn signals (``ModelConfig.signal_reader``)."""
EMOTION_READERS: tuple[str, ...] = ("none", "char_ngrams")
"""What may add to the network's emotion logits (``ModelConfig.emotion_reader``)."""


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
    signals: tuple[str, ...] = ()
    """The turn signals (``labels.SIGNALS``, in that order) the signal head predicts, one logit each; empty (and
    absent from ``config.json``) for a model without a signal head."""
    signal_reader: str = "head"
    """What reads the signals: ``head`` (a linear head on the encoder's pooled features, in the network) or
    ``char_ngrams`` (:mod:`tonewatch.model.ngram_signals`, beside the network, which then has no signal head);
    absent from ``config.json`` when ``head``."""
    emotion_reader: str = "none"
    """``char_ngrams``: a linear model over the turn text's character n-grams
    (:data:`tonewatch.model.ngram_signals.EMOTION_NGRAM_FILE`, fitted by ``tonewatch fit-emotion``) whose emotion
    logits, times :attr:`emotion_reader_weight`, are added to the network's before calibration (a product of the
    two experts); ``none`` (absent from ``config.json``): the network alone."""
    emotion_reader_weight: float = 1.0

    def __post_init__(self) -> None:
        if self.architecture != ARCHITECTURE:
            raise ModelDirectoryError(
                f"architecture {self.architecture!r} is not supported: this tonewatch loads {ARCHITECTURE!r} models "
                "only (the 'turns' architecture was removed; git tag archive/turns-and-ensembles still has it)"
            )
        self.signals = tuple(self.signals)
        unknown = [name for name in self.signals if name not in SIGNALS]
        if unknown:
            raise ModelDirectoryError(f"unknown turn signals {unknown}; this tonewatch knows {SIGNALS}")
        if list(self.signals) != [name for name in SIGNALS if name in self.signals]:
            raise ModelDirectoryError(f"signals {self.signals} must be distinct and in the order of {SIGNALS}")
        if self.signal_reader not in SIGNAL_READERS:
            raise ModelDirectoryError(
                f"unknown signal reader {self.signal_reader!r}; this tonewatch knows {SIGNAL_READERS}"
            )
        if self.emotion_reader not in EMOTION_READERS:
            raise ModelDirectoryError(
                f"unknown emotion reader {self.emotion_reader!r}; this tonewatch knows {EMOTION_READERS}"
            )

    @property
    def head_signals(self) -> tuple[str, ...]:
        """The signals the network's own signal head predicts (none when another reader reads them)."""
        return self.signals if self.signal_reader == "head" else ()

    def signal_index(self, speaker: str) -> list[tuple[int, str]]:
        """``(column, signal)`` of the signal head's outputs read from ``speaker``'s turns."""
        return [(column, name) for column, name in enumerate(self.signals) if SIGNAL_SPEAKER[name] == speaker]

    @property
    def lora_scaling(self) -> float:
        return self.lora_alpha / self.lora_r

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["limits"] = asdict(self.limits)
        if data["limits"]["normalize"] == "none":
            del data["limits"]["normalize"]  # older models' config.json stays byte-identical
        data["lora_target_modules"] = list(self.lora_target_modules)
        if data["signal_reader"] == "head":
            del data["signal_reader"]  # models with a signal head or none keep their config.json byte-identical
        if data["emotion_reader"] == "none":
            del data["emotion_reader"], data["emotion_reader_weight"]  # likewise for models without the n-grams
        if self.signals:
            data["signals"] = list(self.signals)
        else:  # a model without a signal head: config.json stays byte-identical to older models'
            del data["signals"]
            for name in ("signal_temperature", "signal_thresholds"):
                del data["calibration"][name]
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
        fields["signals"] = tuple(data.get("signals", ()))
        return cls(**fields)


@dataclass(frozen=True)
class Prediction:
    """The model's output for one customer turn (or text), in the shape ``tonewatch label`` writes."""

    emotion: str
    scores: dict[str, float]
    escalate: bool
    escalate_score: float
    signals: dict[str, float] = field(default_factory=dict)
    """Calibrated probability of each customer-turn signal (``labels.CUSTOMER_SIGNALS``); empty for a model
    without a signal head."""
    windows: int = 1
    """How many overlapping windows the turn was read in: 1 for a turn within the model's token budget
    (``InputLimits.max_turn_tokens``); a longer turn's prediction is its riskiest window's."""

    def to_dict(self) -> dict[str, Any]:
        out = {
            "emotion": self.emotion,
            "scores": {label: round(score, 6) for label, score in self.scores.items()},
            "escalate": self.escalate,
            "escalate_score": round(self.escalate_score, 6),
        }
        if self.signals:
            out["signals"] = {name: round(score, 6) for name, score in self.signals.items()}
        if self.windows > 1:  # absent for a turn read whole in one window: the shape it always had
            out["windows"] = self.windows
        return out


@dataclass(frozen=True)
class TurnInput:
    """A turn to classify: its text, preceding turns ``(speaker, text)`` oldest first, language, and whose turn
    it is (``classify`` reads customer turns; ``Classifier.agent_signals`` reads agent turns).

    Without ``lang`` the turn takes the language its script says, the turn's and its context's together
    (:func:`~tonewatch.labels.detect_lang`), so that it gets that language's thresholds; ``None`` only when
    neither script is in them.
    """

    text: str
    context: tuple[tuple[str, str], ...] = ()
    lang: str | None = None
    speaker: str = "customer"

    def __post_init__(self) -> None:
        if self.speaker not in SPEAKERS:
            raise ValueError(f"unknown speaker {self.speaker!r}; expected one of {SPEAKERS}")
        if self.lang is None:
            object.__setattr__(self, "lang", detect_lang(self.text, *(text for _, text in self.context)))


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


def conversation_turn_inputs(conversation: dict) -> list[TurnInput]:
    """One :class:`TurnInput` per customer turn, each with every earlier turn as context, in the conversation's
    language (:func:`~tonewatch.conversations.conversation_lang`)."""
    lang = conversation_lang(conversation)
    inputs, context = [], []
    for turn in conversation["turns"]:
        text = turn["text"].strip()
        if turn["speaker"] == "customer":
            inputs.append(TurnInput(text, tuple(context), lang))
        context.append((turn["speaker"], text))
    return inputs
