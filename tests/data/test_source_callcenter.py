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


def test_train_reads_the_core_files_first_then_the_others_by_sorted_name(tmp_path):
    # The order is part of the result (seeded training, the ONNX export's calibration sample).
    def one(conversation_id, lang, text):
        turn = {"speaker": "customer", "text": text, "emotion": "calm", "escalate": False}
        return {"id": conversation_id, "lang": lang, "turns": [turn]}

    write(tmp_path / "zh-b.jsonl", [one("zh-b", "zh", "好的")])
    write(tmp_path / "ru.jsonl", [one("ru-core", "ru", "Спасибо")])
    write(tmp_path / "ru-a.jsonl", [one("ru-a", "ru", "Жду")])
    write(tmp_path / "zh.jsonl", [one("zh-core", "zh", "谢谢")])
    write(tmp_path / "zh-a.jsonl", [one("zh-a", "zh", "行")])
    (tmp_path / "notes.txt").write_text("not a conversation file", encoding="utf-8")

    records = callcenter.load_train(tmp_path)

    assert [r.conversation_id for r in records] == ["zh-core", "ru-core", "ru-a", "zh-a", "zh-b"]


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


def test_packaged_training_files_are_documented_and_share_no_conversation():
    folder = callcenter.PACKAGE_DATA / "callcenter_train"
    readme = (folder / "README.md").read_text(encoding="utf-8")
    seen: dict[str, str] = {}
    for path in sorted(folder.glob("*.jsonl")):
        assert f"`{path.name}`" in readme, f"{path.name} is not described in {folder / 'README.md'}"
        for line in path.read_text(encoding="utf-8").splitlines():
            conversation_id = json.loads(line)["id"]
            assert conversation_id not in seen, f"{conversation_id} is in {seen.get(conversation_id)} and {path.name}"
            seen[conversation_id] = path.name


@pytest.mark.datasets
def test_packaged_copies_match_the_shared_originals(data_root):
    for name in ("callcenter_dev", "callcenter_train"):
        for original in sorted((data_root / name).glob("*.jsonl")):
            copy = callcenter.PACKAGE_DATA / name / original.name
            assert copy.read_bytes() == original.read_bytes(), f"{copy} differs from {original}"
