from __future__ import annotations

import json
from collections import Counter

import pytest

from tonewatch.data.sources import callcenter
from tonewatch.data.sources.base import SourceNotFoundError

ZH = {
    "id": "zh-train-0001",
    "lang": "zh",
    "domain": "telecom",
    "channel": "voice",
    "turns": [
        {"speaker": "agent", "text": "您好 请问有什么可以帮您"},
        {"speaker": "customer", "text": "我都第三次打电话了", "emotion": "frustrated", "escalate": False},
        {"speaker": "customer", "text": "傻X客服", "emotion": "abusive", "escalate": True},
    ],
}
RU = {
    "id": "ru-train-0001",
    "lang": "ru",
    "domain": "bank",
    "channel": "chat",
    "turns": [{"speaker": "customer", "text": "Подскажите, пожалуйста", "emotion": "calm", "escalate": False}],
}


def write(path, conversations):
    path.write_text("".join(json.dumps(c, ensure_ascii=False) + "\n" for c in conversations), encoding="utf-8")


def test_train_fixture_maps_every_customer_turn(tmp_path):
    write(tmp_path / "zh.jsonl", [ZH])
    write(tmp_path / "ru.jsonl", [RU])
    records = callcenter.load_train(tmp_path)
    assert [(r.id, r.lang, r.emotion, r.escalate) for r in records] == [
        ("zh-train-0001:1", "zh", "frustrated", False),
        ("zh-train-0001:2", "zh", "abusive", True),
        ("ru-train-0001:0", "ru", "calm", False),
    ]
    assert all(r.source == "callcenter_train" and r.tier == "train" for r in records)
    assert records[1].context[-1].text == "我都第三次打电话了"
    assert records[0].meta == {"domain": "telecom", "channel": "voice"}


def test_dev_is_eval_tier(tmp_path):
    write(tmp_path / "dialogues.jsonl", [ZH, RU])
    records = callcenter.load_dev(tmp_path)
    assert {r.tier for r in records} == {"eval"} and {r.source for r in records} == {"callcenter_dev"}
    assert callcenter.DEV_SOURCE.tier == "eval" and callcenter.TRAIN_SOURCE.tier == "train"


def test_missing_file_names_the_path(tmp_path):
    with pytest.raises(SourceNotFoundError, match=r"zh\.jsonl"):
        callcenter.load_train(tmp_path)


def test_packaged_copies_have_the_documented_size():
    dev = callcenter.load_dev(callcenter.PACKAGE_DATA / "callcenter_dev")
    train = callcenter.load_train(callcenter.PACKAGE_DATA / "callcenter_train")
    assert len({r.conversation_id for r in dev}) == 200
    assert len({r.conversation_id for r in train}) >= 300
    assert {r.conversation_id for r in dev}.isdisjoint({r.conversation_id for r in train})
    assert Counter(r.lang for r in dev).keys() == {"zh", "ru"}
    assert all(r.emotion is not None and r.escalate is not None for r in dev + train)


def test_packaged_copies_match_the_shared_originals(data_root):
    for name in ("callcenter_dev", "callcenter_train"):
        for original in sorted((data_root / name).glob("*.jsonl")):
            copy = callcenter.PACKAGE_DATA / name / original.name
            assert copy.read_bytes() == original.read_bytes(), f"{copy} differs from {original}"
