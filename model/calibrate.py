"""Calibrated probabilities from raw logits, in numpy, to the bit what PyTorch's CPU kernels give.

The classifier's scores were always computed with ``torch.softmax`` and ``torch.sigmoid`` on float32 tensors,
and ``tonewatch label`` writes them rounded to 6 decimals; a last-bit difference changes about 1 written score
in 500. The ONNX path does not import torch (200 MB of memory and seconds of start-up), so these functions
repeat what those kernels compute, operation for operation, in float32:

- ``exp`` is SLEEF's ``expf_u10`` (ATen's ``Vectorized<float>::exp``: Cody-Waite reduction by ln 2, a degree-6
  polynomial, each step a fused multiply-add), which both kernels use on whole vectors;
- ``softmax`` over the last dimension: the row's maximum subtracted, ``exp``, the sum taken left to right, the
  terms multiplied by its reciprocal (ATen's ``_vec_softmax_lastdim``);
- ``sigmoid``: ``1 / (1 + exp(-x))``, where ATen's vectorised loop covers the first multiple of two vectors
  (32 floats with AVX-512, 16 with AVX2) and the C library's ``expf`` the rest.

A fused multiply-add is computed in float64 and rounded once more: exact unless the float64 sum itself was
rounded to a float32 tie (not seen in 10 million random rows, ``tests/model/test_calibrate.py``). One call of more
than 32768 values is split among threads by ATen, each part with its own scalar tail; here it is one part (the
scores may differ in the last bit from the PyTorch path's for such a call; labelling calls are far smaller).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

_F32, _F64 = np.float32, np.float64


def _bits(value: int) -> np.float32:
    return np.array([value], dtype=np.uint32).view(_F32)[0]


_R_LN2 = _F32(1.442695040888963407359924681001892137426645954152985934135449406931)
_L2U, _L2L = _F32(0.693145751953125), _F32(1.428606765330187045e-06)
_POLYNOMIAL = tuple(
    _F32(c)
    for c in (
        0.000198527617612853646278381,
        0.00139304355252534151077271,
        0.00833336077630519866943359,
        0.0416664853692054748535156,
        0.166666671633720397949219,
        0.5,
    )
)


def _fma(a: np.ndarray, b, c) -> np.ndarray:
    """float32 ``a * b + c`` rounded once (the product of two float32 values is exact in float64)."""
    return (a.astype(_F64) * _F64(b) + np.asarray(c, dtype=_F64)).astype(_F32)


def _pow2(exponent: np.ndarray) -> np.ndarray:
    """``2 ** exponent`` as float32 built from its bits, as SLEEF's ``vpow2i``."""
    return (((exponent.astype(np.int64) + 127) << 23) & 0xFFFFFFFF).astype(np.uint32).view(_F32)


def sleef_expf(values: np.ndarray) -> np.ndarray:
    """``exp`` of float32 ``values`` as SLEEF's ``expf_u10`` computes it (ATen's vectorised ``exp``)."""
    d = np.asarray(values, dtype=_F32)
    finite = np.clip(d, _F32(-104), _F32(104))  # beyond: 0 or inf, set below (and no int32 overflow)
    with np.errstate(invalid="ignore"):  # NaN: any q, the result is NaN below
        q = np.rint(finite * _R_LN2).astype(np.int32)
    qf = q.astype(_F32)
    s = _fma(qf, -_L2U, finite)
    s = _fma(qf, -_L2L, s)
    u = np.full_like(s, _POLYNOMIAL[0])
    for coefficient in _POLYNOMIAL[1:]:
        u = _fma(u, s, coefficient)
    u = _F32(1) + _fma(s * s, u, s)
    half = q >> 1
    with np.errstate(over="ignore"):
        u = u * _pow2(half) * _pow2(q - half)
    u = np.where(d < _F32(-104), _F32(0), u)
    u = np.where(d > _F32(104), _F32(np.inf), u)
    return np.where(np.isnan(d), d, u).astype(_F32)


@functools.cache
def _libm_expf():
    """The C library's ``expf`` (what ``std::exp(float)`` calls in ATen's scalar loops), or ``None``."""
    name = ctypes.util.find_library("m")
    if name is None:
        return None
    try:
        function = ctypes.CDLL(name).expf
    except (OSError, AttributeError):
        return None
    function.restype, function.argtypes = ctypes.c_float, [ctypes.c_float]
    return function


def libm_expf(values: np.ndarray) -> np.ndarray:
    """``exp`` of float32 ``values`` by the C library (float64 ``exp`` rounded to float32 where it has none)."""
    values = np.asarray(values, dtype=_F32)
    expf = _libm_expf()
    if expf is None:
        with np.errstate(over="ignore"):
            return np.exp(values.astype(_F64)).astype(_F32)
    return np.array([expf(float(value)) for value in values.ravel()], dtype=_F32).reshape(values.shape)


@functools.cache
def vector_floats() -> int:
    """Floats per step of ATen's vectorised loops on this CPU (two vectors): 32 with AVX-512, else 16 (AVX2);
    ``$ATEN_CPU_CAPABILITY`` chooses as it does for PyTorch."""
    chosen = os.environ.get("ATEN_CPU_CAPABILITY", "").lower()
    if chosen:
        return 32 if chosen.startswith("avx512") else 16
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return 16
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    return 32 if {"avx512f", "avx512bw", "avx512vl", "avx512dq"} <= set(flags) else 16


def sigmoid(values: np.ndarray) -> np.ndarray:
    """``torch.sigmoid`` of a contiguous float32 array: SLEEF ``exp`` over the whole vector steps, the C library's
    on the tail."""
    flat = np.ascontiguousarray(values, dtype=_F32).ravel()
    split = len(flat) - len(flat) % vector_floats()
    exponentials = np.concatenate([sleef_expf(_F32(0) - flat[:split]), libm_expf(-flat[split:])])
    with np.errstate(over="ignore"):
        return (_F32(1) / (exponentials + _F32(1))).reshape(np.shape(values))


def softmax(values: np.ndarray) -> np.ndarray:
    """``torch.softmax(values, dim=-1)`` of a float32 array."""
    values = np.asarray(values, dtype=_F32)
    exponentials = sleef_expf(values - values.max(axis=-1, keepdims=True))
    total = exponentials[..., 0].copy()
    for column in range(1, exponentials.shape[-1]):
        total += exponentials[..., column]  # left to right, in float32
    return exponentials * (_F32(1) / total)[..., None]


def emotion_probabilities(logits: np.ndarray, temperature: float, bias: Sequence[float]) -> np.ndarray:
    """Calibrated emotion probabilities: ``softmax(logits / temperature + bias)`` over the last dimension."""
    logits = np.asarray(logits, dtype=_F32)
    return softmax(logits / _F32(temperature) + np.asarray(bias, dtype=_F32))


def escalation_probabilities(logits: np.ndarray, temperature: float) -> np.ndarray:
    """Calibrated escalation probabilities: ``sigmoid(logits / temperature)``."""
    return sigmoid(np.asarray(logits, dtype=_F32) / _F32(temperature))


def signal_probabilities(logits: np.ndarray, temperature: float) -> np.ndarray:
    """Calibrated signal probabilities: ``sigmoid(logits / temperature)`` (rows of turns, a column per signal)."""
    return sigmoid(np.asarray(logits, dtype=_F32) / _F32(temperature))
