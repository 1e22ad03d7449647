"""Calibrated probabilities from raw logits, in numpy (the ONNX path imports no torch).

Both backends calibrate here, so they turn the same logits into the same scores. The functions compute in
float64 and round once to float32: within a few 1e-8 of ``torch.softmax`` / ``torch.sigmoid`` in float32
(``tests/model/test_calibrate.py``), and the same on every CPU, where a copy of a library's vector kernels
would hold only on the CPUs it was written for.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def sigmoid(values: np.ndarray) -> np.ndarray:
    """``1 / (1 + exp(-x))`` elementwise, float32 (NaN stays NaN; large |x| saturate to 0 or 1)."""
    x = np.asarray(values, dtype=np.float64)
    with np.errstate(over="ignore"):
        return (1.0 / (1.0 + np.exp(-x))).astype(np.float32)


def softmax(values: np.ndarray) -> np.ndarray:
    """Softmax over the last dimension, float32 (a row with a NaN is NaN)."""
    x = np.asarray(values, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        shifted = x - np.max(x, axis=-1, keepdims=True)
        exponentials = np.exp(shifted)
        return (exponentials / exponentials.sum(axis=-1, keepdims=True)).astype(np.float32)


def emotion_probabilities(logits: np.ndarray, temperature: float, bias: Sequence[float]) -> np.ndarray:
    """Calibrated emotion probabilities: ``softmax(logits / temperature + bias)`` over the last dimension."""
    logits = np.asarray(logits, dtype=np.float32)
    return softmax(logits / np.float32(temperature) + np.asarray(bias, dtype=np.float32))


def escalation_probabilities(logits: np.ndarray, temperature: float) -> np.ndarray:
    """Calibrated escalation probabilities: ``sigmoid(logits / temperature)``."""
    return sigmoid(np.asarray(logits, dtype=np.float32) / np.float32(temperature))


def signal_probabilities(logits: np.ndarray, temperature: float) -> np.ndarray:
    """Calibrated signal probabilities: ``sigmoid(logits / temperature)`` (rows of turns, a column per signal)."""
    return sigmoid(np.asarray(logits, dtype=np.float32) / np.float32(temperature))
