"""The one loader of a tonewatch model directory, and batch classification.

:meth:`Classifier.from_pretrained` is what training (evaluation), ``tonewatch
label``, the conversation tracker's callers and the server all call. The
directory's format is in :mod:`tonewatch.model.types`; its one writer is
:func:`tonewatch.model.directory.save_pretrained`.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from tonewatch.conversations import read_conversations
from tonewatch.labels import EMOTION_LABELS, ID2LABEL, SPEAKERS
from tonewatch.model import export
from tonewatch.model.backends import (
    OnnxBackend,
    TorchBackend,
    calibrated_margins,
    pick_backend,
    shared_pool_threads,
    signal_decision_margins,
)
from tonewatch.model.calibrate import emotion_probabilities, escalation_probabilities, signal_probabilities
from tonewatch.model.cpu import pick_device
from tonewatch.model.encoder import resolve_base_model
from tonewatch.model.inputs import (
    EncodedInput,
    count_windows,
    encode_turn,
    encode_turn_windows,
    encode_turns_windows,
)
from tonewatch.model.ngram_signals import EMOTION_NGRAM_FILE, READER_NAME, NgramSignalReader
from tonewatch.model.tokenizer import ExportTokenizer
from tonewatch.model.types import (
    WEIGHTS_NAME,
    ModelConfig,
    ModelDirectoryError,
    Prediction,
    TurnInput,
    conversation_turn_inputs,
    read_model_config,
    resolve_model_dir,
)

if TYPE_CHECKING:
    import torch

    from tonewatch.model.modeling import TurnClassifierNetwork

logger = logging.getLogger(__name__)

PACKAGE_ROOT = Path(__file__).resolve().parent.parent
CALIBRATION_CONVERSATIONS = PACKAGE_ROOT / "data" / "callcenter_train"
"""The shipped in-domain training conversations (package data), whose customer turns the first-use ONNX export
measures its re-check margins on. Read here as files in the conversation format: the model layer does not import
the data layer."""
CALIBRATION_FILES: tuple[str, ...] = (
    "ru-all-boundaries.jsonl", "ru-angry-vs-abusive.jsonl", "ru-calm-vs-frustrated.jsonl",
    "ru-escalation-triggers.jsonl", "ru.jsonl", "zh-all-boundaries.jsonl", "zh-angry-vs-abusive.jsonl",
    "zh-calm-vs-frustrated.jsonl", "zh-escalation-triggers.jsonl", "zh.jsonl",
)  # fmt: skip
"""The files of :data:`CALIBRATION_CONVERSATIONS` read, in this order: fixed, so that training files added later
do not move the turns an export is measured on (and with them the shipped models' ONNX labels)."""
CALIBRATION_TURNS = 800
"""How many of their customer turns are used."""


def package_calibration_turns(limit: int = CALIBRATION_TURNS) -> list[TurnInput]:
    """In-domain customer turns with context (the package's callcenter_train), spread evenly over the conversations.

    What :func:`tonewatch.model.export.export_onnx` measures the int8 error on when the loader, ``tonewatch
    export`` or ``tonewatch evaluate`` build an export; the same turns every time, so the same margins.
    """
    turns = []
    for name in CALIBRATION_FILES:
        for conversation in read_conversations(CALIBRATION_CONVERSATIONS / name):
            turns.extend(conversation_turn_inputs(conversation))
    step = max(1, len(turns) // limit)
    return turns[::step][:limit]


def _quiet_transformers():
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


@dataclass(frozen=True)
class PreparedTurns:
    """Customer turns tokenised for the model (:meth:`Classifier.prepare`): what :meth:`Classifier.classify_prepared`
    runs, so that the next batch can be tokenised while the model runs this one."""

    turns: tuple[TurnInput, ...]
    windows: tuple[tuple[EncodedInput, ...], ...]
    """The model inputs of each turn's windows (one for a turn within ``max_turn_tokens``)."""


class Classifier:
    """A loaded model: turns in, calibrated predictions out.

    The model runs on one of two backends that make the same decisions: the
    PyTorch network, or its ONNX Runtime export (fused, partly int8; faster on
    CPUs). Tokenisation and calibration are shared.

    A turn longer than the model reads at once (``limits.max_turn_tokens``) is read
    in full, in overlapping windows (:func:`tonewatch.model.inputs.encode_turn_windows`),
    each with the turn's context; its prediction is that of its riskiest window (the
    most severe emotion label, then the highest probability of it: a turn is labelled
    by its most severe clear content, ``docs/labels.md``), with the highest escalation
    score and the highest probability of each signal-head signal of any window, and says
    in ``Prediction.windows`` how many windows it was read in. (An n-gram signal reader
    reads the whole text as it is.)
    """

    def __init__(
        self,
        backend,
        tokenizer,
        config: ModelConfig,
        model_dir: Path | None = None,
        signal_reader: NgramSignalReader | None = None,
        emotion_reader: NgramSignalReader | None = None,
    ):
        """``signal_reader``: the n-gram signal reader of a ``char_ngrams`` model (default: read from
        ``model_dir``); ``emotion_reader`` likewise, the emotion n-gram expert of a model whose ``emotion_reader`` is
        ``char_ngrams``."""
        modeling = sys.modules.get("tonewatch.model.modeling")  # a network exists only once it is imported
        if modeling is not None and isinstance(backend, modeling.TurnClassifierNetwork):
            backend = TorchBackend(backend)
        self.backend = backend
        self.tokenizer = tokenizer
        self.config = config
        self.model_dir = model_dir
        if signal_reader is None and config.signal_reader == READER_NAME:
            if model_dir is None:
                raise ModelDirectoryError("a char_ngrams signal model needs its model directory or its reader")
            signal_reader = NgramSignalReader.load(model_dir)
        if signal_reader is not None and signal_reader.num_signals != len(config.signals):
            raise ModelDirectoryError(
                f"the signal reader has {signal_reader.num_signals} signals, config.json names {len(config.signals)}"
            )
        self.signal_reader = signal_reader
        if emotion_reader is None and config.emotion_reader == READER_NAME:
            if model_dir is None:
                raise ModelDirectoryError("a char_ngrams emotion model needs its model directory or its reader")
            emotion_reader = NgramSignalReader.load(model_dir, EMOTION_NGRAM_FILE)
        if emotion_reader is not None and emotion_reader.num_signals != len(EMOTION_LABELS):
            raise ModelDirectoryError(
                f"the emotion reader has {emotion_reader.num_signals} outputs, the model {len(EMOTION_LABELS)} labels"
            )
        self.emotion_reader = emotion_reader

    def emotion_offsets(self, texts: Sequence[str]) -> np.ndarray | None:
        """What the emotion n-gram expert adds to the network's raw emotion logits of turns with ``texts`` (its
        logits times ``emotion_reader_weight``), or None for a model without one."""
        if self.emotion_reader is None:
            return None
        return self.emotion_reader.logits(texts) * np.float32(self.config.emotion_reader_weight)

    @property
    def backend_name(self) -> str:
        return self.backend.name

    @property
    def signal_names(self) -> tuple[str, ...]:
        """The turn signals this model predicts (``labels.SIGNALS`` order); empty for a model without a signal
        head, whose escalation is its learnt score alone."""
        return tuple(getattr(self.config, "signals", ()) or ())

    def agent_signals(self, items: Sequence[TurnInput | str], batch_size: int = 64) -> list[dict[str, float]]:
        """Calibrated probabilities of the agent-turn signals (``labels.AGENT_SIGNALS``) of agent turns, each
        with its preceding turns as context; one empty dict per turn for a model without a signal head.

        Every item is read as an agent turn, whatever its ``speaker`` says (``TurnInput``'s default is the
        customer)."""
        if not self.signal_names:
            return [{} for _ in items]
        turns = [
            dataclasses.replace(item if isinstance(item, TurnInput) else TurnInput(item), speaker="agent")
            for item in items
        ]
        if not turns:
            return []
        if self.signal_reader is not None:  # the n-gram reader alone: an agent turn needs no encoder pass
            signal_logits = self.signal_reader.logits([turn.text for turn in turns])
        else:
            signal_logits = self._turn_arrays(turns, batch_size, "auto", None, True)[0][2]
        return self.signal_probabilities(signal_logits, "agent")

    def signal_probabilities(self, signal_logits, speaker: str) -> list[dict[str, float]]:
        """Calibrated probabilities of ``speaker``'s signals, one dict per row of raw ``signal_logits`` (an array or
        a tensor)."""
        probabilities = signal_probabilities(_numpy(signal_logits), self.config.calibration.signal_temperature)
        columns = self.config.signal_index(speaker)
        if np.isnan(probabilities).any():
            raise RuntimeError("the model produced NaN signal scores")
        return [{name: float(row[column]) for column, name in columns} for row in probabilities]

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
        device: str | None = None,
    ) -> Classifier:
        """Load a model directory or a bundled model's name (default: the shipped model), rebuilding its base
        encoder offline if needed.

        ``backend``: ``auto`` (default, or ``$TONEWATCH_BACKEND``) uses ONNX
        Runtime when available, building the ONNX model once into the cache;
        ``onnx`` requires it; ``torch`` forces the PyTorch path. ``threads``
        caps the CPU threads of either runtime. ``recipe`` names the ONNX
        build (``auto``, the default, or ``$TONEWATCH_RECIPE``: the fastest that keeps the labels on this CPU;
        ``int8``; ``int8-full``; ``fp32``). ``device``: ``auto`` (default, or ``$TONEWATCH_DEVICE``) runs on a CUDA
        GPU when one is usable (ONNX Runtime's CUDA provider with the fp32 graph, whose operators all run there,
        or else PyTorch on the GPU), ``cpu`` never does, ``cuda`` requires one.
        """
        directory = resolve_model_dir(model_dir)
        config = read_model_config(directory)
        chosen = pick_backend(backend)
        placed = pick_device(device, chosen)
        if placed == "cuda-torch":
            return cls._load_torch(directory, config, cache_dir, threads, device="cuda")
        if chosen == "torch" or (chosen == "auto" and not export.onnx_available()):
            return cls._load_torch(directory, config, cache_dir, threads)
        # ONNX Runtime runs the dynamic int8 operators on the CPU only: on a GPU, the fp32 graph.
        onnx_recipe = export.pick_recipe("fp32" if placed == "cuda-onnx" else recipe)
        providers = ["CPUExecutionProvider"]
        if placed == "cuda-onnx":
            providers.insert(0, "CUDAExecutionProvider")
        shared_pool_threads(threads)  # before a first-use export opens sessions of its own
        onnx_dir = export.find_onnx(directory, cache_dir, onnx_recipe)
        tokenizer = None
        if onnx_dir is None:
            logger.warning("building the ONNX Runtime model of %s once (tens of seconds; cached)", directory)
            torch_classifier = cls._load_torch(directory, config, cache_dir, threads)
            try:
                onnx_dir = export.export_onnx(
                    torch_classifier,
                    cache_dir=cache_dir,
                    recipe=onnx_recipe,
                    calibration_turns=package_calibration_turns(),
                )
            except Exception as error:  # the PyTorch path still works: say why and fall back (auto only)
                if chosen == "onnx":
                    raise
                logger.warning("could not build the ONNX model (%s); using PyTorch", error)
                return torch_classifier
            tokenizer = torch_classifier.tokenizer  # the one the export saved: not loaded a second time
            del torch_classifier
        if tokenizer is None:
            # the tokenizers library alone: the ONNX path imports neither transformers nor torch
            tokenizer = ExportTokenizer.from_directory(onnx_dir)
        return cls(OnnxBackend(onnx_dir, threads, providers=providers), tokenizer, config, directory)

    @classmethod
    def _load_torch(
        cls,
        directory: Path,
        config: ModelConfig,
        cache_dir: str | Path | None,
        threads: int | None,
        device: str = "cpu",
    ) -> Classifier:
        from safetensors.torch import load_file
        from transformers import AutoTokenizer

        from tonewatch.model.modeling import HEAD_PREFIXES, TRAINED_ENCODER_PARAMETERS, build_network, merge_lora

        _quiet_transformers()
        weights_path = directory / WEIGHTS_NAME
        if not weights_path.is_file():
            raise ModelDirectoryError(f"{directory} has no {WEIGHTS_NAME}")
        base_path = resolve_base_model(config.base_model, cache_dir)  # the default's config and tokenizer
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
        return cls(TorchBackend(network, threads, device), tokenizer, config, directory)

    def encode(self, item: TurnInput) -> EncodedInput:
        """The model input of ``item``; a turn beyond ``max_turn_tokens`` is cut to its first window."""
        return encode_turn(self.tokenizer, item.text, item.context, self.config.limits, item.speaker)

    def encode_windows(self, item: TurnInput) -> list[EncodedInput]:
        """The model inputs of every window ``item`` is read in (one for a turn within ``max_turn_tokens``)."""
        return encode_turn_windows(self.tokenizer, item.text, item.context, self.config.limits, item.speaker)

    def window_count(self, item: TurnInput | str) -> int:
        """How many windows (model rows) ``item`` is read in: what it costs a batch."""
        turn = item if isinstance(item, TurnInput) else TurnInput(item)
        return count_windows(self.tokenizer, turn.text, self.config.limits, turn.speaker)

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
        on_batch: Callable[[int], object] | None = None,
        speakers: Sequence[str] | None = None,
        with_signals: bool = False,
        row_turns: Sequence[int] | None = None,
    ) -> tuple[torch.Tensor, ...]:
        """:meth:`logits_arrays` as torch tensors."""
        import torch

        outputs = self.logits_arrays(encoded, batch_size, langs, precision, on_batch, speakers, with_signals, row_turns)
        return tuple(torch.from_numpy(output) for output in outputs)

    def logits_arrays(
        self,
        encoded: Sequence[EncodedInput],
        batch_size: int = 64,
        langs: Sequence[str | None] | None = None,
        precision: str = "auto",
        on_batch: Callable[[int], object] | None = None,
        speakers: Sequence[str] | None = None,
        with_signals: bool = False,
        row_turns: Sequence[int] | None = None,
        emotion_offsets: np.ndarray | None = None,
    ) -> tuple[np.ndarray, ...]:
        """Raw (uncalibrated) emotion logits and escalation logits, batched by length to limit padding; with
        ``with_signals`` also the signal logits ``[turns, len(signal_names)]`` third (no columns for a model
        without a signal head).

        On the ONNX backend with a re-check graph (``precision`` ``auto``), the turns whose int8 decision lies
        within the measured int8 error of a boundary (``langs`` pick the thresholds) are re-run in fp32: a
        customer turn's emotion, escalation and customer signals, an agent turn's agent signals (``speakers``,
        default all customer, say whose turn each is). See :meth:`raw_logits` for ``precision``. ``on_batch`` is
        called with the number of turns of each batch done (a progress bar's ``update``); batches are the same
        with or without it. ``row_turns``: the rows are windows, row ``i`` of turn ``row_turns[i]``; ``on_batch``
        then counts the turns whose every window is done. ``emotion_offsets`` (``[rows, labels]``) are added to
        the network's emotion logits before anything reads them, the int8 re-check's margins included.
        """
        remaining = Counter(row_turns if row_turns is not None else range(len(encoded)))
        langs = list(langs) if langs is not None else [None] * len(encoded)
        speakers = list(speakers) if speakers is not None else ["customer"] * len(encoded)
        order = sorted(range(len(encoded)), key=lambda index: len(encoded[index].input_ids))
        emotion = np.empty((len(encoded), len(EMOTION_LABELS)), dtype=np.float32)
        escalation = np.empty(len(encoded), dtype=np.float32)
        n_signals = len(self.config.head_signals)  # the network's own signal outputs (none for another reader)
        signals = np.empty((len(encoded), n_signals), dtype=np.float32)
        margins = getattr(self.backend, "margins", None) if precision == "auto" else None
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            items = [encoded[index] for index in chunk]
            # int8 first where there are two graphs; precision "fp32" asks for the fp32 graph only
            outputs = self.backend(*self.pad(items), fp32=precision == "fp32")
            chunk_emotion, chunk_escalation = outputs[0], outputs[1]
            if emotion_offsets is not None:
                chunk_emotion = chunk_emotion + emotion_offsets[chunk]
            chunk_signals = outputs[2] if n_signals else np.zeros((len(chunk), 0), dtype=np.float32)
            if margins:
                chunk_langs = [langs[index] for index in chunk]
                chunk_speakers = [speakers[index] for index in chunk]
                top, second, decision = calibrated_margins(
                    chunk_emotion, chunk_escalation, chunk_langs, self.config.calibration
                )
                customer = np.array([speaker == "customer" for speaker in chunk_speakers])
                close = customer & (
                    (top - second < margins["emotion_margin"]) | (np.abs(decision) < margins["escalation_margin"])
                )
                if n_signals and "signal_margin" in margins:
                    close |= self._close_signals(chunk_signals, chunk_langs, chunk_speakers, margins["signal_margin"])
                close = np.flatnonzero(close)
                if len(close):
                    recheck = self.backend(*self.pad([items[row] for row in close]), fp32=True)
                    chunk_emotion[close], chunk_escalation[close] = recheck[0], recheck[1]
                    if emotion_offsets is not None:
                        chunk_emotion[close] += emotion_offsets[[chunk[row] for row in close]]
                    if n_signals:
                        chunk_signals[close] = recheck[2]
            emotion[chunk], escalation[chunk], signals[chunk] = chunk_emotion, chunk_escalation, chunk_signals
            if on_batch is not None:
                turns_of_chunk = [row_turns[index] for index in chunk] if row_turns is not None else chunk
                remaining.subtract(turns_of_chunk)
                on_batch(sum(remaining[turn] == 0 for turn in set(turns_of_chunk)))
        if with_signals:
            return emotion, escalation, signals
        return emotion, escalation

    def _close_signals(
        self, signal_logits: np.ndarray, langs: Sequence[str | None], speakers: Sequence[str], margin: float
    ) -> np.ndarray:
        """Which rows have a signal of their speaker within ``margin`` (calibrated logits) of its threshold."""
        close = np.zeros(len(langs), dtype=bool)
        for speaker in SPEAKERS:
            rows = np.flatnonzero([turn_speaker == speaker for turn_speaker in speakers])
            columns = self.config.signal_index(speaker)
            if len(rows) and columns:
                decisions = signal_decision_margins(
                    signal_logits[rows], columns, [langs[row] for row in rows], self.config.calibration
                )
                close[rows] = (np.abs(decisions) < margin).any(axis=1)
        return close

    def predictions_from_logits(
        self,
        emotion_logits,
        escalation_logits,
        langs: Sequence[str | None],
        signal_logits=None,
        windows: Sequence[int] | None = None,
    ) -> list[Prediction]:
        """Calibrated predictions of customer turns from raw logits (arrays or tensors); ``signal_logits`` (a signal
        model's) fill their signals, ``windows`` (default: one each) say how many windows each turn was read in."""
        calibration = self.config.calibration
        signals = (
            self.signal_probabilities(signal_logits, "customer")
            if signal_logits is not None and self.signal_names
            else [{} for _ in langs]
        )
        probabilities = emotion_probabilities(
            _numpy(emotion_logits), calibration.emotion_temperature, calibration.emotion_bias
        ).tolist()
        escalation = escalation_probabilities(_numpy(escalation_logits), calibration.escalation_temperature).tolist()
        predictions = []
        for row, lang in enumerate(langs):
            scores = {label: probabilities[row][index] for index, label in ID2LABEL.items()}
            score = escalation[row]
            if math.isnan(score):
                raise RuntimeError("the model produced NaN scores")
            predictions.append(
                Prediction(
                    emotion=max(scores, key=scores.get),
                    scores=scores,
                    escalate=score >= calibration.threshold(lang),
                    escalate_score=score,
                    signals=signals[row],
                    windows=windows[row] if windows is not None else 1,
                )
            )
        return predictions

    def raw_logits(
        self,
        items: Sequence[TurnInput | str],
        batch_size: int = 64,
        precision: str = "auto",
        on_batch: Callable[[int], object] | None = None,
        with_signals: bool = False,
    ) -> tuple[torch.Tensor, ...]:
        """Uncalibrated emotion and escalation logits of ``items`` (and signal logits third, ``with_signals``).

        ``precision``: ``auto`` re-checks close int8 calls in fp32 (ONNX
        default recipe); ``fast`` uses the main graph only; ``fp32`` the fp32
        graph only (all three are the same on PyTorch). ``on_batch``: see :meth:`logits`.
        """
        import torch

        turns = [item if isinstance(item, TurnInput) else TurnInput(item) for item in items]
        outputs = self._turn_arrays(turns, batch_size, precision, on_batch, with_signals)[0]
        return tuple(torch.from_numpy(output) for output in outputs)

    def encode_turns(self, turns: Sequence[TurnInput]) -> list[list[EncodedInput]]:
        """:meth:`encode_windows` of every turn, each distinct text tokenised once in one batch call."""
        return encode_turns_windows(
            self.tokenizer, [(turn.text, turn.context, turn.speaker) for turn in turns], self.config.limits
        )

    def _turn_arrays(
        self,
        turns: Sequence[TurnInput],
        batch_size: int,
        precision: str,
        on_batch: Callable[[int], object] | None,
        with_signals: bool,
        windows: Sequence[Sequence[EncodedInput]] | None = None,
    ) -> tuple[tuple[np.ndarray, ...], list[int]]:
        """:meth:`raw_logits` of ``turns`` as arrays (``windows``: their model inputs, if already encoded), and how
        many windows each was read in."""
        langs = [turn.lang for turn in turns]
        if windows is None:
            windows = self.encode_turns(turns)
        counts = [len(turn_windows) for turn_windows in windows]
        rows = [window for turn_windows in windows for window in turn_windows]
        row_turns = [turn for turn, count in enumerate(counts) for _ in range(count)]
        offsets = self.emotion_offsets([turn.text for turn in turns])  # the expert reads the turn's own text
        outputs = self.logits_arrays(
            rows,
            batch_size,
            [langs[turn] for turn in row_turns],
            precision,
            on_batch,
            [turns[turn].speaker for turn in row_turns],
            with_signals,
            row_turns=row_turns,
            emotion_offsets=offsets[row_turns] if offsets is not None else None,
        )
        if len(rows) > len(turns):
            outputs = self.combine_arrays(outputs, row_turns)
        if with_signals and self.signal_reader is not None:
            # The n-gram reader reads the whole text, however long (it has no token budget).
            outputs = (*outputs[:2], self.signal_reader.logits([turn.text for turn in turns]))
        return outputs, counts

    def combine_windows(self, outputs: Sequence[torch.Tensor], row_turns: Sequence[int]) -> tuple[torch.Tensor, ...]:
        """:meth:`combine_arrays` of tensors."""
        import torch

        return tuple(torch.from_numpy(array) for array in self.combine_arrays(outputs, row_turns))

    def combine_arrays(self, outputs: Sequence[np.ndarray], row_turns: Sequence[int]) -> tuple[np.ndarray, ...]:
        """Per turn, one row of raw logits from the rows of its windows (``row_turns[i]``: the turn of row ``i``;
        the rows of a turn are consecutive): the emotion logits of its riskiest window (most severe calibrated
        label, then the highest probability of that label), the highest escalation logit and the highest logit
        of each signal (calibration is monotone in each, so these are the highest scores)."""
        emotion, escalation, *rest = (_numpy(output) for output in outputs)
        calibration = self.config.calibration
        tempered = emotion / calibration.emotion_temperature + np.asarray(calibration.emotion_bias, np.float32)
        probabilities = np.exp(tempered - tempered.max(axis=1, keepdims=True))
        probabilities /= probabilities.sum(axis=1, keepdims=True)
        labels = probabilities.argmax(axis=1)  # EMOTION_LABELS are ordered by severity
        risk = labels + probabilities[np.arange(len(labels)), labels]  # label first, its probability (< 1) next
        bounds = np.flatnonzero(np.diff(np.asarray(row_turns), prepend=-1, append=-1))
        starts, ends = bounds[:-1], bounds[1:]
        riskiest = [start + int(np.argmax(risk[start:end])) for start, end in zip(starts, ends, strict=True)]
        combined = [emotion[riskiest], np.maximum.reduceat(escalation, starts)]
        combined += [np.maximum.reduceat(signals, starts, axis=0) for signals in rest]
        return tuple(np.ascontiguousarray(array) for array in combined)

    def pad_ids(self, sequences: Sequence[Sequence[int]]) -> tuple[np.ndarray, np.ndarray]:
        """``(input_ids, attention_mask)`` int64 arrays, padded to the longest sequence."""
        width = max(len(sequence) for sequence in sequences)
        ids = np.full((len(sequences), width), self.tokenizer.pad_token_id, dtype=np.int64)
        mask = np.zeros((len(sequences), width), dtype=np.int64)
        for row, sequence in enumerate(sequences):
            ids[row, : len(sequence)] = sequence
            mask[row, : len(sequence)] = 1
        return ids, mask

    def classify(
        self,
        items: Sequence[TurnInput | str],
        batch_size: int = 64,
        on_batch: Callable[[int], object] | None = None,
    ) -> list[Prediction]:
        """Predictions for customer turns ``items`` (turns with context, or bare strings), in order, with the
        calibrated customer signals for a signal model; ``on_batch`` is called with the number of turns of each
        batch done (for a progress bar). An agent turn is refused: :meth:`agent_signals` reads those."""
        return self.classify_prepared(self.prepare(items), batch_size, on_batch)

    def prepare(self, items: Sequence[TurnInput | str]) -> PreparedTurns:
        """What :meth:`classify` does before the model runs: the customer turns ``items`` checked and tokenised
        (every distinct text once, in one call of the tokenizer). Needs no model: a thread may prepare the next
        batch while :meth:`classify_prepared` runs this one."""
        turns = tuple(item if isinstance(item, TurnInput) else TurnInput(item) for item in items)
        agent_turns = [index for index, turn in enumerate(turns) if turn.speaker != "customer"]
        if agent_turns:
            raise ValueError(
                f"classify() labels customer turns, but item {agent_turns[0]} is an {turns[agent_turns[0]].speaker} "
                "turn; read agent turns' signals with agent_signals()"
            )
        return PreparedTurns(turns, tuple(tuple(windows) for windows in self.encode_turns(turns)))

    def classify_prepared(
        self, prepared: PreparedTurns, batch_size: int = 64, on_batch: Callable[[int], object] | None = None
    ) -> list[Prediction]:
        """:meth:`classify` of turns :meth:`prepare` tokenised: the model and calibration."""
        turns = prepared.turns
        if not turns:
            return []
        langs = [turn.lang for turn in turns]
        outputs, windows = self._turn_arrays(
            turns, batch_size, "auto", on_batch, bool(self.signal_names), prepared.windows
        )
        return self.predictions_from_logits(*outputs[:2], langs, *outputs[2:], windows=windows)

    def classify_conversation(self, conversation: dict, batch_size: int = 64) -> list[Prediction]:
        """Predictions for every customer turn of a conversation in the project's format, in turn order."""
        turns = conversation_turn_inputs(conversation)
        return self.classify(turns, batch_size) if turns else []


def _numpy(values) -> np.ndarray:
    """``values`` (an array, or a CPU tensor of the PyTorch path's callers) as a numpy array."""
    return values.numpy() if hasattr(values, "numpy") and not isinstance(values, np.ndarray) else np.asarray(values)
