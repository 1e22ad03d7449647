"""Parquet input and output of ``tonewatch label`` (needs pyarrow: ``pip install 'tonewatch[parquet]'``).

A Parquet file is read as rows, one record each, with the same fields as a JSONL record:

- conversations: a ``turns`` column, a list of structs with at least ``speaker`` and ``text`` (and, as in
  JSONL, the optional gold ``emotion`` and ``escalate``); ``id`` and the other columns as they are;
- texts: a ``text`` string column (``lang`` optional), the other columns as they are.

Labelled output keeps every input column with its type (from JSONL or CSV input: the types the whole
file's values take; a field whose values have no common type is an error that says to write JSONL) and
adds a ``prediction`` struct, for every customer turn (a field of ``turns``' struct, null on agent
turns) or text (a column):

    prediction: struct<
      emotion: string,
      scores: struct<calm, frustrated, angry, abusive: double>,
      escalate: bool,
      escalate_score: double,
      signals: struct<supervisor_request, external_threat, harm_threat: double>   (null: a model without),
      escalation: struct<escalate: bool, score: double, reasons: list<string>, since_turn: map<string, int64>>>

the same values as the JSONL output's ``prediction`` object. A ``prediction`` already in the input is
replaced.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from tonewatch.labelling.archive import LabelInputError, MissingExtraError, read_progress, write_progress
from tonewatch.labels import CUSTOMER_SIGNALS, EMOTION_LABELS

ROWS_PER_READ = 1024
PART_NAME = re.compile(r"part-(\d{5,})\.parquet")


def _pyarrow():
    try:
        import pyarrow
        import pyarrow.parquet
    except ImportError:
        raise MissingExtraError("Parquet input and output need pyarrow: pip install 'tonewatch[parquet]'") from None
    return pyarrow


def prediction_type():
    """The Arrow type of a ``prediction`` (see the module docstring)."""
    pa = _pyarrow()
    return pa.struct(
        [
            ("emotion", pa.string()),
            ("scores", pa.struct([(label, pa.float64()) for label in EMOTION_LABELS])),
            ("escalate", pa.bool_()),
            ("escalate_score", pa.float64()),
            ("signals", pa.struct([(name, pa.float64()) for name in CUSTOMER_SIGNALS])),
            (
                "escalation",
                pa.struct(
                    [
                        ("escalate", pa.bool_()),
                        ("score", pa.float64()),
                        ("reasons", pa.list_(pa.string())),
                        ("since_turn", pa.map_(pa.string(), pa.int64())),
                    ]
                ),
            ),
        ]
    )


def parquet_kind(path: Path) -> str:
    """``conversations`` (a ``turns`` list-of-struct column) or ``texts`` (a ``text`` column)."""
    pa = _pyarrow()
    try:
        metadata = pa.parquet.read_metadata(path)
    except (OSError, pa.ArrowException) as error:
        raise LabelInputError(f"{path} is not a readable Parquet file: {error}") from None
    schema = metadata.schema.to_arrow_schema()
    if metadata.num_rows == 0:
        raise LabelInputError(f"{path} is empty")
    if "turns" in schema.names:
        turns = schema.field("turns").type
        if not (pa.types.is_list(turns) or pa.types.is_large_list(turns)) or not pa.types.is_struct(turns.value_type):
            raise LabelInputError(
                f"{path}: the 'turns' column must be a list of structs (speaker, text, ...), not {turns}"
            )
        return "conversations"
    if "text" in schema.names:
        return "texts"
    raise LabelInputError(f"{path}: Parquet input needs a 'turns' (conversations) or 'text' (texts) column")


def iter_rows(path: Path) -> Iterator[dict]:
    """Every row of a Parquet file as a dict of Python values, in order."""
    pa = _pyarrow()
    for batch in pa.parquet.ParquetFile(path).iter_batches(batch_size=ROWS_PER_READ):
        yield from batch.to_pylist()


def _with_prediction(schema, kind: str):
    """``schema`` with the ``prediction`` field where labelling puts it (replacing one already there)."""
    pa = _pyarrow()
    prediction = pa.field("prediction", prediction_type())
    if kind != "conversations":
        return pa.schema([*(f for f in schema if f.name != "prediction"), prediction], metadata=schema.metadata)
    index = schema.get_field_index("turns")
    turns = schema.field(index).type
    item = turns.value_type if pa.types.is_struct(turns.value_type) else pa.struct([])
    struct = pa.struct([*(f for f in item if f.name != "prediction"), prediction])
    list_type = pa.large_list(struct) if pa.types.is_large_list(turns) else pa.list_(struct)
    return schema.set(index, pa.field("turns", list_type))


def output_schema(source: Path, kind: str, read_records: Callable[[Path, str], Iterator]) -> Any:
    """The schema of the labelled output: the input's (a Parquet file's own; every column a string for CSV;
    for JSONL the types the whole file's readable records take) with ``prediction`` added."""
    pa = _pyarrow()
    if source.suffix.lower() == ".parquet":
        return _with_prediction(pa.parquet.read_schema(source), kind)
    if kind == "csv":
        import csv

        with open(source, encoding="utf-8-sig", newline="") as handle:
            header = next(csv.reader(handle))
        return _with_prediction(pa.schema([(name, pa.string()) for name in header]), kind)
    schemas, chunk = [], []

    def infer() -> None:
        try:
            # pa.array, unlike Table.from_pylist, takes the union of every record's keys
            schemas.append(pa.schema(list(pa.array(chunk).type)))
        except (pa.ArrowInvalid, pa.ArrowTypeError) as error:
            raise LabelInputError(
                f"{source} cannot be written as Parquet ({error}); write JSONL instead (-o OUTPUT.jsonl)"
            ) from None
        chunk.clear()

    for record in read_records(source, kind):
        if record.error is None:
            chunk.append(record.value)
            if len(chunk) == ROWS_PER_READ:
                infer()
    if chunk:
        infer()
    try:
        schema = pa.unify_schemas(schemas, promote_options="permissive") if schemas else pa.schema([])
    except (pa.ArrowInvalid, pa.ArrowTypeError) as error:
        raise LabelInputError(
            f"{source} cannot be written as Parquet ({error}); write JSONL instead (-o OUTPUT.jsonl)"
        ) from None
    if kind == "conversations" and "turns" not in schema.names:
        schema = schema.append(pa.field("turns", pa.list_(pa.struct([]))))
    return _with_prediction(schema, kind)


