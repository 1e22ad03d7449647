"""What the source adapters share: reading raw files, reading split files in order, grouping by text, evidence."""

from __future__ import annotations

import json
from functools import partial

import pytest

from tonewatch.data.records import Record
from tonewatch.data.sources.base import (
    SourceNotFoundError,
    group_rows_by_text,
    load_split_files,
    read_rows,
    warn_skipped,
)
from tonewatch.data.sources.evidence import Evidence, lookup_evidence


def _record(text: str, split: str, domain: str = "") -> Record:
    return Record(
        id=f"t:{split}:{domain}:{text}",
        text=text,
        lang="zh",
        source="t",
        tier="train",
        origin_split=split,
        meta={"domain": domain},
    )


def _map_rows(rows: list[dict[str, str]], split: str, domain: str = "") -> list[Record]:
    return [_record(row["text"], split, domain) for row in rows]


def test_warn_skipped_warns_only_when_rows_were_dropped(caplog):
    records = [_record("a", "train")]
    assert warn_skipped(records, 1, "t train", "empty rows") is records
    assert "skipped" not in caplog.text
    warn_skipped(records, 3, "t train", "empty rows")
    assert "t train: skipped 2 empty rows" in caplog.text


def test_read_rows_csv_drops_the_bom_and_keeps_an_unnamed_first_column(tmp_path):
    path = tmp_path / "train.csv"
    path.write_text("\ufeff,label,TEXT\n0,1,你就是个垃圾\n1,0,\"价格贵, 但是服务还行\"\n", encoding="utf-8")

    rows = read_rows(path, "csv")

    assert rows == [
        {"": "0", "label": "1", "TEXT": "你就是个垃圾"},
        {"": "1", "label": "0", "TEXT": "价格贵, 但是服务还行"},
    ]


def test_read_rows_tsv_reads_quoted_cells_that_span_lines(tmp_path):
    path = tmp_path / "dev.tsv"
    path.write_text(
        'toxic_comment\tneutral_comment1\nты чмо\t"Вы неправы,\nпо-моему"\nсука уши болят\tуши болят\n',
        encoding="utf-8",
    )

    rows = read_rows(path, "tsv")

    assert [row["neutral_comment1"] for row in rows] == ["Вы неправы,\nпо-моему", "уши болят"]
    assert rows[0]["toxic_comment"] == "ты чмо"


def test_read_rows_jsonl_skips_blank_lines_and_names_a_broken_line(tmp_path):
    path = tmp_path / "valid.txt"
    path.write_text('{"id": 0, "content": "好"}\n\n{"id": 1, "content": "Спасибо"}\n', encoding="utf-8")
    assert read_rows(path, "jsonl") == [{"id": 0, "content": "好"}, {"id": 1, "content": "Спасибо"}]

    path.write_text('{"id": 0, "content": "好"}\n\n{"id": 1, "content": \n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"valid\.txt:3: invalid JSON"):
        read_rows(path, "jsonl")


def test_read_rows_json_needs_an_array(tmp_path):
    path = tmp_path / "train.json"
    posts = [{"id": 1, "content": "气死我了"}, {"id": 2, "content": "Ну и ладно"}]
    path.write_text(json.dumps(posts, ensure_ascii=False), encoding="utf-8")
    assert [row["id"] for row in read_rows(path, "json")] == [1, 2]

    path.write_text(json.dumps({"id": 1, "content": "气死我了"}), encoding="utf-8")
    with pytest.raises(ValueError, match="expected a JSON array of rows, got dict"):
        read_rows(path, "json")


def test_read_rows_refuses_an_unknown_format_and_names_a_missing_file(tmp_path):
    path = tmp_path / "train.xml"
    path.write_text("<a/>", encoding="utf-8")
    with pytest.raises(ValueError, match="unknown row format 'xml'"):
        read_rows(path, "xml")
    with pytest.raises(SourceNotFoundError, match=r"missing data file: .*absent\.csv"):
        read_rows(tmp_path / "absent.csv", "csv")


def test_load_split_files_reads_every_split_in_order_and_needs_every_file(tmp_path):
    (tmp_path / "a.csv").write_text("text\n你好\nпривет\n", encoding="utf-8")
    (tmp_path / "b.csv").write_text("text\n再见\n", encoding="utf-8")

    records = load_split_files(tmp_path, {"train": "a.csv", "dev": "b.csv"}, _map_rows, "csv")
    assert [(r.text, r.origin_split) for r in records] == [("你好", "train"), ("привет", "train"), ("再见", "dev")]

    mapped = []

    def map_and_note(rows, split):
        mapped.append(split)
        return _map_rows(rows, split)

    # A missing file raises before any file is read, so a broken folder never yields half a source.
    with pytest.raises(SourceNotFoundError, match=r"missing\.csv"):
        load_split_files(tmp_path, {"train": "a.csv", "test": "missing.csv"}, map_and_note, "csv")
    assert mapped == []


def test_load_split_files_passes_the_parts_of_a_tuple_key(tmp_path):
    (tmp_path / "usual.tsv").write_text("text\n太慢了\n", encoding="utf-8")
    (tmp_path / "virus.tsv").write_text("text\nЖдём ответа\n", encoding="utf-8")
    split_files = {("eval", "usual"): "usual.tsv", ("train", "virus"): "virus.tsv"}

    records = load_split_files(tmp_path, split_files, _map_rows, "tsv")

    assert [(r.text, r.origin_split, r.meta["domain"]) for r in records] == [
        ("太慢了", "eval", "usual"),
        ("Ждём ответа", "train", "virus"),
    ]


def test_load_split_files_takes_a_reader_of_another_format_and_extra_options(tmp_path):
    (tmp_path / "a.txt").write_text("好\nнет\n", encoding="utf-8")

    def read_lines(path):
        return [{"text": line} for line in path.read_text(encoding="utf-8").split()]

    records = load_split_files(tmp_path, {"train": "a.txt"}, partial(_map_rows, domain="lines"), read_lines)

    assert [(r.text, r.meta["domain"]) for r in records] == [("好", "lines"), ("нет", "lines")]


def test_group_rows_by_text_keeps_first_appearance_order_and_counts_empty_texts(caplog):
    rows = [
        {"text": " Верните деньги "},
        {"text": "退款"},
        {"text": "  "},
        {"text": "Верните деньги"},
        {},
    ]

    groups = group_rows_by_text(rows, "text", "t train")

    assert groups == {"Верните деньги": [0, 3], "退款": [1]}
    assert "t train: skipped 2 rows with an empty text" in caplog.text


def test_lookup_evidence_names_the_place_and_the_known_labels():
    table = {"1": Evidence("abusive", (), 1.0), "0": Evidence(None, ("calm", "frustrated", "angry"), 1.0)}

    assert lookup_evidence(table, "1", "t train row 0") == Evidence("abusive", (), 1.0)
    with pytest.raises(ValueError, match=r"t train row 4: unknown label '2'; expected one of \['1', '0'\]"):
        lookup_evidence(table, "2", "t train row 4")
    with pytest.raises(ValueError, match=r"t: unknown emotion 'x'"):
        lookup_evidence(table, "x", "t", what="emotion")
