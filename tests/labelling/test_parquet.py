"""Parquet in and out of ``tonewatch label`` (the local engine; tests/labelling/test_ray_engine.py runs the same
files through Ray)."""

from __future__ import annotations

import datetime
import json
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tonewatch.labelling import LabelInputError, MissingExtraError, label_file
from tonewatch.labelling.parquet import prediction_type
from tonewatch.labels import CUSTOMER_SIGNALS, EMOTION_LABELS
from tonewatch.model.classifier import Classifier

CONVERSATIONS = [
    {"id": f"c{i}", "lang": ["zh", "ru"][i % 2], "channel": "chat", "turns": [
        {"speaker": "agent", "text": "您好" if i % 2 == 0 else "Здравствуйте"},
        {"speaker": "customer", "text": f"我的网络又断了 {i}" if i % 2 == 0 else f"Опять не работает {i}",
         "emotion": "frustrated", "escalate": False},
        *([{"speaker": "agent", "text": "抱歉"}, {"speaker": "customer", "text": "找你们经理!"}] * (i % 3)),
    ]}
    for i in range(9)
]  # fmt: skip


@pytest.fixture(scope="module")
def classifier(tiny_model_dir):
    return Classifier.from_pretrained(tiny_model_dir)


def write_jsonl(path, records, extra_lines=()):
    lines = [json.dumps(record, ensure_ascii=False) for record in records] + list(extra_lines)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def without_nulls(value):
    """A Parquet row as its JSONL record: struct fields that are null were absent keys, the ``since_turn`` map
    (pairs in Python) an object."""
    if isinstance(value, dict):
        return {
            key: dict(item) if key == "since_turn" else without_nulls(item)
            for key, item in value.items()
            if item is not None
        }
    if isinstance(value, list):
        return [without_nulls(item) for item in value]
    return value


def test_conversations_jsonl_to_parquet_holds_the_jsonl_records_with_typed_predictions(classifier, tmp_path):
    write_jsonl(tmp_path / "in.jsonl", CONVERSATIONS)
    label_file(classifier, tmp_path / "in.jsonl", tmp_path / "out.jsonl", batch_size=4)
    summary = label_file(classifier, tmp_path / "in.jsonl", tmp_path / "out.parquet", batch_size=4)
    assert summary.records == 9
    table = pq.read_table(tmp_path / "out.parquet")
    turn_type = table.schema.field("turns").type.value_type
    assert turn_type.field("prediction").type == prediction_type()
    assert [f.name for f in prediction_type().field("scores").type] == list(EMOTION_LABELS)
    assert [f.name for f in prediction_type().field("signals").type] == list(CUSTOMER_SIGNALS)
    assert table.schema.field("channel").type == pa.string()
    rows = table.to_pylist()
    assert [without_nulls(row) for row in rows] == read_jsonl(tmp_path / "out.jsonl")
    agent = rows[0]["turns"][0]
    assert agent["speaker"] == "agent" and agent["prediction"] is None and agent["emotion"] is None
    assert not (tmp_path / "out.parquet.partial").exists() and not (tmp_path / "out.parquet.progress").exists()


def test_parquet_input_keeps_every_column_with_its_type(classifier, tmp_path):
    rows = [{**conversation, "priority": i, "opened": datetime.datetime(2024, 5, i + 1, 9, 30), "tags": ["a", "b"]}
            for i, conversation in enumerate(CONVERSATIONS)]  # fmt: skip
    table = pa.Table.from_pylist(rows)
    table = table.set_column(table.schema.get_field_index("priority"), "priority", table["priority"].cast(pa.int32()))
    pq.write_table(table, tmp_path / "in.parquet")
    write_jsonl(tmp_path / "same.jsonl", CONVERSATIONS)

    label_file(classifier, tmp_path / "in.parquet", tmp_path / "out.parquet", batch_size=4)
    labelled = pq.read_table(tmp_path / "out.parquet")
    for name in ("id", "lang", "channel", "priority", "opened", "tags"):
        assert labelled.schema.field(name).type == table.schema.field(name).type
        assert labelled[name].equals(table[name])
    input_turn = table.schema.field("turns").type.value_type
    output_turn = labelled.schema.field("turns").type.value_type
    assert [f for f in output_turn if f.name != "prediction"] == list(input_turn)
    # the same predictions as the JSONL file of the same conversations
    label_file(classifier, tmp_path / "same.jsonl", tmp_path / "same.out.jsonl", batch_size=4)
    expected = read_jsonl(tmp_path / "same.out.jsonl")
    got = [without_nulls(row) for row in labelled.to_pylist()]
    assert [[t.get("prediction") for t in row["turns"]] for row in got] == [
        [t.get("prediction") for t in row["turns"]] for row in expected
    ]
    # Parquet in, JSONL out: the columns JSON has no type for are written as text
    label_file(classifier, tmp_path / "in.parquet", tmp_path / "out.jsonl", batch_size=4)
    first = read_jsonl(tmp_path / "out.jsonl")[0]
    assert first["opened"] == "2024-05-01T09:30:00" and first["priority"] == 0 and first["tags"] == ["a", "b"]


