"""STC-3 DCH adapter: customer turns with helpdesk context, weak escalation from dialogue satisfaction."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from tonewatch.data.records import Turn
from tonewatch.data.sources.base import SourceNotFoundError
from tonewatch.data.sources.stc3_dch import SOURCE, final_escalation


def annotations(satisfaction: list[int]) -> list[dict]:
    return [
        {"quality": {"A": score, "S": score, "E": 0}, "nugget": ["CNUG0", "HNaN", "CNaN"]} for score in satisfaction
    ]


def turn(sender: str, *utterances: str) -> dict:
    return {"sender": sender, "utterances": list(utterances)}


DIALOGUES = [
    {  # mean S = -4/3: dissatisfied
        "annotations": annotations([-2, -1, -1]),
        "id": "3701508312609222",
        "turns": [
            turn("customer", "用了一个月的手机,死机重启 @vivo客服"),
            turn("helpdesk", "", "很抱歉,给您带来不便,请您私信提供联系方式."),
            turn("customer", "光说不练假把式 ", "你们的客服来了电话也什么都解决不了！"),
            turn("helpdesk", ""),
            turn("customer", "拉倒吧！我明天直接去工信部投诉！"),
        ],
    },
    {  # mean S = +1: satisfied
        "annotations": annotations([1, 1, 1]),
        "id": "3550980651676652",
        "turns": [
            turn("customer", "请问我的91手机助手为什么总是安装失败呢？"),
            turn("helpdesk", "请通过cydia安装下appsync补丁."),
            turn("customer", "好的,已经成功了,谢谢您了！"),
            turn("helpdesk", "不客气哦"),
        ],
    },
    {  # mean S = 0: neither
        "annotations": annotations([-1, 0, 1]),
        "id": "4005742627402909",
        "turns": [turn("customer", "网络时好时坏的"), turn("helpdesk", "请问您目前是否可以正常使用？")],
    },
    {  # mean S = -1 exactly, and the last customer turn is empty
        "annotations": annotations([-1, -1, -1]),
        "id": "3846712298416266",
        "turns": [
            turn("customer", "关注一年也不改善,你们应当承担客户损失！"),
            turn("helpdesk", "我们会推进此方面的建设工作."),
            turn("customer", ""),
        ],
    },
]


def write_stc3(root: Path) -> Path:
    folder = root / "stc3_dch"
    (folder / "raw").mkdir(parents=True)
    # Like the real file: a pretty-printed JSON array, Chinese unescaped, no BOM.
    text = json.dumps(DIALOGUES, ensure_ascii=False, indent=2)
    (folder / "raw" / "train_data_cn.json").write_text(text, encoding="utf-8")
    return folder


def test_load_gives_customer_turns_with_context_and_weak_escalation(tmp_path: Path) -> None:
    records = {record.id: record for record in SOURCE.load(write_stc3(tmp_path))}

    assert sorted(records) == [
        "stc3_dch:train:3550980651676652:0",
        "stc3_dch:train:3550980651676652:2",
        "stc3_dch:train:3701508312609222:0",
        "stc3_dch:train:3701508312609222:2",
        "stc3_dch:train:3701508312609222:4",
        "stc3_dch:train:3846712298416266:0",
        "stc3_dch:train:4005742627402909:0",
    ]

    # Dissatisfied: only the last customer turn says escalate, with a low weight and no emotion.
    first = records["stc3_dch:train:3701508312609222:0"]
    assert (first.escalate, first.has_emotion, first.context) == (None, False, ())
    middle = records["stc3_dch:train:3701508312609222:2"]
    assert middle.text == "光说不练假把式\n你们的客服来了电话也什么都解决不了！"
    assert middle.escalate is None
    last = records["stc3_dch:train:3701508312609222:4"]
    assert last.escalate is True
    assert last.weight == 0.5
    assert not last.has_emotion
    assert last.context == (
        Turn("customer", "用了一个月的手机,死机重启 @vivo客服"),
        Turn("agent", "很抱歉,给您带来不便,请您私信提供联系方式."),
        Turn("customer", "光说不练假把式\n你们的客服来了电话也什么都解决不了！"),
    )
    assert {first.conversation_id, middle.conversation_id, last.conversation_id} == {"stc3_dch:3701508312609222"}
    assert (last.origin_split, last.tier, last.source, last.lang) == ("train", "train", "stc3_dch", "zh")
    assert last.meta["mean_satisfaction"] == "-1.333"

    # Satisfied: the last customer turn is not an escalation and not hostile.
    thanks = records["stc3_dch:train:3550980651676652:2"]
    assert thanks.escalate is False
    assert thanks.emotion_among == ("calm", "frustrated")
    assert thanks.weight == 0.5
    assert records["stc3_dch:train:3550980651676652:0"].escalate is None

    # In between: nothing.
    neutral = records["stc3_dch:train:4005742627402909:0"]
    assert (neutral.escalate, neutral.has_emotion) == (None, False)

    # The empty last customer turn is skipped; the label goes to the last non-empty one.
    assert records["stc3_dch:train:3846712298416266:0"].escalate is True


@pytest.mark.parametrize(
    ("mean_satisfaction", "expected"),
    [(-2.0, True), (-1.0, True), (-0.99, None), (0.0, None), (0.49, None), (0.5, False), (2.0, False), (None, None)],
)
def test_final_escalation_thresholds(mean_satisfaction: float | None, expected: bool | None) -> None:
    assert final_escalation(mean_satisfaction) is expected


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    (tmp_path / "stc3_dch" / "raw").mkdir(parents=True)

    with pytest.raises(SourceNotFoundError, match=r"stc3_dch/raw/train_data_cn\.json"):
        SOURCE.load(tmp_path / "stc3_dch")


@pytest.mark.datasets
def test_real_files(data_root: Path) -> None:
    records = SOURCE.load(data_root / SOURCE.name)

    # shared/datasets/stc3_dch/SOURCE.md: 3,700 dialogues, 8,500 customer turns (63 of them empty);
    # mean S <= -1: 347 dialogues, >= 0.5: 502.
    assert len({record.conversation_id for record in records}) == 3700
    assert 8400 < len(records) <= 8500
    assert len({record.id for record in records}) == len(records)
    assert Counter(record.escalate for record in records) == {None: len(records) - 849, True: 347, False: 502}
    labelled_per_dialogue = Counter(record.conversation_id for record in records if record.escalate is not None)
    assert max(labelled_per_dialogue.values()) == 1
    assert all(record.weight == 0.5 for record in records if record.escalate is not None)
    assert {turn.speaker for record in records for turn in record.context} == {"customer", "agent"}
    assert 3600 < sum(not record.context for record in records) <= 3700  # every dialogue opens with the customer
