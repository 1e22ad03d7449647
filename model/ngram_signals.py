"""Turn signals read from character n-grams: a linear model over the hashed, TF-IDF-weighted n-grams of a turn.

A model whose ``config.json`` says ``"signal_reader": "char_ngrams"`` reads its turn signals with this reader
instead of a signal head on the encoder: its network (and ONNX graph) is the emotion and escalation model only,
and ``signal_ngrams.safetensors`` beside it holds, per signal, one weight per hash bucket and a bias. The
classifier adds the reader's logits as the signal logits; calibration and thresholds are the model's as for a
head (``Calibration.signal_temperature``, ``signal_thresholds``).

Why (``docs/design.md``, "Turn signals"): the signals are mostly said in words ("позовите руководителя",
"我要投诉", "如果您继续辱骂"), and on the held-out signal labels a char n-gram logistic regression read them far
better than a signal head trained with the encoder (supervisor_request F1 0.73 / 0.85 zh / ru against 0.38 / 0.37)
or fitted on the frozen encoder's pooled features (0.62 / 0.63).

Features, the same at fitting and at inference (torch-free, numpy only):

1. the turn's text normalised as the model's encoder input is (``InputLimits.normalize``), lower-cased;
2. per whitespace-separated word, padded with a space each side, every character n-gram of ``min_n`` to
   ``max_n`` characters (a word shorter than n gives itself once) — a Chinese clause is one "word";
3. each n-gram hashed to one of ``buckets`` (CRC-32 of its UTF-8, modulo a power of two: the same on every
   platform and Python), counted, weighted ``(1 + ln count) * idf[bucket]``, the row scaled to unit L2 norm.
"""

from __future__ import annotations

import zlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from tonewatch.model.normalize import normalize_text

READER_NAME = "char_ngrams"
NGRAM_FILE = "signal_ngrams.safetensors"
"""The reader's tensors, in the model directory: ``weight`` [buckets, signals] (float16), ``bias`` [signals] and
``idf`` [buckets] (float32); its n-gram settings in the file's metadata."""
EMOTION_NGRAM_FILE = "emotion_ngrams.safetensors"
"""The same kind of linear n-gram model with one output per emotion label: the emotion n-gram expert of a model whose
``config.json`` says ``"emotion_reader": "char_ngrams"`` (:class:`NgramSignalReader` reads both files)."""


@dataclass(frozen=True)
class NgramSpec:
    """Which n-grams the reader counts and how many hash buckets it has."""

    min_n: int = 1
    max_n: int = 4
    buckets: int = 2**17

    def __post_init__(self) -> None:
        if not 1 <= self.min_n <= self.max_n:
            raise ValueError(f"need 1 <= min_n <= max_n, got {self.min_n}, {self.max_n}")
        if self.buckets < 2 or self.buckets & (self.buckets - 1):
            raise ValueError(f"buckets must be a power of two >= 2, got {self.buckets}")

    def to_metadata(self) -> dict[str, str]:
        return {"min_n": str(self.min_n), "max_n": str(self.max_n), "buckets": str(self.buckets)}

    @classmethod
    def from_metadata(cls, metadata: dict[str, str]) -> NgramSpec:
        return cls(int(metadata["min_n"]), int(metadata["max_n"]), int(metadata["buckets"]))


def char_ngrams(text: str, spec: NgramSpec, normalize: str = "none") -> list[str]:
    """The n-grams of ``text`` (module docstring, steps 1-2), in order, with repeats."""
    grams: list[str] = []
    for word in normalize_text(text, normalize).lower().split():
        padded = f" {word} "
        for n in range(spec.min_n, spec.max_n + 1):
            if len(padded) <= n:
                grams.append(padded)
                break
            grams.extend(padded[start : start + n] for start in range(len(padded) - n + 1))
    return grams


