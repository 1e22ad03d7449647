"""``tonewatch label``: label an archive of conversations or texts, resumably.

Input kinds, detected from the content (a ``.parquet`` file from its columns):

- conversations in the project's format (objects with ``turns``), as JSONL or as
  Parquet rows with a ``turns`` list-of-struct column: every customer turn gains
  a ``prediction``, which holds the escalation policy's ``escalation``
  (``escalate``, ``score``, ``reasons``, ``since_turn``: the label guide's rules
  applied turn by turn, :mod:`tonewatch.tracking.policy`) beside the model's own
  ``escalate`` and ``escalate_score``;
- single texts (objects with ``text``), as JSONL or Parquet rows with a ``text``
  column: each record gains a ``prediction``;
- CSV with a ``text`` column: each row gains a ``prediction`` (as a JSON
  column in CSV output, or an object in JSONL output).

Output keeps every record, in order, with every field, as JSONL, CSV (for CSV
input) or Parquet (:mod:`tonewatch.labelling.parquet` defines its columns).
JSONL and CSV are written to ``OUTPUT.partial`` one batch at a time (flushed and
fsynced), and a small ``OUTPUT.progress`` file records how many input records
and output bytes are done, replaced atomically after each batch. ``resume=True``
truncates the partial output to the recorded size and continues after the
recorded record, so an interrupted run neither loses nor duplicates records.
The finished file is renamed into place. Parquet output keeps the same contract
with a folder ``OUTPUT.partial/`` of part files (one per ``part_records``
records) in place of the byte count.

The input is read and the model runs in an engine: this process
(:class:`LocalEngine`, the default), or Ray (:class:`tonewatch.labelling.ray_engine.RayEngine`:
a Ray Data read task and a pool of actors). Both read the input with
:func:`read_records`, cut it into the batches of :func:`input_batches` and label
those batches with :func:`label_records`, so their output is the same, byte for
byte; bad lines, warnings and the output are handled here, in input order.

Unreadable input (invalid JSON, a record that does not follow the format:
no turns, a turn without text, ...) is reported with its line number (its row
number in a Parquet file); it is skipped, or fails the run when
``strict=True``; it is never dropped silently. Invalid gold labels (an
``emotion`` that is not one of the labels, an ``escalate`` that is not
true/false) are not the model's business: such a record is labelled and kept
as it is, with a warning naming its line.
"""

from __future__ import annotations

import base64
import csv
import datetime
import decimal
import io
import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tonewatch.conversations import ConversationFormatError, gold_label_problems, validate_conversation
from tonewatch.model.types import Prediction, TurnInput, conversation_turn_inputs
from tonewatch.tracking.policy import (
    EscalationPolicy,
    agent_turn_inputs,
    escalate_conversation,
    escalate_text,
    wants_agent_signals,
)

if TYPE_CHECKING:
    from tonewatch.model.classifier import Classifier

KINDS = ("conversations", "texts", "csv")
OUTPUT_FORMATS = ("jsonl", "csv", "parquet")
PART_RECORDS = 4096
"""Records per part file (and row group) of Parquet output: what an interrupted Parquet run may redo."""


class LabelInputError(ValueError):
    """The input cannot be labelled (unknown kind, bad line in strict mode, nothing to resume)."""


class EngineError(RuntimeError):
    """The labelling engine cannot run: its cluster unreachable or too small, a worker lost."""


class MissingExtraError(LabelInputError):
    """What was asked for needs an optional dependency that is not installed (the message names the extra)."""


@dataclass
class BadLine:
    line_number: int
    """1-based line of a JSONL or CSV file, or 1-based row of a Parquet file (``unit`` says which)."""
    reason: str
    unit: str = "line"


@dataclass
class LabelSummary:
    kind: str
    records: int = 0
    labelled_turns: int = 0
    skipped: list[BadLine] = field(default_factory=list)
    warnings: list[BadLine] = field(default_factory=list)
    """Records labelled and written but with something to report (invalid gold labels), one per record."""
    resumed_from: int = 0


def is_parquet(path: Path) -> bool:
    return path.suffix.lower() == ".parquet"


