"""COLD adapter: safe -> not abusive, offensive kept as COLD's claim with weight 0 (inline fixtures, real files)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from tonewatch.data.records import NOT_ABUSIVE
from tonewatch.data.sources.base import SourceNotFoundError
from tonewatch.data.sources.cold import SOURCE, map_rows

# The real files: UTF-8 with BOM, an unnamed first column that repeats, dev.csv's split column saying "train".
TRAIN_CSV = (
    ",split,topic,label,TEXT\n"
    "7089,train,race,1,黑人都是猴子，滚回去\n"
    '1082,train,region,0,"  我是东北人，我们那儿冬天确实冷，但是人很热情。 "\n'
    "7089,train,gender,0,\n"
    "55,train,gender,0,女生学理工也很厉害啊\n"
)
DEV_CSV = "".join(
    [
        ",split,topic,label,TEXT\n",
        "8168,dev,race,1,你们河南人就是骗子\n",
        "12837,train,race,0,女生学理工也很厉害啊\n",
    ]
)


def write_cold(root: Path) -> Path:
    folder = root / "cold"
    (folder / "raw").mkdir(parents=True)
    (folder / "raw" / "train.csv").write_bytes(TRAIN_CSV.encode("utf-8-sig"))
    (folder / "raw" / "dev.csv").write_bytes(DEV_CSV.encode("utf-8-sig"))
    return folder


def test_load_maps_offensive_to_abusive_and_safe_to_not_abusive(tmp_path: Path) -> None:
    records = {record.id: record for record in SOURCE.load(write_cold(tmp_path))}

    # The empty third train row is skipped, but row numbers (and so ids) keep counting.
    assert sorted(records) == ["cold:dev:0", "cold:dev:1", "cold:train:0", "cold:train:1", "cold:train:3"]

    offensive = records["cold:train:0"]
    assert offensive.text == "黑人都是猴子，滚回去"
    assert offensive.emotion == "abusive"
    assert offensive.emotion_among == ()
    assert offensive.weight == 0.0  # COLD's claim, scored against but never trained on
    assert offensive.escalate is None
    assert (offensive.lang, offensive.source, offensive.tier) == ("zh", "cold", "train")
    assert offensive.origin_split == "train"
    assert offensive.meta["row_id"] == "7089"  # the BOM did not leak into the first column's name
    assert offensive.meta["topic"] == "race"

    safe = records["cold:train:1"]
    # A quoted CSV field; the surrounding spaces are stripped.
    assert safe.text == "我是东北人，我们那儿冬天确实冷，但是人很热情。"
    assert safe.emotion is None
    assert safe.emotion_among == NOT_ABUSIVE
    assert safe.weight == 1.0
    assert safe.escalate is None

    # origin_split is the file's split, not dev.csv's own split column.
    assert records["cold:dev:0"].emotion == "abusive"
    assert records["cold:dev:1"].origin_split == "dev"
    assert records["cold:dev:1"].meta["split_column"] == "train"


def test_duplicate_texts_share_a_conversation_id(tmp_path: Path) -> None:
    records = {record.id: record for record in SOURCE.load(write_cold(tmp_path))}

    assert records["cold:train:3"].conversation_id == records["cold:dev:1"].conversation_id
    assert records["cold:train:0"].conversation_id != records["cold:train:1"].conversation_id


def test_map_rows_rejects_an_unknown_label() -> None:
    with pytest.raises(ValueError, match="unknown label '2'"):
        map_rows([{"": "1", "split": "train", "topic": "race", "label": "2", "TEXT": "文本"}], "train")


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    folder = write_cold(tmp_path)
    (folder / "raw" / "dev.csv").unlink()

    with pytest.raises(SourceNotFoundError, match=r"cold/raw/dev\.csv"):
        SOURCE.load(folder)


@pytest.mark.datasets
def test_real_files(data_root: Path) -> None:
    records = SOURCE.load(data_root / SOURCE.name)

    counts = Counter((record.origin_split, record.emotion_key) for record in records)
    # shared/datasets/cold/SOURCE.md: train 13,003 safe / 12,723 offensive, dev 3,220 / 3,211; no empty texts.
    assert counts == {
        ("train", "calm|frustrated|angry"): 13003,
        ("train", "abusive"): 12723,
        ("dev", "calm|frustrated|angry"): 3220,
        ("dev", "abusive"): 3211,
    }
    assert len({record.id for record in records}) == len(records)
    assert all(record.tier == "train" and record.escalate is None and not record.context for record in records)
