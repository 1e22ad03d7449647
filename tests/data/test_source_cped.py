"""CPED adapter: emotions onto the scheme, dialogue context from each speaker's point of view."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from tonewatch.data.records import Turn
from tonewatch.data.sources.base import SourceNotFoundError
from tonewatch.data.sources.cped import SOURCE, emotion_evidence

HEADER = (
    "TV_ID,Dialogue_ID,Utterance_ID,Speaker,Gender,Age,Neuroticism,Extraversion,Openness,Agreeableness,"
    "Conscientiousness,Scene,FacePosition_LU,FacePosition_RD,Sentiment,Emotion,DA,Utterance\n"
)
TRAITS = "female,young,high,high,low,high,high,car,335_103,493_312"


def row(utterance_id: str, speaker: str, sentiment: str, emotion: str, act: str, text: str) -> str:
    dialogue_id = utterance_id.rsplit("_", 1)[0]
    return f"32,{dialogue_id},{utterance_id},{speaker},{TRAITS},{sentiment},{emotion},{act},{text}\n"


VALID_CSV = (
    HEADER
    + row("32_000_000", "于春晓", "neutral", "neutral", "question", "撞车了吗")
    + row("32_000_001", "戴娜", "negative", "anger", "statement-non-opinion", "你这人没皮没脸 比鬼还难缠")
    + row("32_000_002", "戴娜", "negative", "depress", "question", "好意思吗你")
    + row("32_000_003", "于春晓", "positive", "relaxed", "irony", "想什么办法 我还干什么活")
    + row("32_000_004", "于春晓", "negative", "worried", "statement-non-opinion", "")
    + row("32_000_005", "于春晓", "negative", "sadness", "statement-non-opinion", "  你有没有想过我的感受 ")
    + row("32_001_000", "戴娜", "positive", "grateful", "thanking", "谢谢你")
)


def write_cped(root: Path) -> Path:
    folder = root / "cped"
    (folder / "raw").mkdir(parents=True)
    (folder / "raw" / "valid_split.csv").write_bytes(VALID_CSV.encode("utf-8-sig"))
    return folder


def test_load_maps_emotions_and_context(tmp_path: Path) -> None:
    records = {record.id: record for record in SOURCE.load(write_cped(tmp_path))}

    # The empty utterance 32_000_004 is neither a record nor context.
    assert sorted(records) == [
        "cped:valid:32_000_000",
        "cped:valid:32_000_001",
        "cped:valid:32_000_002",
        "cped:valid:32_000_003",
        "cped:valid:32_000_005",
        "cped:valid:32_001_000",
    ]
    first = records["cped:valid:32_000_000"]
    assert (first.emotion, first.weight, first.context) == ("calm", 1.0, ())
    assert (first.source, first.tier, first.origin_split, first.lang) == ("cped", "train", "valid", "zh")

    anger = records["cped:valid:32_000_001"]
    assert anger.emotion is None
    assert anger.emotion_among == ("frustrated", "angry", "abusive")
    assert anger.escalate is None
    # Seen by 戴娜: 于春晓's line is the other party ("agent").
    assert anger.context == (Turn("agent", "撞车了吗"),)

    assert not records["cped:valid:32_000_002"].has_emotion  # depress: ambiguous
    assert not records["cped:valid:32_000_003"].has_emotion  # relaxed but ironic: contradictory

    sadness = records["cped:valid:32_000_005"]
    assert sadness.text == "你有没有想过我的感受"
    assert sadness.emotion_among == ("calm", "frustrated")
    # Seen by 于春晓: her own lines are "customer", 戴娜's are "agent"; the empty line is left out.
    assert sadness.context == (
        Turn("customer", "撞车了吗"),
        Turn("agent", "你这人没皮没脸 比鬼还难缠"),
        Turn("agent", "好意思吗你"),
        Turn("customer", "想什么办法 我还干什么活"),
    )

    grateful = records["cped:valid:32_001_000"]
    assert (grateful.emotion, grateful.weight, grateful.context) == ("calm", 0.5, ())
    assert grateful.conversation_id != sadness.conversation_id
    assert {records[key].conversation_id for key in records if key.startswith("cped:valid:32_000")} == {
        sadness.conversation_id
    }


def test_emotion_evidence_rejects_an_unknown_emotion() -> None:
    with pytest.raises(ValueError, match="unknown emotion 'furious'"):
        emotion_evidence("furious", "question")


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    (tmp_path / "cped" / "raw").mkdir(parents=True)

    with pytest.raises(SourceNotFoundError, match=r"cped/raw/valid_split\.csv"):
        SOURCE.load(tmp_path / "cped")


@pytest.mark.datasets
def test_real_files(data_root: Path) -> None:
    records = SOURCE.load(data_root / SOURCE.name)

    # shared/datasets/cped/SOURCE.md: 11,137 utterances in 934 dialogues, none empty.
    assert len(records) == 11137
    assert len({record.conversation_id for record in records}) == 934
    assert len({record.id for record in records}) == len(records)
    assert sum(not record.context for record in records) == 934  # only a dialogue's first utterance has none
    counts = Counter(record.emotion_key for record in records)
    assert counts["frustrated|angry|abusive"] == 1608 + 198  # anger + disgust
    assert 3000 < sum(record.emotion == "calm" and record.weight == 1.0 for record in records) <= 3126  # neutral
    assert counts["calm|frustrated"] <= 274 + 117 + 661  # sadness + fear + worried
    assert counts["-"] >= 1446 + 1702 + 313  # depress + negative-other + astonished
    assert all(record.escalate is None for record in records)
    speakers = {turn.speaker for record in records for turn in record.context}
    assert speakers == {"customer", "agent"}