def detect_kind(path: Path) -> str:
    """``conversations``, ``texts`` or ``csv``, from the first non-blank line of ``path`` (the columns of a
    ``.parquet`` file)."""
    if is_parquet(path):
        from tonewatch.labelling.parquet import parquet_kind

        return parquet_kind(path)
    with open(path, encoding="utf-8-sig", newline="") as handle:
        for line in handle:
            if not line.strip():
                continue
            stripped = line.strip()
            if stripped.startswith("{"):
                try:
                    first = json.loads(stripped)
                except json.JSONDecodeError:
                    raise LabelInputError(f"{path}:1 starts like JSONL but is not valid JSON") from None
                if "turns" in first:
                    return "conversations"
                if "text" in first:
                    return "texts"
                raise LabelInputError(f"{path}: JSONL records need 'turns' (conversations) or 'text' (texts)")
            header = next(csv.reader([line]))
            if "text" in [column.strip() for column in header]:
                return "csv"
            raise LabelInputError(f"{path}: not JSONL, and the CSV header has no 'text' column: {header}")
    raise LabelInputError(f"{path} is empty")


@dataclass
class InputRecord:
    """One input record: its position, line number, and parsed value or the reason it is unreadable; a
    readable record may carry a warning (its gold labels are invalid: it is labelled and kept all the same)."""

    index: int
    line_number: int
    value: Any = None
    error: str | None = None
    warning: str | None = None
    turns: int = 0
    """The turns the model labels (a conversation's customer turns; 1 for a text); 0 when unreadable."""


def read_records(path: Path, kind: str) -> Iterator[InputRecord]:
    """Every record of the input, numbered; unreadable ones carry their error."""
    if is_parquet(path):
        from tonewatch.labelling.parquet import iter_rows

        for index, value in enumerate(iter_rows(path)):
            yield _record(index, index + 1, value, kind)
        return
    if kind == "csv":
        with open(path, encoding="utf-8-sig", newline="") as handle:
            reader = csv.DictReader(handle)
            for index, row in enumerate(reader):
                line_number = reader.line_num
                if None in row:
                    yield InputRecord(index, line_number, error="more cells than header columns")
                elif not (row.get("text") or "").strip():
                    yield InputRecord(index, line_number, row, error="empty 'text'")
                else:
                    yield InputRecord(index, line_number, row, turns=1)
        return
    with open(path, encoding="utf-8-sig") as handle:
        index = 0
        for line_number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError as error:
                yield InputRecord(index, line_number, error=f"invalid JSON: {error.msg}")
            else:
                yield _record(index, line_number, value, kind)
            index += 1


def _record(index: int, line_number: int, value: Any, kind: str) -> InputRecord:
    error = _check(value, kind)
    if error is not None:
        return InputRecord(index, line_number, value, error=error)
    if kind == "conversations":
        turns = sum(turn["speaker"] == "customer" for turn in value["turns"])
        return InputRecord(index, line_number, value, warning=_gold_warning(value), turns=turns)
    return InputRecord(index, line_number, value, turns=1)


def _check(value: Any, kind: str) -> str | None:
    if kind == "conversations":
        try:
            # Gold labels are the input's business, not the model's: only what labelling needs is checked.
            validate_conversation(value, gold_labels=False)
        except ConversationFormatError as error:
            return str(error)
        return None
    if not isinstance(value, dict) or not isinstance(value.get("text"), str) or not value["text"].strip():
        return "a text record is an object with a non-empty 'text'"
    return None


def _gold_warning(conversation: dict) -> str | None:
    problems = gold_label_problems(conversation)
    return f"labelled, but its gold labels are invalid: {'; '.join(problems)}" if problems else None


def _turn_inputs(value: dict, kind: str) -> list[TurnInput]:
    if kind == "conversations":
        return conversation_turn_inputs(value)
    return [TurnInput(value["text"].strip(), (), value.get("lang") or None)]