@lru_cache(maxsize=4096)
def hashed_counts(text: str, spec: NgramSpec, normalize: str = "none") -> tuple[np.ndarray, np.ndarray]:
    """``(buckets, counts)`` of ``text``'s n-grams: the distinct buckets hit, ascending, and how often each.

    Cached for the last few thousand texts: a model with both n-gram readers (signals and the emotion expert, same
    n-grams) hashes each turn once. The arrays are shared between callers, so they are read-only."""
    mask = spec.buckets - 1
    counts = Counter(zlib.crc32(gram.encode("utf-8")) & mask for gram in char_ngrams(text, spec, normalize))
    buckets = np.fromiter(sorted(counts), dtype=np.int64, count=len(counts))
    values = np.array([counts[int(bucket)] for bucket in buckets], dtype=np.float64)
    buckets.flags.writeable = values.flags.writeable = False
    return buckets, values


def tfidf_row(buckets: np.ndarray, counts: np.ndarray, idf: np.ndarray) -> np.ndarray:
    """The unit-norm TF-IDF values of one text's ``buckets`` (module docstring, step 3)."""
    values = (1.0 + np.log(counts)) * idf[buckets]
    norm = float(np.sqrt((values**2).sum()))
    return values / norm if norm > 0 else values


def document_frequency_idf(rows: Sequence[np.ndarray], buckets: int) -> np.ndarray:
    """Smoothed inverse document frequency per bucket, ``ln((1 + n) / (1 + df)) + 1``, from each text's buckets."""
    frequency = np.zeros(buckets, dtype=np.float64)
    for row in rows:
        frequency[row] += 1.0
    return np.log((1.0 + len(rows)) / (1.0 + frequency)) + 1.0


class NgramSignalReader:
    """Signal logits ``[turns, signals]`` of texts, from a fitted ``weight``, ``bias`` and ``idf``."""

    def __init__(self, weight: np.ndarray, bias: np.ndarray, idf: np.ndarray, spec: NgramSpec, normalize: str):
        if weight.shape != (spec.buckets, len(bias)) or idf.shape != (spec.buckets,):
            raise ValueError(
                f"reader shapes disagree: weight {weight.shape}, bias {bias.shape}, idf {idf.shape}, "
                f"{spec.buckets} buckets"
            )
        self.weight = weight.astype(np.float32)
        self.bias = bias.astype(np.float32)
        self.idf = idf.astype(np.float64)
        self.spec = spec
        self.normalize = normalize

    @property
    def num_signals(self) -> int:
        return len(self.bias)

    def logits(self, texts: Sequence[str]) -> np.ndarray:
        """``[len(texts), signals]`` raw signal logits (float32)."""
        out = np.empty((len(texts), self.num_signals), dtype=np.float32)
        for row, text in enumerate(texts):
            buckets, counts = hashed_counts(text, self.spec, self.normalize)
            values = tfidf_row(buckets, counts, self.idf)
            out[row] = values.astype(np.float32) @ self.weight[buckets] + self.bias
        return out

    def save(self, directory: str | Path, filename: str = NGRAM_FILE) -> Path:
        from safetensors.numpy import save_file

        path = Path(directory) / filename
        tensors = {
            "weight": self.weight.astype(np.float16),
            "bias": self.bias.astype(np.float32),
            "idf": self.idf.astype(np.float32),
        }
        save_file(tensors, str(path), metadata={**self.spec.to_metadata(), "normalize": self.normalize})
        return path

    @classmethod
    def load(cls, directory: str | Path, filename: str = NGRAM_FILE) -> NgramSignalReader:
        from safetensors import safe_open

        path = Path(directory) / filename
        if not path.is_file():
            what = "emotion" if filename == EMOTION_NGRAM_FILE else "signal"
            raise FileNotFoundError(f"{path} is missing: the model's config.json names the {READER_NAME} {what} reader")
        with safe_open(str(path), framework="numpy") as handle:
            metadata = handle.metadata() or {}
            tensors = {name: handle.get_tensor(name) for name in ("weight", "bias", "idf")}
        return cls(
            tensors["weight"],
            tensors["bias"],
            tensors["idf"],
            NgramSpec.from_metadata(metadata),
            metadata.get("normalize", "none"),
        )
