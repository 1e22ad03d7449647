from __future__ import annotations

import re
from collections import Counter

import pytest

from tonewatch.data.sources import ru_goemotions
from tonewatch.data.sources.base import SourceNotFoundError

GOEMOTIONS_NAMES = (
    "admiration",
    "amusement",
    "anger",
    "annoyance",
    "approval",
    "caring",
    "confusion",
    "curiosity",
    "desire",
    "disappointment",
    "disapproval",
    "disgust",
    "embarrassment",
    "excitement",
    "fear",
    "gratitude",
    "grief",
    "joy",
    "love",
    "nervousness",
    "optimism",
    "pride",
    "realization",
    "relief",
    "remorse",
    "sadness",
    "surprise",
    "neutral",
)
ID_TO_LABEL = "".join(f"{index}: {name}\n" for index, name in enumerate(GOEMOTIONS_NAMES))

# The real file's format: CSV ``ru_text,text,labels,id``, numpy-style id lists padded with spaces.
VALIDATION_CSV = """ru_text,text,labels,id
"Это в Новом Орлеане?? Похоже на то.","Is this in New Orleans?? Looks like it.",[27],edgurhb
Почему никто даже не отреагировал?,How come nobody even reacted?,[3],eaaaaa1
Действительно отстойно.,Really sucks.,[9],eaaaaa2
Чистый мудак.,Pure asshole.,[ 2  3],eaaaaa3
СПАСИБО [ИМЯ],THANKS [NAME],[ 2 15],eaaaaa4
"Да, похоже на то.","Yeah, looks like it.",[ 3 27],eaaaaa5
Мне никогда в жизни не было так грустно!,I've never been this sad in my life!,[25],edcu99z
"Разочарован и грустно, увы.","Disappointed and sad, alas.",[ 9 25],eaaaaa6
Как вы думаете?,What do you think?,[7],eaaaaa7
Какая чушь!,What bullshit!,[ 3 26],eaaaaa8
Мне это нравится!,I love this!,[18],edc7lxz
Мне это нравится!,I love it!,[0],efed341
  ,Empty translation,[27],eaaaaa9
"""


def write_folder(root, *, labels=ID_TO_LABEL, rows=VALIDATION_CSV):
    folder = root / "ru_goemotions"
    (folder / "raw").mkdir(parents=True)
    if labels is not None:
        (folder / "raw" / "id_to_label.yaml").write_text(labels, encoding="utf-8")
    if rows is not None:
        (folder / "raw" / "ru-go-emotions-simplified-validation.csv").write_text(rows, encoding="utf-8")
    return folder


def test_fixture_maps_labels_and_combinations(tmp_path, caplog):
    records = ru_goemotions.SOURCE.load(write_folder(tmp_path))
    assert [(record.id, record.emotion_key) for record in records] == [
        ("ru_goemotions:validation:edgurhb", "calm"),  # neutral
        ("ru_goemotions:validation:eaaaaa1", "calm|frustrated"),  # annoyance (half of them read calm)
        ("ru_goemotions:validation:eaaaaa2", "calm|frustrated"),  # disappointment
        ("ru_goemotions:validation:eaaaaa3", "frustrated|angry|abusive"),  # anger + annoyance: the most severe
        ("ru_goemotions:validation:eaaaaa4", "-"),  # anger + gratitude: raters disagree, anything goes
        ("ru_goemotions:validation:eaaaaa5", "calm|frustrated"),  # annoyance + neutral: one of the two
        ("ru_goemotions:validation:edcu99z", "calm|frustrated"),  # sadness
        ("ru_goemotions:validation:eaaaaa6", "calm|frustrated"),  # disappointment + sadness
        ("ru_goemotions:validation:eaaaaa7", "-"),  # curiosity says nothing
        ("ru_goemotions:validation:eaaaaa8", "-"),  # annoyance + surprise: surprise may be anything
        ("ru_goemotions:validation:edc7lxz", "calm"),  # love, and admiration in its duplicate
    ]
    by_id = {record.id: record for record in records}
    assert by_id["ru_goemotions:validation:edgurhb"].emotion == "calm"
    assert by_id["ru_goemotions:validation:eaaaaa1"].emotion is None
    assert by_id["ru_goemotions:validation:eaaaaa3"].emotion is None
    assert by_id["ru_goemotions:validation:eaaaaa3"].meta == {
        "labels": "anger,annoyance",
        "en_text": "Pure asshole.",
        "duplicates": "0",
    }
    assert by_id["ru_goemotions:validation:edc7lxz"].meta["labels"] == "love,admiration"
    assert by_id["ru_goemotions:validation:edc7lxz"].meta["duplicates"] == "1"
    assert {record.origin_split for record in records} == {"validation"}
    assert all(record.escalate is None and record.lang == "ru" and record.tier == "train" for record in records)
    assert "skipped 1 rows with an empty text" in caplog.text


