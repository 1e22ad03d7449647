from __future__ import annotations

import re
from collections import Counter

import pytest

from tonewatch.data.sources import sentirueval
from tonewatch.data.sources.base import SourceNotFoundError

BANKS = ("sberbank", "vtb", "gazprom", "alfabank", "bankmoskvy", "raiffeisen", "uralsib", "rshb")
TELECOMS = ("beeline", "mts", "megafon", "tele2", "rostelecom", "komstar", "skylink")


def dump(table: str, companies: tuple[str, ...], rows: list[tuple[int, str, dict[str, str]]]) -> str:
    """A phpMyAdmin XML dump shaped like the real files (``text`` is already XML-escaped)."""
    tables = "".join(
        f'        <table name="{table}">\n'
        f'            <column name="id">{row_id}</column>\n'
        f'            <column name="twitid">49236758615663{row_id:04d}</column>\n'
        f'            <column name="date">1406224554</column>\n'
        f'            <column name="text">{text}</column>\n'
        + "".join(f'            <column name="{c}">{values.get(c, "NULL")}</column>\n' for c in companies)
        + "        </table>\n"
        for row_id, text, values in rows
    )
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n<!--\n- phpMyAdmin XML Dump\n- version 4.0.4.1\n-->\n\n'
        '<pma_xml_export version="1.0" xmlns:pma="http://www.phpmyadmin.net/some_doc_url/">\n'
        "    <pma:structure_schemas>\n"
        '        <pma:database name="SentiRuEval-16" collation="utf8_general_ci" charset="utf8">\n'
        f'            <pma:table name="{table}">\n                CREATE TABLE `{table}` (...);\n'
        "            </pma:table>\n        </pma:database>\n    </pma:structure_schemas>\n\n"
        f'    <database name="SentiRuEval-16">\n        <!-- Таблица {table} -->\n{tables}    </database>\n'
        "</pma_xml_export>\n"
    )


BANK_ROWS = [
    (1, "http://t.co/YEVHuvVGA1 Взять кредит тюмень альфа банк", {"alfabank": "0"}),
    (2, "Сбербанк Онлайн лучший интернет-банк в России", {"sberbank": "1", "vtb": "0"}),
    (3, "США ввели санкции против ВТБ, Банка Москвы и Россельхозбанка", {"vtb": "-1", "bankmoskvy": "-1"}),
    (4, "@sberbank УРОДЫ ДЕБИЛЫ", {"sberbank": "-1"}),
    (5, "Похоже завтра Сбербанк и ВТБ присоединяется", {"sberbank": "+-", "vtb": "+-"}),
    (6, "#юмор спящий сбербанк верит неожиданному быку", {"sberbank": "--"}),
    (7, "МТС лучше, а Сбер хуже", {"sberbank": "-1", "vtb": "1"}),
    (8, "&amp;amp;laquo;Россельхозбанк&amp;amp;raquo; просит поддержки", {"rshb": "0"}),
    (9, "   ", {"sberbank": "0"}),
    (10, "Сбербанк Онлайн лучший интернет-банк в России", {"sberbank": "1"}),
]
TELECOM_ROWS = [(1, "@ru_mts Купил 4g интернет от МТС) Летает...!)))", {"mts": "1"})]


def write_folder(root, *, banks=True, telecoms=True, bank_rows=BANK_ROWS):
    folder = root / "sentirueval"
    for domain, table, companies, rows, wanted in (
        ("banks", "bank_train", BANKS, bank_rows, banks),
        ("telecoms", "ttk_train_noname", TELECOMS, TELECOM_ROWS, telecoms),
    ):
        path = folder / "raw" / "2015" / f"SentiRuEval-2015-{domain}" / "train.xml"
        path.parent.mkdir(parents=True)
        if wanted:
            path.write_text(dump(table, companies, rows), encoding="utf-8")
    return folder


def test_fixture_maps_tweets(tmp_path, caplog):
    records = sentirueval.SOURCE.load(write_folder(tmp_path))
    got = [(record.id, record.emotion_key, record.meta["sentiment"]) for record in records]
    assert got == [
        ("sentirueval:banks:train:1", "calm", "neutral"),
        ("sentirueval:banks:train:2", "calm", "positive"),
        # Negative toward a company: calm news or abuse alike, so missing.
        ("sentirueval:banks:train:3", "-", "negative"),
        ("sentirueval:banks:train:4", "-", "negative"),
        ("sentirueval:banks:train:5", "-", "mixed"),
        ("sentirueval:banks:train:6", "-", "irrelevant"),
        ("sentirueval:banks:train:7", "-", "mixed"),
        ("sentirueval:banks:train:8", "calm", "neutral"),
        # Row 9 is blank; row 10 repeats row 2's text.
        ("sentirueval:telecoms:train:1", "calm", "positive"),
    ]
    by_id = {record.id: record for record in records}
    assert by_id["sentirueval:banks:train:2"].emotion == "calm"
    assert by_id["sentirueval:banks:train:2"].meta["companies"] == "sberbank=1;vtb=0"
    assert by_id["sentirueval:banks:train:3"].meta["companies"] == "vtb=-1;bankmoskvy=-1"
    # Text as in the dump after XML parsing: the doubly escaped HTML entities stay.
    assert by_id["sentirueval:banks:train:8"].text == "&amp;laquo;Россельхозбанк&amp;raquo; просит поддержки"
    assert {record.origin_split for record in records} == {"train"}
    assert all(record.tier == "eval" and record.lang == "ru" and record.escalate is None for record in records)
    assert "skipped 1 rows with an empty text" in caplog.text


def test_unknown_sentiment_value_is_an_error(tmp_path):
    folder = write_folder(tmp_path, bank_rows=[(1, "Сбербанк", {"sberbank": "2"})])
    with pytest.raises(ValueError, match="unknown sentiment values"):
        sentirueval.SOURCE.load(folder)


def test_missing_file_names_the_path(tmp_path):
    folder = write_folder(tmp_path, telecoms=False)
    telecoms_file = folder / sentirueval.SPLIT_FILES["train", "telecoms"]
    with pytest.raises(SourceNotFoundError, match=re.escape(str(telecoms_file))):
        sentirueval.SOURCE.load(folder)


@pytest.mark.datasets
def test_real_folder(data_root):
    records = sentirueval.SOURCE.load(data_root / sentirueval.SOURCE.name)
    assert Counter(record.meta["domain"] for record in records) == {"banks": 5000, "telecoms": 5000}
    assert len({record.id for record in records}) == len(records)
    sentiment = Counter((record.meta["domain"], record.meta["sentiment"]) for record in records)
    # SOURCE.md: banks 1,066 negative / 3,425 neutral / 355 positive; telecoms 1,598 / 2,245 / 920.
    assert 1000 <= sentiment["banks", "negative"] <= 1100 and 3350 <= sentiment["banks", "neutral"] <= 3450
    assert 1550 <= sentiment["telecoms", "negative"] <= 1650 and 850 <= sentiment["telecoms", "positive"] <= 950
    counts = Counter(record.emotion_key for record in records)
    assert set(counts) == {"calm", "-"}
    assert 6800 <= counts["calm"] <= 7050
    assert all(record.emotion == "calm" for record in records if record.meta["sentiment"] in ("neutral", "positive"))