def _escalated(
    classifier: Classifier, policy: EscalationPolicy, conversation: dict, predictions: list[Prediction]
) -> list[dict]:
    """A conversation's predictions as written: each with the policy's ``escalation`` for its turn."""
    agent_signals = None
    if wants_agent_signals(classifier) and policy.agent_signals_needed():
        indexed = agent_turn_inputs(conversation)
        signals = classifier.agent_signals([item for _, item in indexed]) if indexed else []
        agent_signals = {index: values for (index, _), values in zip(indexed, signals, strict=True)}
    escalations = escalate_conversation(policy, conversation, predictions, agent_signals)
    return [
        {**prediction.to_dict(), "escalation": escalation.to_dict()}
        for prediction, escalation in zip(predictions, escalations, strict=True)
    ]


def _attach(value: dict, kind: str, predictions: list[dict]) -> dict:
    value = dict(value)
    if kind == "conversations":
        turns = [dict(turn) for turn in value["turns"]]
        customer = iter(predictions)
        for turn in turns:
            if turn["speaker"] == "customer":
                turn["prediction"] = next(customer)
        value["turns"] = turns
    else:
        value["prediction"] = predictions[0]
    return value


@dataclass
class PreparedRecords:
    """The readable records of one batch, their turns, and those turns tokenised (:func:`prepare_records`)."""

    values: list[dict]
    inputs: list[list[TurnInput]]
    prepared: Any = None
    """The classifier's :meth:`~tonewatch.model.classifier.Classifier.prepare` of every turn of the batch (``None``
    for a classifier without that step, which ``classify`` then tokenises itself)."""


def prepare_records(classifier: Classifier, kind: str, values: list[dict]) -> PreparedRecords:
    """What labelling a batch does before the model runs: the records' turns, tokenised in one batch."""
    inputs = [_turn_inputs(value, kind) for value in values]
    prepare = getattr(classifier, "prepare", None)
    flat = [turn for turns in inputs for turn in turns]
    return PreparedRecords(values, inputs, prepare(flat) if prepare is not None and flat else None)


def label_records(classifier: Classifier, policy: EscalationPolicy, kind: str, values: list[dict]) -> list[dict]:
    """Readable records of one batch as written, in order: each with its predictions attached.

    The turns of the whole batch go to the model in one ``classify`` call: what a record's scores are
    depends, within the int8 path's tolerance, on the batch it is labelled in, so every engine calls this
    on the same batches."""
    return finish_records(classifier, policy, kind, prepare_records(classifier, kind, values))


def finish_records(classifier: Classifier, policy: EscalationPolicy, kind: str, batch: PreparedRecords) -> list[dict]:
    """:func:`label_records` of a batch :func:`prepare_records` prepared: the model, the policy, the records."""
    values, inputs = batch.values, batch.inputs
    if batch.prepared is not None:
        predictions = classifier.classify_prepared(batch.prepared)
    else:
        flat = [turn for turns in inputs for turn in turns]
        predictions = classifier.classify(flat) if flat else []
    labelled, position = [], 0
    for value, turns in zip(values, inputs, strict=True):
        own = predictions[position : position + len(turns)]
        if kind == "conversations":
            written = _escalated(classifier, policy, value, own)
        else:
            # The text's language as the model read it: given, or its script's (TurnInput).
            written = [
                {**p.to_dict(), "escalation": escalate_text(policy, p, turn.lang).to_dict()}
                for p, turn in zip(own, turns, strict=True)
            ]
        labelled.append(_attach(value, kind, written))
        position += len(turns)
    return labelled


Batch = list[InputRecord]


@dataclass(frozen=True)
class InputPlan:
    """What an engine reads and how it batches it: everything :func:`input_batches` needs, small and picklable,
    so that an engine can read the input where it runs (the Ray engine: in a Ray Data read task)."""

    source: Path
    kind: str
    batch_size: int
    done: int = 0
    """Input records an interrupted run has already written: reading starts after them."""
    strict: bool = False
    shown_as: str | None = None
    """How errors name the input (default: ``source``): as the user gave it, where ``source`` was made absolute
    for a reader in another working directory."""

    def where(self, record: InputRecord) -> str:
        """A record's place, as errors name it (``INPUT:LINE`` or ``INPUT, row N``)."""
        shown = self.shown_as or str(self.source)
        return f"{shown}, row {record.line_number}" if is_parquet(self.source) else f"{shown}:{record.line_number}"