def _check_signals(values: list[dict], kind: str) -> None:
    """A signal outside the scheme's customer signals would be dropped by the struct: refuse it instead."""
    predictions = (
        [turn.get("prediction") for value in values for turn in value["turns"]]
        if kind == "conversations"
        else [value.get("prediction") for value in values]
    )
    for prediction in predictions:
        unknown = set((prediction or {}).get("signals") or ()) - set(CUSTOMER_SIGNALS)
        if unknown:
            raise ValueError(f"Parquet output has no column for the signals {sorted(unknown)}")


class ParquetOutput:
    """Parquet output with the JSONL output's resume contract: part files in the folder ``OUTPUT.partial/``,
    each written whole and renamed into place, and ``OUTPUT.progress`` naming how many parts and input records
    are done. Finishing copies the parts, in order, into OUTPUT (one row group each)."""

    def __init__(self, output: Path, schema, part_records: int, kind: str | None = None):
        self.output, self.schema, self.part_records = output, schema, part_records
        self.kind = kind if kind is not None else ("conversations" if "turns" in schema.names else "texts")
        self.partial = output.with_name(output.name + ".partial")
        self.progress = output.with_name(output.name + ".progress")
        self.parts, self.done_records = 0, 0
        self.rows: list[dict] = []

    def _part(self, number: int) -> Path:
        return self.partial / f"part-{number:05d}.parquet"

    def start(self, resume: bool) -> int:
        if resume and self.progress.exists() and self.partial.exists():
            state = read_progress(self.progress, "parquet")
            self.parts, self.done_records = state["parts"], state["records"]
            for path in self.partial.iterdir():  # a part written after the last recorded one, or half-written
                match = PART_NAME.fullmatch(path.name)
                if match is None or int(match.group(1)) >= self.parts:
                    path.unlink()
            return self.done_records
        if resume and self.output.exists():
            raise LabelInputError(f"{self.output} is already complete; nothing to resume")
        if self.partial.is_dir():
            shutil.rmtree(self.partial)
        else:
            self.partial.unlink(missing_ok=True)
        self.partial.mkdir(parents=True)
        self._record_progress()
        return 0

    def _record_progress(self) -> None:
        write_progress(self.progress, {"format": "parquet", "records": self.done_records, "parts": self.parts})

    def commit(self, done_records: int, values: list[dict]) -> None:
        self.rows.extend(values)
        self.done_records = done_records
        if len(self.rows) >= self.part_records:
            self._write_part()

    def _write_part(self) -> None:
        pa = _pyarrow()
        _check_signals(self.rows, self.kind)
        try:
            table = pa.Table.from_pylist(self.rows, schema=self.schema)
        except (pa.ArrowInvalid, pa.ArrowTypeError) as error:
            raise LabelInputError(f"cannot write {self.output} as Parquet ({error}); write JSONL instead") from None
        temporary = self.partial / f".part-{self.parts:05d}.tmp"
        pa.parquet.write_table(table, temporary)
        with open(temporary, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(temporary, self._part(self.parts))
        self.parts += 1
        self.rows = []
        self._record_progress()

    def finish(self) -> None:
        pa = _pyarrow()
        if self.rows:
            self._write_part()
        else:
            self._record_progress()  # batches of unreadable records alone move the count on
        temporary = self.output.with_name(self.output.name + ".tmp")
        with pa.parquet.ParquetWriter(temporary, self.schema) as writer:
            for number in range(self.parts):
                writer.write_table(pa.parquet.read_table(self._part(number), schema=self.schema))
        os.replace(temporary, self.output)
        shutil.rmtree(self.partial)
        self.progress.unlink(missing_ok=True)
