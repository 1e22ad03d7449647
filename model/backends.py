"""The two runtimes a :class:`~tonewatch.model.classifier.Classifier` runs on, and which one it picks.

Both take padded ``(input_ids, attention_mask, token_type_ids)`` int64 arrays
and give raw ``(emotion_logits, escalation_logits)`` as numpy arrays, and ``signal_logits`` third for a model
with a signal head:

- :class:`TorchBackend`: the merged PyTorch network;
- :class:`OnnxBackend`: ONNX Runtime sessions over a directory that
  ``tonewatch.model.export`` built (an int8 graph, and with the default recipe
  an fp32 graph to re-check close calls), all on one shared thread pool; it
  looks the tokens' word embeddings up in the directory's memory-mapped table
  (``tonewatch.model.embeddings``), which the graphs take instead of token ids.

Calibration stays outside the backends (the classifier applies it), so both
make the same decisions; :func:`calibrated_margins` tells how close a decision
is to its boundary.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from tonewatch.configfile import ConfigError
from tonewatch.model.embeddings import EMBEDDINGS_NAME, EmbeddingTable
from tonewatch.model.types import Calibration

logger = logging.getLogger(__name__)

BACKENDS = ("auto", "onnx", "torch")
"""``auto``: ONNX Runtime when it is installed (the ONNX model is built on first use and cached), else PyTorch."""
BACKEND_ENV = "TONEWATCH_BACKEND"
"""Environment variable choosing the default backend (``auto`` when unset)."""

ONNX_NAME = "model.onnx"
FP32_NAME = "model.fp32.onnx"
META_NAME = "onnx.json"
"""The files of an ONNX directory: the main graph, the fp32 re-check graph, what it was built from (and
``embeddings.npy``, the word embeddings both graphs take)."""


DISABLED_OPTIMIZERS = ("SkipLayerNormFusion",)
"""ONNX Runtime graph rewrites a session leaves out. Profiled on one turn (70 tokens, int8 graph, 2 threads, Xeon with
AVX-512 VNNI, 2026-12-07, a busy machine): the 12 fused SkipLayerNormalization nodes took 5.7 ms a run, the Add and
LayerNormalization nodes they replace 1.2-2.3 ms."""


def pick_backend(backend: str | None) -> str:
    """``backend``, else ``$TONEWATCH_BACKEND``, else ``auto``; an unknown name is a :class:`ConfigError`."""
    chosen = backend or os.environ.get(BACKEND_ENV) or "auto"
    if chosen not in BACKENDS:
        raise ConfigError(f"unknown backend {chosen!r} (from the argument or ${BACKEND_ENV}); choose from {BACKENDS}")
    return chosen


class TorchBackend:
    """The merged PyTorch network (a ``TurnClassifierNetwork``): ``backend(ids, mask, types)`` gives its logits."""

    name = "torch"
    margins = None

    def __init__(self, network, threads: int | None = None, device: str = "cpu"):
        """``device``: a torch device (``cpu``, ``cuda``) the network runs on."""
        import torch

        self.device = device
        self.network = network.eval().to(device)
        if threads:
            torch.set_num_threads(threads)

    def __call__(self, *arrays: np.ndarray, fp32: bool = False):
        import torch  # imported here so that this module (and the ONNX path's names) stays light

        with torch.inference_mode():
            outputs = self.network(*(torch.from_numpy(array).to(self.device) for array in arrays))
            return tuple(output.float().cpu().numpy() for output in outputs)


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

    With a re-check graph (recipe ``int8``) the classifier re-runs close calls through :meth:`run_fp32`. Both
    graphs take the word embeddings of the tokens, which the backend looks up in the directory's one
    memory-mapped table (:class:`~tonewatch.model.embeddings.EmbeddingTable`): a process reads only the rows of
    the tokens it has seen, and processes that load the same directory share them.

    The int8 graph quantises its activations dynamically, with one scale per MatMul input tensor: fed a batch,
    every row's scale would depend on the other rows and on the padding, and a turn's scores on which turns
    shared its batch (up to 0.2 in probability on callcenter_dev). So a graph with int8 nodes is fed one row at a
    time, without padding (``per_row``): a turn's scores are its own (its cost in throughput:
    ``docs/benchmarks.md``). The fp32 graphs are batch-independent to float rounding and run batched.
    """

    name = "onnx"

    def __init__(
        self,
        onnx_dir: Path,
        threads: int | None = None,
        meta: dict | None = None,
        per_row: bool | None = None,
        providers: Sequence[str] = ("CPUExecutionProvider",),
    ):
        """``meta`` stands in for the directory's ``onnx.json``; ``per_row`` (default: whether the main graph has
        int8 nodes) feeds the main graph one row at a time; ``providers``: ONNX Runtime's execution providers, in
        order of preference (``CUDAExecutionProvider`` first on a GPU)."""
        self.onnx_dir = onnx_dir
        self.providers = tuple(providers)
        self.meta = meta if meta is not None else json.loads((onnx_dir / META_NAME).read_text())
        self.per_row = bool(self.meta.get("quantized_nodes")) if per_row is None else per_row
        self.margins = self.meta.get("recheck")
        self.embeddings = EmbeddingTable(onnx_dir / self.meta.get("embeddings", {}).get("file", EMBEDDINGS_NAME))
        self.session = self.open_session(onnx_dir / ONNX_NAME, threads, self.providers)
        self.fp32_session = self.open_session(onnx_dir / FP32_NAME, threads, self.providers) if self.margins else None
        self.turns = 0
        self.rechecked = 0

    @staticmethod
    def open_session(path: Path, threads: int | None = None, providers: Sequence[str] = ("CPUExecutionProvider",)):
        """A session on the process's one shared ONNX Runtime thread pool (see :func:`shared_pool_threads`)."""
        import onnxruntime as ort

        shared_pool_threads(threads)
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.use_per_session_threads = False
        options.log_severity_level = 3
        # ONNX Runtime would fuse each residual Add + LayerNormalization back into SkipLayerNormalization, whose
        # kernel is slower on one-turn inputs (docs/design.md): the export leaves them apart, and so does the session.
        return ort.InferenceSession(
            str(path), options, providers=list(providers), disabled_optimizers=list(DISABLED_OPTIMIZERS)
        )

    def _run(self, session, arrays: Sequence[np.ndarray]):
        """Feed ``arrays`` (input_ids, attention_mask, token_type_ids), the ids as their word embeddings; every
        output (both logits, and the signal logits of a signal model's graph)."""
        input_ids, attention_mask, token_type_ids = arrays
        feed = {
            "inputs_embeds": self.embeddings.lookup(input_ids),
            "attention_mask": attention_mask,
            "token_type_ids": token_type_ids,
        }
        return tuple(session.run(None, feed))

    def __call__(self, *arrays: np.ndarray, fp32: bool = False):
        """The main graph's output, or the fp32 graph's with ``fp32`` (counted as re-checked)."""
        if fp32 and self.fp32_session is not None:
            return self.run_fp32(*arrays)
        self.turns += len(arrays[0])
        if not self.per_row or (len(arrays[0]) == 1 and arrays[1].all()):  # a lone row without padding
            return self._run(self.session, arrays)
        rows = [
            self._run(self.session, [array[row : row + 1, :length] for array in arrays])
            for row, length in enumerate(arrays[1].sum(axis=1))  # the attention mask: padding is at the end
        ]
        return tuple(np.concatenate(outputs) for outputs in zip(*rows, strict=True))

    def run_fp32(self, *arrays: np.ndarray):
        self.rechecked += len(arrays[0])
        return self._run(self.fp32_session, arrays)


def signal_decision_margins(
    signal_logits: np.ndarray, signals: Sequence[tuple[int, str]], langs: Sequence[str | None], calibration: Calibration
) -> np.ndarray:
    """``[rows, len(signals)]``: each signal's calibrated logit minus its threshold's logit for the row's language
    (``signals`` are ``(column, name)`` pairs of the signal head)."""
    columns = [column for column, _ in signals]
    thresholds = np.array([[calibration.signal_threshold(name, lang) for _, name in signals] for lang in langs])
    thresholds = np.clip(thresholds.reshape(len(langs), len(signals)), 1e-6, 1 - 1e-6)
    tempered = signal_logits[:, columns] / calibration.signal_temperature
    return tempered - np.log(thresholds / (1 - thresholds))


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