def input_batches(plan: InputPlan) -> Iterator[Batch]:
    """The model batches of ``plan``'s input, as every engine labels them (:func:`_batches`)."""
    return _batches(read_records(plan.source, plan.kind), plan.batch_size, plan.done, plan.strict, plan.where)


class LabellingEngine:
    """Where the input is read and the model runs: yields the batches of :func:`input_batches` in input order,
    each with its readable records labelled (:func:`label_records`)."""

    name = "engine"

    def label_input(self, plan: InputPlan, policy: EscalationPolicy) -> Iterator[tuple[Batch, list[dict]]]:
        raise NotImplementedError

    def describe(self) -> str:
        """A few words for the end-of-run line (``on 4 Ray actors``)."""
        return ""


class LocalEngine(LabellingEngine):
    """The model in this process, in a pipeline of three threads: while the model labels batch ``k`` (in a thread
    of its own; ONNX Runtime and PyTorch run without the GIL), a second thread reads and tokenises batch ``k + 1``
    (the tokenizer encodes a batch outside the GIL too), and the caller writes batch ``k - 1``. (The Ray engine's
    actors label one batch at a time, with :func:`label_records`.)

    The batches are the same, in the same order, each labelled by the same calls, as one batch at a time: the
    output is the same byte for byte. An error anywhere (an unreadable line with ``strict``, the model, the
    caller's writing) comes out after the batches before it, so a resumed run continues where the output ends."""

    name = "local"

    def __init__(self, classifier: Classifier, pipeline: bool = True):
        """``pipeline=False``: one batch at a time in the caller's thread (what the pipeline is checked against)."""
        self.classifier = classifier
        self.pipeline = pipeline

    def label_input(self, plan: InputPlan, policy: EscalationPolicy) -> Iterator[tuple[Batch, list[dict]]]:
        kind, batches = plan.kind, input_batches(plan)
        if not self.pipeline:
            for batch in batches:
                yield batch, finish_records(self.classifier, policy, kind, self._prepare(kind, batch))
            return
        yield from self._pipelined(kind, policy, iter(batches))

    def _prepare(self, kind: str, batch: Batch) -> PreparedRecords:
        readable = [record.value for record in batch if record.error is None]
        return prepare_records(self.classifier, kind, readable)

    def _pipelined(
        self, kind: str, policy: EscalationPolicy, batches: Iterator[Batch]
    ) -> Iterator[tuple[Batch, list[dict]]]:
        from concurrent.futures import ThreadPoolExecutor

        def read_and_prepare() -> tuple[Batch, PreparedRecords] | None:
            batch = next(batches, None)  # reading the input happens here, in the preparing thread
            return None if batch is None else (batch, self._prepare(kind, batch))

        def label(batch: Batch, prepared: PreparedRecords) -> tuple[Batch, list[dict]]:
            return batch, finish_records(self.classifier, policy, kind, prepared)

        # One worker each: batches are read, and labelled, strictly in order.
        preparing = ThreadPoolExecutor(1, thread_name_prefix="tonewatch-prepare")
        labelling = ThreadPoolExecutor(1, thread_name_prefix="tonewatch-model")
        try:
            next_prepared = preparing.submit(read_and_prepare)
            in_model = None  # the future of the batch the model labels now
            while True:
                try:
                    item = next_prepared.result()
                except BaseException:
                    if in_model is not None:  # the batch before the error is written first
                        yield in_model.result()
                    raise
                if item is None:
                    break
                next_prepared = preparing.submit(read_and_prepare)
                labelled_next = labelling.submit(label, *item)
                if in_model is not None:
                    yield in_model.result()  # the caller writes it while the model labels the next one
                in_model = labelled_next
            if in_model is not None:
                yield in_model.result()
        finally:
            # Closed early (an error, an interrupt): nothing more is read or labelled; what runs now finishes.
            preparing.shutdown(wait=True, cancel_futures=True)
            labelling.shutdown(wait=True, cancel_futures=True)


def _json_value(value: Any) -> Any:
    """What a Parquet cell that JSON has no type for is written as in JSONL output."""
    if isinstance(value, datetime.date | datetime.time):
        return value.isoformat()
    if isinstance(value, decimal.Decimal | datetime.timedelta):
        return str(value)
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


