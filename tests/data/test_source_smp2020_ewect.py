"""SMP2020-EWECT adapter: Weibo emotions onto the scheme, on inline fixtures and the real files."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from tonewatch.data.sources.base import SourceNotFoundError
from tonewatch.data.sources.smp2020_ewect import SOURCE, map_rows

USUAL_EVAL = [
    {"id": 1, "content": "法国人教练就是一垃圾。国足进世界杯，还要等多久？", "label": "angry"},
    {"id": 2, "content": "颍南站站址在安徽省阜阳市十二里庙乡。", "label": "neutral"},
    {"id": 3, "content": "  在最脆弱的时候就会想，果然一个人靠不住 ", "label": "sad"},
    {"id": 4, "content": "居然能跑进前三百名，我也是吓了一跳", "label": "surprise"},
    {"id": 5, "content": "", "label": "happy"},
]
VIRUS_EVAL = [{"id": 1, "content": "致敬[心][心]大家出门记得戴口罩", "label": "happy"}]
VIRUS_TRAIN = [
    {"id": 1, "content": "致敬[心][心]大家出门记得戴口罩", "label": "happy"},
    {"id": 2, "content": "好害怕，楼下又有人确诊了", "label": "fear"},
]


def write_smp(root: Path) -> Path:
    folder = root / "smp2020_ewect"
    (folder / "raw").mkdir(parents=True)
    # Like the real files: one-line JSON arrays with ", " separators and unescaped Chinese.
    for name, rows in [
        ("usual_eval_labeled.txt", USUAL_EVAL),
        ("virus_eval_labeled.txt", VIRUS_EVAL),
        ("virus_train.txt", VIRUS_TRAIN),
    ]:
        (folder / "raw" / name).write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")
    return folder


def test_load_maps_labels(tmp_path: Path) -> None:
    records = {record.id: record for record in SOURCE.load(write_smp(tmp_path))}

    assert sorted(records) == [
        "smp2020_ewect:usual_eval:1",
        "smp2020_ewect:usual_eval:2",
        "smp2020_ewect:usual_eval:3",
        "smp2020_ewect:usual_eval:4",
        "smp2020_ewect:virus_eval:1",
        "smp2020_ewect:virus_train:1",
        "smp2020_ewect:virus_train:2",
    ]
    angry = records["smp2020_ewect:usual_eval:1"]
    assert angry.emotion is None
    assert angry.emotion_among == ("frustrated", "angry", "abusive")  # may be only frustrated, may be an insult
    assert angry.weight == 1.0
    assert (angry.tier, angry.origin_split, angry.meta["domain"], angry.escalate) == ("eval", "eval", "usual", None)

    neutral = records["smp2020_ewect:usual_eval:2"]
    assert (neutral.emotion, neutral.weight) == ("calm", 0.5)

    sad = records["smp2020_ewect:usual_eval:3"]
    assert sad.text == "在最脆弱的时候就会想，果然一个人靠不住"
    assert (sad.emotion, sad.emotion_among) == (None, ("calm", "frustrated"))
    assert records["smp2020_ewect:virus_train:2"].emotion_among == ("calm", "frustrated")  # fear

    assert not records["smp2020_ewect:usual_eval:4"].has_emotion  # surprise

    happy = records["smp2020_ewect:virus_train:1"]
    assert (happy.emotion, happy.origin_split, happy.meta["domain"]) == ("calm", "train", "virus")
    # The same post in two files stays in one conversation, so a split cannot separate the copies.
    assert happy.conversation_id == records["smp2020_ewect:virus_eval:1"].conversation_id
    assert happy.conversation_id != neutral.conversation_id


def test_map_rows_rejects_an_unknown_label() -> None:
    with pytest.raises(ValueError, match="unknown label 'disgust'"):
        map_rows([{"id": 7, "content": "恶心", "label": "disgust"}], "eval", "usual")


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    folder = write_smp(tmp_path)
    (folder / "raw" / "virus_train.txt").unlink()

    with pytest.raises(SourceNotFoundError, match=r"smp2020_ewect/raw/virus_train\.txt"):
        SOURCE.load(folder)


@pytest.mark.datasets
def test_real_files(data_root: Path) -> None:
    records = SOURCE.load(data_root / SOURCE.name)

    # shared/datasets/smp2020_ewect/SOURCE.md: usual eval 2,000, virus eval 2,000, virus train 8,606.
    assert Counter((record.meta["domain"], record.origin_split) for record in records) == {
        ("usual", "eval"): 2000,
        ("virus", "eval"): 2000,
        ("virus", "train"): 8606,
    }
    assert len({record.id for record in records}) == len(records)
    counts = Counter(record.meta["label"] for record in records if record.emotion_key == "frustrated|angry|abusive")
    assert counts == {"angry": 586 + 314 + 1322}
    assert Counter(record.emotion_key for record in records)["-"] == 170 + 47 + 197  # surprise
    assert sum(record.emotion == "calm" for record in records) == 420 + 391 + 476 + 923 + 1460 + 4423
    assert all(record.tier == "eval" and record.escalate is None for record in records)
