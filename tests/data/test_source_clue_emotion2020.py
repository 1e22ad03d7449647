"""CLUE Emotion 2020 adapter: Weibo emotions onto the scheme, on inline fixtures and the real file."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from tonewatch.data.sources.base import SourceNotFoundError
from tonewatch.data.sources.clue_emotion2020 import SOURCE

# Like the real file: JSON lines with ", " separators, unescaped Chinese, a final newline.
VALID_TXT = (
    '{"id": 0, "content": "一天到晚烦毛线嘎烦!!!!", "label": "anger"}\n'
    '{"id": 1, "content": "希望我们可以一直这样下去，十年，二十年，一辈子！[亲亲]", "label": "happiness"}\n'
    '{"id": 2, "content": "  对于睡不着觉这回事着实感到苍白无力 ", "label": "sadness"}\n'
    '{"id": 3, "content": "无聊了", "label": "disgust"}\n'
    '{"id": 4, "content": " ", "label": "like"}\n'
    "\n"
    '{"id": 5, "content": "谢谢各位哥哥姐姐给我的支持和鼓励~", "label": "like"}\n'
)


def write_clue(root: Path) -> Path:
    folder = root / "clue_emotion2020"
    (folder / "raw").mkdir(parents=True)
    (folder / "raw" / "valid.txt").write_text(VALID_TXT, encoding="utf-8")
    return folder


def test_load_maps_labels(tmp_path: Path) -> None:
    records = {record.id: record for record in SOURCE.load(write_clue(tmp_path))}

    # The whitespace-only post 4 and the blank line are skipped.
    assert sorted(records) == [f"clue_emotion2020:valid:{index}" for index in (0, 1, 2, 3, 5)]
    anger = records["clue_emotion2020:valid:0"]
    assert (anger.emotion, anger.emotion_among) == (None, ("frustrated", "angry", "abusive"))
    assert (anger.tier, anger.origin_split, anger.escalate) == ("eval", "valid", None)

    happiness = records["clue_emotion2020:valid:1"]
    assert (happiness.emotion, happiness.weight) == ("calm", 0.5)
    assert records["clue_emotion2020:valid:5"].emotion == "calm"  # like

    sadness = records["clue_emotion2020:valid:2"]
    assert sadness.text == "对于睡不着觉这回事着实感到苍白无力"
    assert sadness.emotion_among == ("calm", "frustrated")

    assert not records["clue_emotion2020:valid:3"].has_emotion  # disgust: boredom as often as contempt


def test_a_broken_line_is_reported_with_its_number(tmp_path: Path) -> None:
    folder = write_clue(tmp_path)
    (folder / "raw" / "valid.txt").write_text(
        '{"id": 0, "content": "好", "label": "like"}\n{"id": 1, "content": \n', encoding="utf-8"
    )

    with pytest.raises(ValueError, match=r"valid\.txt:2: invalid JSON"):
        SOURCE.load(folder)


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    (tmp_path / "clue_emotion2020").mkdir()

    with pytest.raises(SourceNotFoundError, match=r"clue_emotion2020/raw/valid\.txt"):
        SOURCE.load(tmp_path / "clue_emotion2020")


@pytest.mark.datasets
def test_real_files(data_root: Path) -> None:
    records = SOURCE.load(data_root / SOURCE.name)

    # shared/datasets/clue_emotion2020/SOURCE.md: valid 3,966 rows.
    assert len(records) == 3966
    assert len({record.id for record in records}) == len(records)
    assert Counter(record.meta["label"] for record in records) == {
        "sadness": 1394,
        "happiness": 1006,
        "disgust": 509,
        "anger": 458,
        "like": 430,
        "surprise": 100,
        "fear": 69,
    }
    assert Counter(record.emotion_key for record in records) == {
        "calm|frustrated": 1394 + 69,
        "calm": 1006 + 430,
        "-": 509 + 100,
        "frustrated|angry|abusive": 458,
    }