class _Writer:
    """Serialises output records as JSONL or CSV (with the prediction as a JSON column)."""

    def __init__(self, output_format: str, fieldnames: list[str] | None):
        self.output_format = output_format
        self.fieldnames = fieldnames

    def header(self) -> str:
        if self.output_format != "csv":
            return ""
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="\n").writerow(self.fieldnames)
        return buffer.getvalue()

    def render(self, value: dict) -> str:
        if self.output_format == "jsonl":
            return json.dumps(value, ensure_ascii=False, default=_json_value) + "\n"
        buffer = io.StringIO()
        row = {**value, "prediction": json.dumps(value["prediction"], ensure_ascii=False)}
        csv.DictWriter(buffer, fieldnames=self.fieldnames, lineterminator="\n").writerow(row)
        return buffer.getvalue()


def _progress_paths(output: Path) -> tuple[Path, Path]:
    return output.with_name(output.name + ".partial"), output.with_name(output.name + ".progress")


def write_progress(path: Path, state: dict) -> None:
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(state))
    os.replace(temporary, path)


def read_progress(path: Path, output_format: str) -> dict:
    """The progress state of an interrupted run, which must have written ``output_format``."""
    state = json.loads(path.read_text())
    written = state.get("format", "parquet" if "parts" in state else "text")
    expected = "parquet" if output_format == "parquet" else "text"
    if written != expected:
        raise LabelInputError(
            f"the interrupted run of {path.name[: -len('.progress')]} wrote "
            f"{'Parquet' if written == 'parquet' else 'JSONL/CSV'}; resume it with the same --format"
        )
    return state


class _TextOutput:
    """JSONL or CSV output: ``OUTPUT.partial`` grows by one batch at a time, ``OUTPUT.progress`` says how far."""

    def __init__(self, output: Path, writer: _Writer):
        self.output, self.writer = output, writer
        self.partial, self.progress = _progress_paths(output)
        self.done_bytes = 0

    def start(self, resume: bool) -> int:
        """Records already done (0 unless resuming an interrupted run)."""
        if resume and self.progress.exists() and self.partial.exists():
            state = read_progress(self.progress, self.writer.output_format)
            self.done_bytes = state["bytes"]
            with open(self.partial, "r+b") as handle:
                handle.truncate(self.done_bytes)  # drop a batch that was cut off mid-write
            return state["records"]
        if resume and self.output.exists():
            raise LabelInputError(f"{self.output} is already complete; nothing to resume")
        self.partial.write_text(self.writer.header(), encoding="utf-8")
        self.done_bytes = self.partial.stat().st_size
        write_progress(self.progress, {"records": 0, "bytes": self.done_bytes})
        return 0

    def commit(self, done_records: int, values: list[dict]) -> None:
        data = "".join(self.writer.render(value) for value in values).encode("utf-8")
        with open(self.partial, "ab") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        self.done_bytes += len(data)
        write_progress(self.progress, {"records": done_records, "bytes": self.done_bytes})

    def finish(self) -> None:
        os.replace(self.partial, self.output)
        self.progress.unlink(missing_ok=True)


def _batches(
    records: Iterator[InputRecord], batch_size: int, done: int, strict: bool, where: Callable[[InputRecord], str]
) -> Iterator[Batch]:
    """The model batches: consecutive records from ``done`` on, each batch closed once its turns reach
    ``batch_size``. A run resumed after a batch therefore labels the very batches an uninterrupted run does."""
    batch: Batch = []
    turns = 0
    for record in records:
        if record.index < done:
            continue
        if record.error is not None and strict:
            raise LabelInputError(f"{where(record)}: {record.error}")
        batch.append(record)
        turns += record.turns
        if turns >= batch_size:
            yield batch
            batch, turns = [], 0
    if batch:
        yield batch


def resolve_output_format(kind: str, output: Path, output_format: str | None) -> str:
    """The output format asked for, else from OUTPUT's suffix: ``.parquet``, ``.csv`` (for CSV input), else JSONL."""
    if output_format is None:
        by_suffix = {".parquet": "parquet", ".csv": "csv" if kind == "csv" else "jsonl"}
        output_format = by_suffix.get(output.suffix.lower(), "jsonl")
    if output_format not in OUTPUT_FORMATS:
        raise LabelInputError(f"output format must be one of {', '.join(OUTPUT_FORMATS)}, not {output_format!r}")
    if output_format == "csv" and kind != "csv":
        raise LabelInputError("CSV output is only for CSV input; write JSONL or Parquet instead")
    return output_format