def test_duplicate_texts_take_the_union_of_their_rows(tmp_path):
    rows = "ru_text,text,labels,id\nСПАСИБО [ИМЯ],THANKS,[15],a1\nСПАСИБО [ИМЯ],THANKS [NAME],[ 2 15],a2\n"
    records = ru_goemotions.SOURCE.load(write_folder(tmp_path, rows=rows))
    assert [(record.id, record.has_emotion) for record in records] == [("ru_goemotions:validation:a1", False)]


def test_label_ids_come_from_the_label_file(tmp_path):
    swapped = ID_TO_LABEL.replace("3: annoyance", "3: neutral").replace("27: neutral", "27: annoyance")
    records = ru_goemotions.SOURCE.load(write_folder(tmp_path, labels=swapped))
    by_id = {record.id: record for record in records}
    assert by_id["ru_goemotions:validation:edgurhb"].emotion_key == "calm|frustrated"
    assert by_id["ru_goemotions:validation:eaaaaa1"].emotion == "calm"


def test_unknown_labels_are_errors(tmp_path):
    with pytest.raises(ValueError, match="'bliss' has no mapping"):
        ru_goemotions.parse_label_names(["0: bliss"])
    with pytest.raises(ValueError, match="expected '<id>: <name>'"):
        ru_goemotions.parse_label_names(["admiration"])
    rows = "ru_text,text,labels,id\nТекст,Text,[28],a1\n"
    with pytest.raises(ValueError, match="unknown label id '28'"):
        ru_goemotions.SOURCE.load(write_folder(tmp_path, rows=rows))


@pytest.mark.parametrize(
    ("missing", "name"), [("labels", "id_to_label.yaml"), ("rows", "ru-go-emotions-simplified-validation.csv")]
)
def test_missing_file_names_the_path(tmp_path, missing, name):
    folder = write_folder(tmp_path, **{missing: None})
    with pytest.raises(SourceNotFoundError, match=re.escape(str(folder / "raw" / name))):
        ru_goemotions.SOURCE.load(folder)


@pytest.mark.datasets
def test_real_folder(data_root):
    records = ru_goemotions.SOURCE.load(data_root / ru_goemotions.SOURCE.name)
    # SOURCE.md: 5,426 validation rows; a few translations repeat ("Спасибо!").
    assert 5380 <= len(records) <= 5426
    assert len({record.id for record in records}) == len(records)
    assert {record.origin_split for record in records} == {"validation"}
    counts = Counter(record.emotion_key for record in records)
    # Neutral (1,766 rows) and the positive labels make calm the bulk; annoyance 303 + disappointment 163 rows
    # join sadness, fear and the like as calm or frustrated; anger (without a calm label beside it) is not calm.
    assert 3000 <= counts["calm"] <= 3500
    assert 650 <= counts["calm|frustrated"] <= 850
    assert 150 <= counts["frustrated|angry|abusive"] <= 220
    assert set(counts) == {"calm", "calm|frustrated", "frustrated|angry|abusive", "-"}
