"""A researcher's own data (``extra_data``): tables and conversations to records, errors that name the line."""

from __future__ import annotations

import json

import pytest

from tonewatch.configfile import ConfigError
from tonewatch.data.custom import RowFormatError
from tonewatch.training.config import ExtraData, TrainConfig
from tonewatch.training.dataset import check_extra_data, load_extra


def test_csv_rows_become_records_with_their_labels(tmp_path):
    table = tmp_path / "tickets.csv"
    table.write_text(
        "id,text,emotion,escalate,weight\n"
        "7,опять не работает,frustrated,0,\n"
        '8,"две строки,\nв одной ячейке",,yes,0.5\n'
        "\n"
        "9,позовите менеджера,angry,1,2\n",
        encoding="utf-8",
    )
    records = load_extra(ExtraData(path=str(table), lang="ru"))
    assert [record.id for record in records] == ["tickets:7", "tickets:8", "tickets:9"]
    assert [record.emotion for record in records] == ["frustrated", None, "angry"]
    assert [record.escalate for record in records] == [False, True, True]
    assert [record.weight for record in records] == [1.0, 0.5, 2.0]
    assert records[1].text == "две строки,\nв одной ячейке" and {record.lang for record in records} == {"ru"}


def test_a_bad_csv_row_names_the_file_and_its_line(tmp_path):
    table = tmp_path / "tickets.csv"
    # line 1 header, 2 a row, 3-4 a row with a quoted line break, 5 blank, 6 the bad row
    table.write_text('text,emotion\nfine,calm\n"two\nlines",angry\n\nbad,furious\n', encoding="utf-8")
    with pytest.raises(RowFormatError, match=rf"^{table}:6: emotion 'furious' is not one of"):
        load_extra(ExtraData(path=str(table), lang="zh"))
    table.write_text("text,emotion\nfine,calm\n,angry\n", encoding="utf-8")
    with pytest.raises(RowFormatError, match=rf"^{table}:3: empty text$"):
        load_extra(ExtraData(path=str(table), lang="zh"))
    table.write_text("text\nno language here\n", encoding="utf-8")
    with pytest.raises(RowFormatError, match=rf"^{table}:2: no 'lang' and none was configured$"):
        load_extra(ExtraData(path=str(table)))
    table.write_text("body,emotion\nhello,calm\n", encoding="utf-8")
    with pytest.raises(RowFormatError, match=rf"^{table}:1: the header has no 'text' column"):
        load_extra(ExtraData(path=str(table), lang="zh"))


def test_a_bad_jsonl_text_row_names_its_line(tmp_path):
    rows = tmp_path / "texts.jsonl"
    lines = [json.dumps({"text": "你好", "emotion": "calm"}), "", json.dumps({"text": "滚", "escalate": "maybe"})]
    rows.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(RowFormatError, match=rf"^{rows}:3: escalate value 'maybe' is not true/false$"):
        load_extra(ExtraData(path=str(rows), lang="zh"))
    rows.write_text(json.dumps({"text": "你好"}) + "\n{oops\n", encoding="utf-8")
    with pytest.raises(RowFormatError, match=rf"^{rows}:2: invalid JSON"):
        load_extra(ExtraData(path=str(rows), lang="zh"))


def test_conversations_in_the_project_format(tmp_path):
    calls = tmp_path / "calls.jsonl"
    conversation = {"id": "c1", "lang": "zh", "turns": [
        {"speaker": "agent", "text": "您好"},
        {"speaker": "customer", "text": "又断网了", "emotion": "frustrated", "escalate": False},
    ]}  # fmt: skip
    calls.write_text(json.dumps(conversation, ensure_ascii=False) + "\n", encoding="utf-8")
    (record,) = load_extra(ExtraData(path=str(calls)))
    assert record.source == "calls" and record.emotion == "frustrated" and record.context[0].text == "您好"


def test_check_extra_data_refuses_missing_and_unreadable_files_and_leaves_hub_names_to_loading(tmp_path):
    (tmp_path / "notes.tsv").write_text("text\thello\n")
    (tmp_path / "here.csv").write_text("text\nhello\n")

    def config(path):
        return TrainConfig(source_shares={"callcenter_train": 1.0}, extra_data=[{"path": path, "lang": "zh"}])

    check_extra_data(config(str(tmp_path / "here.csv")))
    check_extra_data(config("owner/hub_set"))  # a Hugging Face dataset: only loading it can tell
    with pytest.raises(ConfigError, match=rf"^extra_data\[0\]\.path: no such file: {tmp_path / 'gone.csv'}$"):
        check_extra_data(config(str(tmp_path / "gone.csv")))
    with pytest.raises(ConfigError, match=r"^extra_data\[0\]\.path: unsupported file type '\.tsv'"):
        check_extra_data(config(str(tmp_path / "notes.tsv")))


def test_a_bad_row_in_the_researchers_file_stops_the_run_before_any_public_source_is_read(tmp_path, monkeypatch):
    from tonewatch.training import dataset as dataset_module

    path = tmp_path / "tickets.csv"
    path.write_text("text,emotion\nОпять списали деньги,frustrated\nСпасибо,furious\n", encoding="utf-8")
    read = []
    monkeypatch.setattr(dataset_module, "load_source", lambda name, data_root=None: read.append(name) or [])
    config = TrainConfig(source_shares={"cold": 1.0}, extra_data=[ExtraData(path=str(path), lang="ru")])
    with pytest.raises(RowFormatError, match=r"tickets.csv:3"):
        dataset_module.build_training_data(config)
    assert read == []