def test_texts_and_csv_to_parquet(classifier, tmp_path):
    texts = [{"id": 1, "text": "опять не работает", "lang": "ru"}, {"id": 2, "text": "ok"}]
    pq.write_table(pa.Table.from_pylist(texts), tmp_path / "texts.parquet")
    write_jsonl(tmp_path / "texts.jsonl", texts)
    label_file(classifier, tmp_path / "texts.parquet", tmp_path / "texts.out.parquet")
    label_file(classifier, tmp_path / "texts.jsonl", tmp_path / "texts.out.jsonl")
    rows = pq.read_table(tmp_path / "texts.out.parquet").to_pylist()
    assert [without_nulls(row) for row in rows] == read_jsonl(tmp_path / "texts.out.jsonl")
    assert rows[1]["lang"] is None  # a missing field is a null of the column

    (tmp_path / "in.csv").write_text('ticket,text\na1,你们是骗子\na2,"谢谢, 好的"\n', encoding="utf-8")
    label_file(classifier, tmp_path / "in.csv", tmp_path / "out.csv.parquet")
    table = pq.read_table(tmp_path / "out.csv.parquet")
    assert table.schema.field("ticket").type == pa.string()
    assert table["text"].to_pylist() == ["你们是骗子", "谢谢, 好的"]
    assert table.schema.field("prediction").type == prediction_type()
    assert all(row["prediction"]["emotion"] in EMOTION_LABELS for row in table.to_pylist())


def test_bad_parquet_rows_are_reported_by_row_and_strict_fails_on_them(classifier, tmp_path):
    rows = [CONVERSATIONS[0], {"id": "x", "turns": [{"speaker": "robot", "text": "hi"}]}, CONVERSATIONS[1]]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "in.parquet")
    seen = []
    summary = label_file(classifier, tmp_path / "in.parquet", tmp_path / "out.parquet", on_bad_line=seen.append)
    assert [(bad.unit, bad.line_number) for bad in seen] == [("row", 2)] and "speaker" in seen[0].reason
    assert summary.records == 2 and pq.read_table(tmp_path / "out.parquet")["id"].to_pylist() == ["c0", "c1"]
    with pytest.raises(LabelInputError, match=r"in\.parquet, row 2: .*speaker"):
        label_file(classifier, tmp_path / "in.parquet", tmp_path / "strict.parquet", strict=True)


def test_parquet_input_that_is_not_a_labelling_input_is_a_clear_error(classifier, tmp_path):
    as_json = pa.table({"id": ["a"], "turns": ['[{"speaker": "customer", "text": "hi"}]']})
    pq.write_table(as_json, tmp_path / "s.parquet")
    with pytest.raises(LabelInputError, match="'turns' column must be a list of structs"):
        label_file(classifier, tmp_path / "s.parquet", tmp_path / "o.jsonl")
    pq.write_table(pa.table({"body": ["hi"]}), tmp_path / "b.parquet")
    with pytest.raises(LabelInputError, match=r"'turns' .* or 'text'"):
        label_file(classifier, tmp_path / "b.parquet", tmp_path / "o.jsonl")
    (tmp_path / "junk.parquet").write_text("not parquet")
    with pytest.raises(LabelInputError, match="not a readable Parquet file"):
        label_file(classifier, tmp_path / "junk.parquet", tmp_path / "o.jsonl")


