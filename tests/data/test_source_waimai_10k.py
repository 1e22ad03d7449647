"""waimai_10k adapter: positive reviews -> calm, negative reviews kept without evidence."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from tonewatch.data.sources.base import SourceNotFoundError
from tonewatch.data.sources.waimai_10k import SOURCE, map_rows

# Like the real file: no BOM, header "label,review", fields quoted only when they hold a comma.
WAIMAI_CSV = (
    "label,review\n"
    "1,很快，好吃，味道足，量大\n"
    '1,"送餐快,态度也特别好,辛苦啦谢谢"\n'
    "0,  太慢了，等了两个多小时，而且特别咸 \n"
    "0,\n"
    "0,就是有点慢\n"
    "1,就是有点慢\n"
)


def write_waimai(root: Path, *, bom: bool = False) -> Path:
    folder = root / "waimai_10k"
    (folder / "raw").mkdir(parents=True)
    (folder / "raw" / "waimai_10k.csv").write_bytes(WAIMAI_CSV.encode("utf-8-sig" if bom else "utf-8"))
    return folder


@pytest.mark.parametrize("bom", [False, True])
def test_load_maps_labels(tmp_path: Path, bom: bool) -> None:
    records = {record.id: record for record in SOURCE.load(write_waimai(tmp_path, bom=bom))}

    # The empty review (row 3) is skipped; ids keep the row number.
    assert sorted(records) == [f"waimai_10k:{index}" for index in (0, 1, 2, 4, 5)]
    positive = records["waimai_10k:1"]
    assert positive.text == "送餐快,态度也特别好,辛苦啦谢谢"
    assert (positive.emotion, positive.weight, positive.escalate) == ("calm", 0.5, None)
    assert (positive.tier, positive.origin_split, positive.meta["label"]) == ("eval", "", "1")

    negative = records["waimai_10k:2"]
    assert negative.text == "太慢了，等了两个多小时，而且特别咸"
    assert not negative.has_emotion
    assert negative.escalate is None
    assert negative.meta["label"] == "0"

    # The same review with both labels stays in one conversation.
    assert records["waimai_10k:4"].conversation_id == records["waimai_10k:5"].conversation_id
    assert records["waimai_10k:0"].conversation_id != records["waimai_10k:1"].conversation_id


def test_map_rows_rejects_an_unknown_label() -> None:
    with pytest.raises(ValueError, match="row 0: unknown label 'pos'"):
        map_rows([{"label": "pos", "review": "好吃"}])


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    (tmp_path / "waimai_10k").mkdir()

    with pytest.raises(SourceNotFoundError, match=r"waimai_10k/raw/waimai_10k\.csv"):
        SOURCE.load(tmp_path / "waimai_10k")


@pytest.mark.datasets
def test_real_files(data_root: Path) -> None:
    records = SOURCE.load(data_root / SOURCE.name)

    # shared/datasets/waimai_10k/SOURCE.md: 11,987 rows, 7,987 negative, 4,000 positive.
    assert Counter((record.meta["label"], record.emotion_key) for record in records) == {
        ("0", "-"): 7987,
        ("1", "calm"): 4000,
    }
    assert len({record.id for record in records}) == len(records)
    assert all(record.tier == "eval" and record.escalate is None for record in records)
