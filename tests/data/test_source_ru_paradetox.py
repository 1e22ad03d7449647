from __future__ import annotations

import re
from collections import Counter

import pytest

from tonewatch.data.records import NOT_ABUSIVE
from tonewatch.data.sources import ru_paradetox
from tonewatch.data.sources.base import SourceNotFoundError

# The real files' format: TSV with CSV quoting (a quoted paraphrase may span lines), empty trailing cells.
TRAIN_TSV = (
    "index\ttoxic_comment\tneutral_comment1\tneutral_comment2\tneutral_comment3\n"
    "0\tи,чё,блядь где этот херой был до этого?\tНу и где этот герой был?\tГде этот герой был до этого?\t\n"
    "1\tО, а есть деанон этого петуха?\tО, а есть деанон\t\t\n"
    "24\tнадо быть быдлом чтобы у стариков отбирать.твари.\t"
    '"Надо быть бесчеловечными ,\n.плохие люди"\tО, а есть деанон\t\n'
    "25\tВалентин ты опять таблетки не выпил\tВалентин ты опять таблетки не выпил\t\t\n"
    "26\tсука блять уши болят от очков((\tУши болят от очков\tУши болят от очков\t\n"
    "27\t   \tПустой токсичный текст\t\t\n"
)
DEV_TSV = (
    "toxic_comment\tneutral_comment1\tneutral_comment2\tneutral_comment3\n"
    "пиздеж! температуры хватит чтобы её расплавить к херам..\tВраньё! Температуры хватит\t\t\n"
    "а ты чмо там был.ты вообще служил.гандон\tА ты там был? Ты вообще служил?\t\t\n"
)
TOXIC = ("frustrated", "angry", "abusive")


def write_folder(root, files):
    folder = root / "ru_paradetox"
    (folder / "raw").mkdir(parents=True)
    for name, content in files.items():
        (folder / "raw" / name).write_text(content, encoding="utf-8")
    return folder


def test_fixture_maps_pairs(tmp_path, caplog):
    records = ru_paradetox.SOURCE.load(write_folder(tmp_path, {"train.tsv": TRAIN_TSV, "dev.tsv": DEV_TSV}))
    got = [(record.id, record.emotion, record.emotion_among, record.conversation_id) for record in records]
    assert got == [
        ("ru_paradetox:train:0:toxic", None, TOXIC, "ru_paradetox:train:0"),
        ("ru_paradetox:train:0:neutral_comment1", None, NOT_ABUSIVE, "ru_paradetox:train:0"),
        ("ru_paradetox:train:0:neutral_comment2", None, NOT_ABUSIVE, "ru_paradetox:train:0"),
        # Rows 1 and 24 share the paraphrase "О, а есть деанон": one record, one conversation.
        ("ru_paradetox:train:1:toxic", None, TOXIC, "ru_paradetox:train:1"),
        ("ru_paradetox:train:1:neutral_comment1", None, NOT_ABUSIVE, "ru_paradetox:train:1"),
        ("ru_paradetox:train:24:toxic", None, TOXIC, "ru_paradetox:train:1"),
        ("ru_paradetox:train:24:neutral_comment1", None, NOT_ABUSIVE, "ru_paradetox:train:1"),
        # A sentence kept unchanged is on both sides: conflicting evidence, missing.
        ("ru_paradetox:train:25:toxic", None, (), "ru_paradetox:train:25"),
        ("ru_paradetox:train:26:toxic", None, TOXIC, "ru_paradetox:train:26"),
        ("ru_paradetox:train:26:neutral_comment1", None, NOT_ABUSIVE, "ru_paradetox:train:26"),
        # The toxic cell of row 27 is blank: skipped, its paraphrase kept.
        ("ru_paradetox:train:27:neutral_comment1", None, NOT_ABUSIVE, "ru_paradetox:train:27"),
        ("ru_paradetox:dev:0:toxic", None, TOXIC, "ru_paradetox:dev:0"),
        ("ru_paradetox:dev:0:neutral_comment1", None, NOT_ABUSIVE, "ru_paradetox:dev:0"),
        ("ru_paradetox:dev:1:toxic", None, TOXIC, "ru_paradetox:dev:1"),
        ("ru_paradetox:dev:1:neutral_comment1", None, NOT_ABUSIVE, "ru_paradetox:dev:1"),
    ]
    by_id = {record.id: record for record in records}
    # The quoted, two-line paraphrase is one text, kept as is.
    assert by_id["ru_paradetox:train:24:neutral_comment1"].text == "Надо быть бесчеловечными ,\n.плохие люди"
    assert by_id["ru_paradetox:train:25:toxic"].meta["side"] == "both"
    assert [record.origin_split for record in records] == ["train"] * 11 + ["dev"] * 4
    assert all(record.escalate is None and record.lang == "ru" and record.tier == "train" for record in records)
    assert "skipped 1 rows with an empty toxic sentence" in caplog.text


def test_missing_file_names_the_path(tmp_path):
    folder = write_folder(tmp_path, {"train.tsv": TRAIN_TSV})
    with pytest.raises(SourceNotFoundError, match=re.escape(str(folder / "raw" / "dev.tsv"))):
        ru_paradetox.SOURCE.load(folder)


@pytest.mark.datasets
def test_real_folder(data_root):
    records = ru_paradetox.SOURCE.load(data_root / ru_paradetox.SOURCE.name)
    assert len({record.id for record in records}) == len(records)
    toxic_rows = Counter(record.origin_split for record in records if record.id.endswith(":toxic"))
    # 6,948 train rows (the upstream README's count; SOURCE.md's 6,996 splits quoted multi-line cells) and 800 dev.
    assert toxic_rows == {"train": 6948, "dev": 800}
    counts = Counter((record.origin_split, record.emotion_key) for record in records)
    assert 10500 <= counts["train", "calm|frustrated|angry"] <= 11075
    assert 1000 <= counts["dev", "calm|frustrated|angry"] <= 1116
    assert counts["train", "-"] + counts["dev", "-"] < 50
    assert not any(record.emotion for record in records)
    # Every paraphrase shares a conversation with a toxic sentence.
    toxic_conversations = {record.conversation_id for record in records if record.meta["side"] == "toxic"}
    neutral = [record for record in records if record.meta["side"] == "neutral"]
    assert sum(record.conversation_id in toxic_conversations for record in neutral) >= 0.99 * len(neutral)
