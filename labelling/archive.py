"""``tonewatch label``: label an archive of conversations or texts, resumably.

Input kinds, detected from the content:

- JSONL of conversations in the project's format (objects with ``turns``):
  every customer turn gains a ``prediction``, which holds the escalation policy's
  ``escalation`` (``escalate``, ``score``, ``reasons``, ``since_turn``: the label
  guide's rules applied turn by turn, :mod:`tonewatch.tracking.policy`) beside the
  model's own ``escalate`` and ``escalate_score``;
- JSONL of single texts (objects with ``text``): each record gains a ``prediction``;
- CSV with a ``text`` column: each row gains a ``prediction`` (as a JSON
  column in CSV output, or an object in JSONL output).

Output keeps every record, in order, with every field. It is written to
``OUTPUT.partial`` one batch at a time (flushed and fsynced), and a small
``OUTPUT.progress`` file records how many input records and output bytes are
done, replaced atomically after each batch. ``resume=True`` truncates the
partial output to the recorded size and continues after the recorded record,
so an interrupted run neither loses nor duplicates records. The finished
file is renamed into place.

Unreadable input (invalid JSON, a record that does not follow the format:
no turns, a turn without text, ...) is reported with its line number; it is
skipped, or fails the run when ``strict=True``; it is never dropped silently.
Invalid gold labels (an ``emotion`` that is not one of the labels, an
``escalate`` that is not true/false) are not the model's business: such a
record is labelled and kept as it is, with a warning naming its line.
"""

from __future__ import annotations

import csv
import io
import json
import os
import sys
from collections.abc import Callable, Iterator
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


class LabelInputError(ValueError):
    """The input cannot be labelled (unknown kind, bad line in strict mode, nothing to resume)."""


@dataclass
class BadLine:
    line_number: int
    reason: str


@dataclass
class LabelSummary:
    kind: str
    records: int = 0
    labelled_turns: int = 0
    skipped: list[BadLine] = field(default_factory=list)
    warnings: list[BadLine] = field(default_factory=list)
    """Records labelled and written but with something to report (invalid gold labels), one per record."""
    resumed_from: int = 0


def detect_kind(path: Path) -> str:
    """``conversations``, ``texts`` or ``csv``, from the first non-blank line of ``path``."""
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


def read_records(path: Path, kind: str) -> Iterator[InputRecord]:
    """Every record of the input, numbered; unreadable ones carry their error."""
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
                    yield InputRecord(index, line_number, row)
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
                error = _check(value, kind)
                warning = _gold_warning(value) if error is None and kind == "conversations" else None
                yield InputRecord(index, line_number, value, error=error, warning=warning)
            index += 1


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


def _turn_inputs(record: InputRecord, kind: str) -> list[TurnInput]:
    if kind == "conversations":
        return conversation_turn_inputs(record.value)
    return [TurnInput(record.value["text"].strip(), (), record.value.get("lang") or None)]


def _escalated(
    classifier: Classifier, policy: EscalationPolicy, record: InputRecord, predictions: list[Prediction]
) -> list[dict]:
    """A conversation's predictions as written: each with the policy's ``escalation`` for its turn."""
    conversation = record.value
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


def _attach(record: InputRecord, kind: str, predictions: list[dict]) -> dict:
    value = dict(record.value)
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
            return json.dumps(value, ensure_ascii=False) + "\n"
        buffer = io.StringIO()
        row = {**value, "prediction": json.dumps(value["prediction"], ensure_ascii=False)}
        csv.DictWriter(buffer, fieldnames=self.fieldnames, lineterminator="\n").writerow(row)
        return buffer.getvalue()


def _progress_paths(output: Path) -> tuple[Path, Path]:
    return output.with_name(output.name + ".partial"), output.with_name(output.name + ".progress")


def _write_progress(path: Path, state: dict) -> None:
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(state))
    os.replace(temporary, path)


