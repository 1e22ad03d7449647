from __future__ import annotations

import re
from collections import Counter

import pytest

from tonewatch.data.sources import cedr
from tonewatch.data.sources.base import SourceNotFoundError, text_group_id

# The real file's format: CSV ``text,labels,source``, numpy-style id lists, ``[]`` = no emotion.
TRAIN_CSV = """text,labels,source
Суровый гималайский медведь .,[],lj
"Так, обнаружено несколько проблем с дисплеем.",[],lenta
Забавно как люди в возрасте удивляются входящим звонкам на мобильник),[0],twitter
"Все они , к сожалению , для школьников .",[1],lj
Добавьте муку и перемешайте - вы сами удивитесь !,[2],lj
"Мы в ужасе от того, что на этот раз был убит человек.",[3],lenta
ну ты и хуйлыга( НЕ ЖОНА ТЫ МНЕ БОЛЕ!,[4],twitter
Разгневанная мать ученика обратилась к местным властям.,[4],lenta
Хотя что душой кривить все уже достало(((,[1 0],twitter
Какой то я злой стал и все меня раздражает(,[4 1],twitter
"Он разозлился и ушёл, а я осталась разбирать коробки.",[4],lj
"Ура, каникулы, но злость берет",[0 4],twitter
   ,[0],twitter
Злоумышленник был убит.,[],lenta
Злоумышленник был убит.,[],lenta
"""


def write_train(root, content=TRAIN_CSV):
    path = root / "cedr" / "raw" / "cedr-main-train.csv"
    path.parent.mkdir(parents=True)
    path.write_text(content, encoding="utf-8")
    return root / "cedr"


def test_fixture_maps_each_label_onto_the_scheme(tmp_path, caplog):
    records = cedr.SOURCE.load(write_train(tmp_path))
    by_id = {record.id: record for record in records}
    assert [(record.id, record.emotion_key) for record in records] == [
        ("cedr:train:0", "calm"),  # no emotion
        ("cedr:train:1", "calm"),  # no emotion, news
        ("cedr:train:2", "calm"),  # joy
        ("cedr:train:3", "calm|frustrated"),  # sadness
        ("cedr:train:4", "-"),  # surprise says nothing
        ("cedr:train:5", "calm|frustrated"),  # fear
        ("cedr:train:6", "frustrated|angry|abusive"),  # anger may insult a person
        ("cedr:train:7", "-"),  # anger reported in a news sentence
        ("cedr:train:8", "calm|frustrated"),  # sadness + joy: union
        ("cedr:train:9", "frustrated|angry|abusive"),  # anger + sadness: union
        ("cedr:train:10", "-"),  # anger in a blog sentence says nothing (half of them are told calmly)
        ("cedr:train:11", "-"),  # joy + anger conflict: all four
        ("cedr:train:13", "calm"),  # row 12 is empty; row 14 duplicates row 13
    ]
    assert by_id["cedr:train:0"].emotion == "calm" and by_id["cedr:train:0"].emotion_among == ()
    assert by_id["cedr:train:6"].emotion is None
    assert all(record.escalate is None for record in records)
    assert {record.origin_split for record in records} == {"train"}
    assert {record.lang for record in records} == {"ru"} and {record.tier for record in records} == {"train"}
    assert by_id["cedr:train:1"].weight == cedr.NEWS_WEIGHT and by_id["cedr:train:0"].weight == 1.0
    assert by_id["cedr:train:13"].meta["duplicates"] == "1"
    assert by_id["cedr:train:9"].meta["labels"] == "anger,sadness"
    assert "skipped 1 rows with an empty text" in caplog.text


def test_duplicates_merge_their_evidence(tmp_path):
    content = "text,labels,source\nОпять двадцать пять,[0],twitter\nОпять двадцать пять,[1],twitter\n"
    records = cedr.SOURCE.load(write_train(tmp_path, content))
    assert [(record.id, record.emotion_among) for record in records] == [("cedr:train:0", ("calm", "frustrated"))]
    assert records[0].conversation_id == text_group_id("cedr", "Опять двадцать пять")


def test_unknown_label_id_is_an_error(tmp_path):
    folder = write_train(tmp_path, "text,labels,source\nТекст,[5],lj\n")
    with pytest.raises(ValueError, match="unknown label id '5'"):
        cedr.SOURCE.load(folder)


def test_missing_file_names_the_path(tmp_path):
    (tmp_path / "cedr").mkdir()
    with pytest.raises(SourceNotFoundError, match=re.escape(str(tmp_path / "cedr" / "raw" / "cedr-main-train.csv"))):
        cedr.SOURCE.load(tmp_path / "cedr")


@pytest.mark.datasets
def test_real_folder(data_root):
    records = cedr.SOURCE.load(data_root / cedr.SOURCE.name)
    # SOURCE.md: 7,528 train rows, 28 of them repeat an earlier text.
    assert 7400 <= len(records) <= 7528
    assert len({record.id for record in records}) == len(records)
    assert {record.origin_split for record in records} == {"train"}
    counts = Counter(record.emotion_key for record in records)
    # 3,043 no-emotion + ~1,500 joy-only rows are calm; anger (411 rows) is the rare class, and only the twitter
    # sentences among them say "not calm" (news and LiveJournal say nothing).
    assert 4300 <= counts["calm"] <= 4700
    assert 1800 <= counts["calm|frustrated"] <= 2100
    assert 130 <= counts["frustrated|angry|abusive"] <= 170
    assert set(counts) == {"calm", "calm|frustrated", "frustrated|angry|abusive", "-"}
    assert all(record.escalate is None for record in records)
    assert {record.weight for record in records if record.meta["text_source"] == "lenta"} == {cedr.NEWS_WEIGHT}