def test_jsonl_whose_values_have_no_parquet_type_fails_before_labelling(classifier, tmp_path):
    records = [{"id": 1, "text": "ok", "ref": 5}, {"id": 2, "text": "ok", "ref": "B-7"}]
    write_jsonl(tmp_path / "in.jsonl", records)

    class NoModel:
        def classify(self, items, batch_size=64):
            raise AssertionError("labelled before the output format was checked")

    with pytest.raises(LabelInputError, match=r"cannot be written as Parquet.*write JSONL"):
        label_file(NoModel(), tmp_path / "in.jsonl", tmp_path / "out.parquet")
    assert not (tmp_path / "out.parquet.partial").exists()
    # values of one field that Parquet can widen to one type are fine: ints and floats become doubles
    write_jsonl(tmp_path / "num.jsonl", [{"text": "ok", "n": 1}, {"text": "ok", "n": 2.5}, {"text": "ok"}])
    label_file(classifier, tmp_path / "num.jsonl", tmp_path / "num.parquet")
    assert pq.read_table(tmp_path / "num.parquet")["n"].to_pylist() == [1.0, 2.5, None]


class FailingAfter:
    """A classifier that dies after ``calls`` model calls, like an interrupted run."""

    def __init__(self, inner, calls):
        self.inner, self.calls = inner, calls

    def classify(self, items, batch_size=64):
        if self.calls == 0:
            raise KeyboardInterrupt
        self.calls -= 1
        return self.inner.classify(items, batch_size)


def test_parquet_output_resumes_from_its_last_part_to_the_same_file(classifier, tmp_path):
    write_jsonl(tmp_path / "in.jsonl", CONVERSATIONS, extra_lines=["{broken"])
    label_file(classifier, tmp_path / "in.jsonl", tmp_path / "clean.parquet", batch_size=2, part_records=3)
    with pytest.raises(KeyboardInterrupt):
        label_file(
            FailingAfter(classifier, 4), tmp_path / "in.jsonl", tmp_path / "out.parquet", batch_size=2, part_records=3
        )
    partial = tmp_path / "out.parquet.partial"
    state = json.loads((tmp_path / "out.parquet.progress").read_text())
    assert state["format"] == "parquet" and state["parts"] >= 1 and not (tmp_path / "out.parquet").exists()
    assert len(list(partial.glob("part-*.parquet"))) == state["parts"]
    (partial / f"part-{state['parts']:05d}.parquet").write_bytes(b"PAR1 cut off")  # a part never recorded
    summary = label_file(
        classifier, tmp_path / "in.jsonl", tmp_path / "out.parquet", batch_size=2, part_records=3, resume=True
    )
    assert summary.resumed_from == state["records"] > 0
    assert (tmp_path / "out.parquet").read_bytes() == (tmp_path / "clean.parquet").read_bytes()
    assert pq.read_metadata(tmp_path / "out.parquet").num_row_groups == 3  # 9 conversations, 3 a part
    with pytest.raises(LabelInputError, match="already complete"):
        label_file(classifier, tmp_path / "in.jsonl", tmp_path / "out.parquet", resume=True)


def test_resuming_with_another_format_is_refused(classifier, tmp_path):
    write_jsonl(tmp_path / "in.jsonl", CONVERSATIONS)
    with pytest.raises(KeyboardInterrupt):
        label_file(FailingAfter(classifier, 1), tmp_path / "in.jsonl", tmp_path / "out", batch_size=2)
    with pytest.raises(LabelInputError, match="wrote JSONL/CSV; resume it with the same --format"):
        label_file(classifier, tmp_path / "in.jsonl", tmp_path / "out", output_format="parquet", resume=True)


def test_parquet_without_pyarrow_says_which_extra_to_install(classifier, tmp_path, monkeypatch):
    write_jsonl(tmp_path / "in.jsonl", CONVERSATIONS[:1])
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    with pytest.raises(MissingExtraError, match=r"pip install 'tonewatch\[parquet\]'"):
        label_file(classifier, tmp_path / "in.jsonl", tmp_path / "out.parquet")