def label_file(
    classifier: Classifier,
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
) -> LabelSummary:
    """Label ``input_path`` into ``output_path`` (see the module docstring).

    ``policy``: the escalation policy applied to conversations (default: the label guide's rules).

    ``on_bad_line`` is called for each record skipped as unreadable, ``on_warning`` for each record labelled
    and kept with a problem to report (invalid gold labels); both get its line number."""
    source, output = Path(input_path), Path(output_path)
    if not source.is_file():
        raise LabelInputError(f"input file {source} does not exist")
    if batch_size < 1:
        raise LabelInputError("batch_size must be >= 1")
    kind = detect_kind(source)
    if output_format is None:
        output_format = "csv" if (kind == "csv" and output.suffix.lower() == ".csv") else "jsonl"
    if output_format not in ("jsonl", "csv"):
        raise LabelInputError(f"output format must be jsonl or csv, not {output_format!r}")
    if output_format == "csv" and kind != "csv":
        raise LabelInputError("CSV output is only for CSV input; write JSONL instead")
    fieldnames = None
    if kind == "csv":
        with open(source, encoding="utf-8-sig", newline="") as handle:
            fieldnames = [*next(csv.reader(handle)), "prediction"]
    writer = _Writer(output_format, fieldnames)
    partial, progress_file = _progress_paths(output)
    summary = LabelSummary(kind)
    policy = policy if policy is not None else EscalationPolicy()

    done_records, done_bytes = 0, 0
    if resume and progress_file.exists() and partial.exists():
        state = json.loads(progress_file.read_text())
        done_records, done_bytes = state["records"], state["bytes"]
        summary.resumed_from = done_records
        with open(partial, "r+b") as handle:
            handle.truncate(done_bytes)  # drop a batch that was cut off mid-write
    else:
        if resume and output.exists():
            raise LabelInputError(f"{output} is already complete; nothing to resume")
        partial.write_text(writer.header(), encoding="utf-8")
        done_bytes = partial.stat().st_size
        _write_progress(progress_file, {"records": 0, "bytes": done_bytes})

    total = sum(1 for _ in read_records(source, kind)) if _show_progress(progress) else None
    bar = _progress_bar(total, done_records, progress)
    batch: list[InputRecord] = []

    def flush() -> None:
        nonlocal done_records, done_bytes
        if not batch:
            return
        readable = [record for record in batch if record.error is None]
        inputs = [_turn_inputs(record, kind) for record in readable]
        flat = [turn for turns in inputs for turn in turns]
        predictions = classifier.classify(flat) if flat else []
        chunks, position = [], 0
        by_index = {}
        for record, turns in zip(readable, inputs, strict=True):
            own = predictions[position : position + len(turns)]
            if kind == "conversations":
                written = _escalated(classifier, policy, record, own)
            else:
                # The text's language as the model read it: given, or its script's (TurnInput).
                written = [
                    {**p.to_dict(), "escalation": escalate_text(policy, p, turn.lang).to_dict()}
                    for p, turn in zip(own, turns, strict=True)
                ]
            by_index[record.index] = _attach(record, kind, written)
            position += len(turns)
            summary.labelled_turns += len(turns)
        for record in batch:
            if record.error is not None:
                bad = BadLine(record.line_number, record.error)
                summary.skipped.append(bad)
                if on_bad_line:
                    on_bad_line(bad)
                continue
            if record.warning is not None:
                warning = BadLine(record.line_number, record.warning)
                summary.warnings.append(warning)
                if on_warning:
                    on_warning(warning)
            chunks.append(writer.render(by_index[record.index]))
        data = "".join(chunks).encode("utf-8")
        with open(partial, "ab") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        done_records = batch[-1].index + 1
        done_bytes += len(data)
        _write_progress(progress_file, {"records": done_records, "bytes": done_bytes})
        summary.records += sum(record.error is None for record in batch)
        if bar is not None:
            bar.update(len(batch))
        batch.clear()

    turns_in_batch = 0
    for record in read_records(source, kind):
        if record.index < done_records:
            continue
        if record.error is not None and strict:
            raise LabelInputError(f"{source}:{record.line_number}: {record.error}")
        batch.append(record)
        turns_in_batch += len(_turn_inputs(record, kind)) if record.error is None else 0
        if turns_in_batch >= batch_size:
            flush()
            turns_in_batch = 0
    flush()
    if bar is not None:
        bar.close()
    os.replace(partial, output)
    progress_file.unlink(missing_ok=True)
    return summary


def _show_progress(progress: bool | None) -> bool:
    return sys.stderr.isatty() if progress is None else progress


def _progress_bar(total: int | None, initial: int, progress: bool | None):
    if not _show_progress(progress):
        return None
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, unit="record", desc="labelling", file=sys.stderr)
