"""What the source adapters share: the skipped-rows warning and reading split files in order."""

from __future__ import annotations

import pytest

from tonewatch.data.records import Record
from tonewatch.data.sources.base import load_split_files, warn_skipped


def _record(text: str, split: str) -> Record:
    return Record(id=f"t:{split}:{text}", text=text, lang="zh", source="t", tier="train", origin_split=split)


def test_warn_skipped_warns_only_when_rows_were_dropped(caplog):
    records = [_record("a", "train")]
    assert warn_skipped(records, 1, "t train", "empty rows") is records
    assert "skipped" not in caplog.text
    warn_skipped(records, 3, "t train", "empty rows")
    assert "t train: skipped 2 empty rows" in caplog.text


def test_load_split_files_reads_every_split_in_order_and_needs_every_file(tmp_path):
    (tmp_path / "a.txt").write_text("x\ny\n")
    (tmp_path / "b.txt").write_text("z\n")

    def read(path):
        return path.read_text().split()

    def map_rows(rows, split):
        return [_record(row, split) for row in rows]

    records = load_split_files(tmp_path, {"train": "a.txt", "dev": "b.txt"}, read, map_rows)
    assert [(r.text, r.origin_split) for r in records] == [("x", "train"), ("y", "train"), ("z", "dev")]
    with pytest.raises(FileNotFoundError):
        load_split_files(tmp_path, {"train": "a.txt", "test": "missing.txt"}, read, map_rows)