def label_file(
    classifier: Classifier | LabellingEngine,
    input_path: str | Path,
    output_path: str | Path,
    *,
    batch_size: int = 64,
    resume: bool = False,
    strict: bool = False,
    output_format: str | None = None,
    on_bad_line: Callable[[BadLine], None] | None = None,
    on_warning: Callable[[BadLine], None] | None = None,
    progress: bool | None = None,
    policy: EscalationPolicy | None = None,
    part_records: int = PART_RECORDS,
) -> LabelSummary:
    """Label ``input_path`` into ``output_path`` (see the module docstring).

    ``classifier``: a loaded model, run in this process, or an engine that runs it elsewhere
    (:class:`~tonewatch.labelling.ray_engine.RayEngine`); the output is the same.

    ``policy``: the escalation policy applied to conversations (default: the label guide's rules).
    ``output_format``: ``jsonl``, ``csv`` or ``parquet`` (default: from the output's suffix, see
    :func:`resolve_output_format`). ``part_records``: records per part of Parquet output.

    ``on_bad_line`` is called for each record skipped as unreadable, ``on_warning`` for each record labelled
    and kept with a problem to report (invalid gold labels); both get its line number."""
    source, output = Path(input_path), Path(output_path)
    if not source.is_file():
        raise LabelInputError(f"input file {source} does not exist")
    if batch_size < 1:
        raise LabelInputError("batch_size must be >= 1")
    if part_records < 1:
        raise LabelInputError("part_records must be >= 1")
    engine = classifier if isinstance(classifier, LabellingEngine) else LocalEngine(classifier)
    kind = detect_kind(source)
    output_format = resolve_output_format(kind, output, output_format)
    unit = "row" if is_parquet(source) else "line"
    if output_format == "parquet":
        from tonewatch.labelling.parquet import ParquetOutput, output_schema

        sink = ParquetOutput(output, output_schema(source, kind, read_records), part_records, kind)
    else:
        fieldnames = None
        if kind == "csv":
            with open(source, encoding="utf-8-sig", newline="") as handle:
                fieldnames = [*next(csv.reader(handle)), "prediction"]
        sink = _TextOutput(output, _Writer(output_format, fieldnames))
    summary = LabelSummary(kind)
    policy = policy if policy is not None else EscalationPolicy()

    done_records = sink.start(resume)
    summary.resumed_from = done_records
    total = sum(1 for _ in read_records(source, kind)) if _show_progress(progress) else None
    bar = _progress_bar(total, done_records, progress)
    plan = InputPlan(source, kind, batch_size, done_records, strict)
    with closing(engine.label_input(plan, policy)) as labelled_batches:
        for batch, labelled in labelled_batches:
            if len(labelled) != sum(record.error is None for record in batch):
                raise RuntimeError(f"the {engine.name} engine returned {len(labelled)} records for a batch")
            written = iter(labelled)
            values = []
            for record in batch:
                if record.error is not None:
                    bad = BadLine(record.line_number, record.error, unit)
                    summary.skipped.append(bad)
                    if on_bad_line:
                        on_bad_line(bad)
                    continue
                if record.warning is not None:
                    warning = BadLine(record.line_number, record.warning, unit)
                    summary.warnings.append(warning)
                    if on_warning:
                        on_warning(warning)
                values.append(next(written))
                summary.labelled_turns += record.turns
            sink.commit(batch[-1].index + 1, values)
            summary.records += len(values)
            if bar is not None:
                bar.update(len(batch))
    if bar is not None:
        bar.close()
    sink.finish()
    return summary


def _show_progress(progress: bool | None) -> bool:
    return sys.stderr.isatty() if progress is None else progress


def _progress_bar(total: int | None, initial: int, progress: bool | None):
    if not _show_progress(progress):
        return None
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, unit="record", desc="labelling", file=sys.stderr)
