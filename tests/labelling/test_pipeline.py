"""The local engine's pipeline (read and tokenise the next batch, write the previous one, while the model runs):
the same output as one batch at a time, errors after the batches before them, and resumable."""

from __future__ import annotations

import json
import threading

import pytest

from tonewatch.labelling import LabelInputError, label_file
from tonewatch.labelling.archive import LocalEngine
from tonewatch.model.classifier import Classifier

CONVERSATIONS = [
    {"id": f"c{i}", "lang": "zh" if i % 2 else "ru", "turns": [
        {"speaker": "agent", "text": "您好" if i % 2 else "Здравствуйте"},
        {"speaker": "customer", "text": f"我的网络又断了 {i}" if i % 2 else f"опять не работает {i}"},
        {"speaker": "agent", "text": "抱歉"},
        *([{"speaker": "customer", "text": "找你们经理!" * (i % 4 + 1)}] if i % 3 else []),
    ]}
    for i in range(23)
]  # fmt: skip


def write_jsonl(path, records, extra_lines=()):
    lines = [json.dumps(record, ensure_ascii=False) for record in records] + list(extra_lines)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


@pytest.fixture(scope="module")
def classifier(tiny_model_dir):
    return Classifier.from_pretrained(tiny_model_dir)


@pytest.mark.parametrize("batch_size", [1, 3, 64])
def test_the_pipeline_writes_what_one_batch_at_a_time_writes_byte_for_byte(classifier, tmp_path, batch_size):
    write_jsonl(tmp_path / "in.jsonl", CONVERSATIONS, extra_lines=["{broken"])
    label_file(LocalEngine(classifier, pipeline=False), tmp_path / "in.jsonl", tmp_path / "one.jsonl",
               batch_size=batch_size)  # fmt: skip
    summary = label_file(classifier, tmp_path / "in.jsonl", tmp_path / "piped.jsonl", batch_size=batch_size)
    assert (tmp_path / "piped.jsonl").read_bytes() == (tmp_path / "one.jsonl").read_bytes()
    assert [json.loads(line)["id"] for line in (tmp_path / "piped.jsonl").read_text().splitlines()] == [
        c["id"] for c in CONVERSATIONS
    ]
    assert summary.records == len(CONVERSATIONS) and [bad.line_number for bad in summary.skipped] == [24]


class FailingModel:
    """The classifier, failing with ``error`` on model call number ``fail_at`` (0-based)."""

    def __init__(self, inner, fail_at, error):
        self.inner, self.fail_at, self.error, self.calls = inner, fail_at, error, 0

    def prepare(self, items):
        return self.inner.prepare(items)

    def classify_prepared(self, prepared, batch_size=64, on_batch=None):
        self.calls += 1
        if self.calls - 1 == self.fail_at:
            raise self.error
        return self.inner.classify_prepared(prepared, batch_size, on_batch)


@pytest.mark.parametrize("error", [RuntimeError("model failed"), KeyboardInterrupt()])
def test_a_model_error_comes_after_the_batches_before_it_and_the_run_resumes(classifier, tmp_path, error):
    write_jsonl(tmp_path / "in.jsonl", CONVERSATIONS)
    label_file(classifier, tmp_path / "in.jsonl", tmp_path / "clean.jsonl", batch_size=4)
    with pytest.raises(type(error)):
        label_file(FailingModel(classifier, 3, error), tmp_path / "in.jsonl", tmp_path / "out.jsonl", batch_size=4)
    progress = json.loads((tmp_path / "out.jsonl.progress").read_text())
    partial = (tmp_path / "out.jsonl.partial").read_bytes()
    assert len(partial) == progress["bytes"] and partial == (tmp_path / "clean.jsonl").read_bytes()[: len(partial)]
    written = [json.loads(line)["id"] for line in partial.decode().splitlines()]
    assert len(written) == progress["records"] > 0  # the three batches before the failing one, each whole
    summary = label_file(classifier, tmp_path / "in.jsonl", tmp_path / "out.jsonl", batch_size=4, resume=True)
    assert summary.resumed_from == progress["records"]
    assert (tmp_path / "out.jsonl").read_bytes() == (tmp_path / "clean.jsonl").read_bytes()


def test_an_unreadable_line_in_strict_mode_fails_after_the_batches_before_it(classifier, tmp_path):
    write_jsonl(tmp_path / "in.jsonl", CONVERSATIONS[:9], extra_lines=["{broken"])
    with pytest.raises(LabelInputError, match=r"in\.jsonl:10"):
        label_file(classifier, tmp_path / "in.jsonl", tmp_path / "out.jsonl", batch_size=2, strict=True)
    progress = json.loads((tmp_path / "out.jsonl.progress").read_text())
    assert progress["records"] == 9  # every record before the bad line was labelled and written


def test_a_write_error_stops_reading_and_labelling(classifier, tmp_path, monkeypatch):
    write_jsonl(tmp_path / "in.jsonl", CONVERSATIONS)
    model = FailingModel(classifier, None, None)
    from tonewatch.labelling import archive

    def broken_commit(self, done_records, values):
        raise OSError("disk full")

    monkeypatch.setattr(archive._TextOutput, "commit", broken_commit)
    with pytest.raises(OSError, match="disk full"):
        label_file(model, tmp_path / "in.jsonl", tmp_path / "out.jsonl", batch_size=2)
    assert model.calls <= 2  # the first batch's write failed: at most the batch after it was labelled
    assert not any(thread.name.startswith("tonewatch-") for thread in threading.enumerate())


class HandshakeModel(FailingModel):
    """The model's first batch finishes only once the second batch has been prepared: it deadlocks (and fails
    the test on the guard) unless preparing runs beside the model."""

    def __init__(self, inner):
        super().__init__(inner, None, None)
        self.prepared = 0
        self.second_prepared = threading.Event()
        self.overlapped = False

    def prepare(self, items):
        self.prepared += 1
        if self.prepared == 2:
            self.second_prepared.set()
        return super().prepare(items)

    def classify_prepared(self, prepared, batch_size=64, on_batch=None):
        if self.calls == 0:
            self.overlapped = self.second_prepared.wait(timeout=60)  # a guard against a hang, not a timing
        return super().classify_prepared(prepared, batch_size, on_batch)


def test_the_next_batch_is_prepared_while_the_model_runs(classifier, tmp_path):
    write_jsonl(tmp_path / "in.jsonl", CONVERSATIONS)
    model = HandshakeModel(classifier)
    label_file(model, tmp_path / "in.jsonl", tmp_path / "out.jsonl", batch_size=4)
    assert model.overlapped
    label_file(classifier, tmp_path / "in.jsonl", tmp_path / "clean.jsonl", batch_size=4)
    assert (tmp_path / "out.jsonl").read_bytes() == (tmp_path / "clean.jsonl").read_bytes()
