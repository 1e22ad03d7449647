"""``tonewatch label --engine ray``: the input read with Ray Data and labelled by a pool of Ray Data actors, the
same output as the local engine, byte for byte, on a local Ray runtime (one for the module, and an engine of two
actors that most tests share)."""

from __future__ import annotations

import json
import logging
import os
import pickle
import signal
import sys
import time

import pyarrow.parquet as pq
import pytest
import ray
from typer.testing import CliRunner

from tonewatch.cli import app
from tonewatch.labelling import EngineError, LabelInputError, MissingExtraError, archive, label_file
from tonewatch.labelling.archive import InputPlan, input_batches
from tonewatch.labelling.ray_data import ArchiveDatasource
from tonewatch.labelling.ray_engine import RayEngine, default_actors
from tonewatch.model.classifier import Classifier

CONVERSATIONS = [
    {"id": f"c{i}", "lang": ["zh", "ru"][i % 2], "channel": "chat", "turns": [
        {"speaker": "agent", "text": "您好" if i % 2 == 0 else "Здравствуйте"},
        {"speaker": "customer", "text": f"我的网络又断了 {i}" if i % 2 == 0 else f"Опять не работает {i}",
         "emotion": "frustrated", "escalate": False},
        *([{"speaker": "agent", "text": "抱歉"},
           {"speaker": "customer", "text": "找你们经理! " * (1 + i % 4)}] * (i % 3)),
    ]}
    for i in range(14)
]  # fmt: skip
GOLD_WARNING = {"id": "gold", "lang": "ru", "turns": [{"speaker": "customer", "text": "ну", "emotion": "furious"}]}
BAD_TURN = json.dumps({"id": "x", "turns": [{"speaker": "robot", "text": "hi"}]})


@pytest.fixture(scope="module")
def ray_runtime():
    """A small local Ray runtime for the module (Ray's CPUs are a scheduling count: 4 lets a second pool start
    beside the shared one on this 2-core machine)."""
    ray.init(num_cpus=4, include_dashboard=False, object_store_memory=100 * 1024**2, logging_level=logging.WARNING)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def engine(ray_runtime, tiny_model_dir):
    with RayEngine(tiny_model_dir, actors=2) as pool:
        yield pool


@pytest.fixture(scope="module")
def classifier(tiny_model_dir):
    return Classifier.from_pretrained(tiny_model_dir)


def write_jsonl(path, records, extra_lines=()):
    lines = [json.dumps(record, ensure_ascii=False) for record in records] + list(extra_lines)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def mixed_input(path):
    """Conversations of 1-5 customer turns, an invalid line, a conversation that breaks the format and one whose
    gold labels are invalid, in both languages."""
    write_jsonl(path, CONVERSATIONS[:5], ["{broken"])
    with open(path, "a", encoding="utf-8") as handle:
        for record in [*CONVERSATIONS[5:9], GOLD_WARNING, *CONVERSATIONS[9:]]:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
        handle.write("\n" + BAD_TURN + "\n")


def summary_fields(summary):
    return (summary.kind, summary.records, summary.labelled_turns, summary.skipped, summary.warnings)


def test_each_actor_of_the_pool_loads_the_model_once_on_the_onnx_path(engine, tmp_path):
    write_jsonl(tmp_path / "in.jsonl", CONVERSATIONS)
    label_file(engine, tmp_path / "in.jsonl", tmp_path / "out.jsonl", batch_size=1)
    actors = engine.labelled_by
    assert sum(info["batches"] for info in actors.values()) == len(CONVERSATIONS) and 1 <= len(actors) <= 2
    # one model an actor: the one instance in each actor process labelled every batch of that process
    assert all(sorted(info["actor_counts"]) == list(range(info["batches"])) for info in actors.values())
    assert {info["backend"] for info in actors.values()} == {"onnx"}
    assert engine.describe() == "on 2 Ray actors (onnx) on 1 node"


def test_the_read_task_cuts_the_local_engines_batches_one_row_each(ray_runtime, tmp_path):
    mixed_input(tmp_path / "in.jsonl")
    for plan in (
        InputPlan(tmp_path / "in.jsonl", "conversations", batch_size=3),
        InputPlan(tmp_path / "in.jsonl", "conversations", batch_size=3, done=7),  # resumed after record 7
        InputPlan(tmp_path / "in.jsonl", "conversations", batch_size=1, strict=True),
    ):
        rows = ray.data.read_datasource(ArchiveDatasource(plan, on_driver_node=True), num_cpus=0).take_all()
        assert [row["seq"] for row in rows] == list(range(len(rows)))
        read = [pickle.loads(row["batch"]) for row in rows if row["stop"] is None]
        local, stop = [], None
        try:
            local.extend(input_batches(plan))
        except LabelInputError as error:
            stop = str(error)
        assert read == local and len(read) > 1
        assert [row["stop"] for row in rows if row["stop"] is not None] == ([stop] if stop else [])
    assert stop is not None and stop.endswith(
        "in.jsonl:6: invalid JSON: Expecting property name enclosed in double quotes"
    )


def test_the_driver_does_not_read_the_input(engine, classifier, tmp_path, monkeypatch):
    mixed_input(tmp_path / "in.jsonl")
    label_file(classifier, tmp_path / "in.jsonl", tmp_path / "local.jsonl", batch_size=2)

    def not_here(*args, **kwargs):
        raise AssertionError("the driver read the input")

    # the driver's copy of the reader fails; the read task, in a Ray worker, has its own
    monkeypatch.setattr(archive, "read_records", not_here)
    monkeypatch.setattr(archive, "input_batches", not_here)
    monkeypatch.setattr(archive, "detect_kind", lambda path: "conversations")
    label_file(engine, tmp_path / "in.jsonl", tmp_path / "ray.jsonl", batch_size=2)
    assert (tmp_path / "ray.jsonl").read_bytes() == (tmp_path / "local.jsonl").read_bytes()


@pytest.mark.parametrize("batch_size", [1, 5])
def test_conversations_jsonl_are_byte_identical_to_the_local_engine(engine, classifier, tmp_path, batch_size):
    mixed_input(tmp_path / "in.jsonl")
    local = label_file(classifier, tmp_path / "in.jsonl", tmp_path / "local.jsonl", batch_size=batch_size)
    bad, warned = [], []
    remote = label_file(
        engine,
        tmp_path / "in.jsonl",
        tmp_path / "ray.jsonl",
        batch_size=batch_size,
        on_bad_line=bad.append,
        on_warning=warned.append,
    )
    assert (tmp_path / "ray.jsonl").read_bytes() == (tmp_path / "local.jsonl").read_bytes()
    assert summary_fields(remote) == summary_fields(local)
    assert [b.line_number for b in bad] == [6, 18] and [w.line_number for w in warned] == [11]
    ids = [json.loads(line)["id"] for line in (tmp_path / "ray.jsonl").read_text().splitlines()]
    assert ids == [c["id"] for c in CONVERSATIONS[:9]] + ["gold"] + [c["id"] for c in CONVERSATIONS[9:]]


def test_texts_csv_and_parquet_are_identical_to_the_local_engine(engine, classifier, tmp_path):
    pairs = [("опять не работает", "ru"), ("你们是骗子", "zh"), ("ok", None), ("позовите старшего", "ru")] * 3
    texts = [{"id": i, "text": text, "lang": lang} for i, (text, lang) in enumerate(pairs)]
    write_jsonl(tmp_path / "texts.jsonl", texts)
    (tmp_path / "in.csv").write_text('ticket,text\na1,你们是骗子\na2,"谢谢, 好的"\na3,\n', encoding="utf-8")
    write_jsonl(tmp_path / "conv.jsonl", CONVERSATIONS)
    label_file(classifier, tmp_path / "conv.jsonl", tmp_path / "conv.parquet")  # Parquet input for the runs below
    cases = [("texts.jsonl", "jsonl"), ("texts.jsonl", "parquet"), ("in.csv", "csv"), ("in.csv", "parquet"),
             ("conv.jsonl", "parquet"), ("conv.parquet", "parquet"), ("conv.parquet", "jsonl")]  # fmt: skip
    for source, output_format in cases:
        outputs = {}
        for name, runner in (("local", classifier), ("ray", engine)):
            outputs[name] = tmp_path / f"{source}.{name}.{output_format}"
            label_file(runner, tmp_path / source, outputs[name], batch_size=3, output_format=output_format)
        assert outputs["ray"].read_bytes() == outputs["local"].read_bytes(), (source, output_format)
    assert pq.read_table(tmp_path / "conv.parquet.ray.parquet").num_rows == len(CONVERSATIONS)


def test_the_default_pool_fills_the_cpus_unless_memory_is_short():
    gib = 1024**3
    assert default_actors({"CPU": 8.0, "memory": 64.0 * gib}, threads=1) == 8
    assert default_actors({"CPU": 8.0, "memory": 64.0 * gib}, threads=2) == 4
    assert default_actors({"CPU": 8.0, "memory": 5.0 * gib}, threads=1) == 2  # 2 GiB an actor
    assert default_actors({"CPU": 0.5, "memory": 1.0 * gib}, threads=1) == 1  # at least one


def test_a_batch_out_of_order_is_an_error_and_nothing_after_it_is_written(engine, classifier, tmp_path, monkeypatch):
    from tonewatch.labelling import ray_data

    write_jsonl(tmp_path / "in.jsonl", CONVERSATIONS[:6])
    label_file(classifier, tmp_path / "in.jsonl", tmp_path / "local.jsonl", batch_size=1)
    dataset_options = []
    labelled_rows = ray_data.labelled_rows

    def third_before_second(dataset):
        dataset_options.append(dataset.context.execution_options.preserve_order)
        rows = list(labelled_rows(dataset))
        yield from [rows[0], rows[2], rows[1], *rows[3:]]

    monkeypatch.setattr(ray_data, "labelled_rows", third_before_second)
    with pytest.raises(EngineError, match="returned batch 2 where batch 1 belongs"):
        label_file(engine, tmp_path / "in.jsonl", tmp_path / "ray.jsonl", batch_size=1)
    assert dataset_options == [True]
    first_line = (tmp_path / "local.jsonl").read_bytes().split(b"\n")[0] + b"\n"
    assert (tmp_path / "ray.jsonl.partial").read_bytes() == first_line


def test_an_interrupted_ray_run_resumes_to_the_uninterrupted_output(engine, classifier, tmp_path):
    mixed_input(tmp_path / "in.jsonl")
    label_file(classifier, tmp_path / "in.jsonl", tmp_path / "clean.jsonl", batch_size=2)
    label_file(classifier, tmp_path / "in.jsonl", tmp_path / "clean.parquet", batch_size=2, part_records=3)

    def interrupt(bad):
        if bad.line_number == 18:  # the last bad line: Ctrl-C with batches before it still in flight
            raise KeyboardInterrupt

    for output, resume_with in (("out.jsonl", engine), ("again.jsonl", classifier), ("out.parquet", engine)):
        with pytest.raises(KeyboardInterrupt):
            label_file(
                engine, tmp_path / "in.jsonl", tmp_path / output, batch_size=2, part_records=3, on_bad_line=interrupt
            )
        state = json.loads((tmp_path / f"{output}.progress").read_text())
        assert 0 < state["records"] < 17 and not (tmp_path / output).exists()
        if output.endswith(".jsonl"):
            with open(tmp_path / f"{output}.partial", "a", encoding="utf-8") as handle:
                handle.write('{"id": "half-written')  # a batch cut off mid-write
        summary = label_file(
            resume_with, tmp_path / "in.jsonl", tmp_path / output, batch_size=2, part_records=3, resume=True
        )
        assert summary.resumed_from == state["records"]
        clean = tmp_path / ("clean.parquet" if output.endswith(".parquet") else "clean.jsonl")
        assert (tmp_path / output).read_bytes() == clean.read_bytes(), output


def test_strict_stops_at_the_bad_line_with_what_was_labelled_before_it_written(
    engine, classifier, tmp_path, monkeypatch
):
    mixed_input(tmp_path / "in.jsonl")
    monkeypatch.chdir(tmp_path)  # a relative input: the read task, in another working directory, still finds it
    partials = {}
    for name, runner in (("local", classifier), ("ray", engine)):
        with pytest.raises(LabelInputError, match=r"^in\.jsonl:6: invalid JSON"):
            label_file(runner, "in.jsonl", f"{name}.jsonl", batch_size=1, strict=True)
        partials[name] = (tmp_path / f"{name}.jsonl.partial").read_bytes()
    assert partials["ray"] == partials["local"] and partials["ray"].count(b"\n") == 5


def test_an_actor_killed_mid_run_is_restarted_and_its_batches_retried(engine, classifier, tmp_path):
    mixed_input(tmp_path / "in.jsonl")
    label_file(classifier, tmp_path / "in.jsonl", tmp_path / "local.jsonl", batch_size=1)
    killed = []

    def kill_an_actor(bad):  # called by the driver at line 6, after batches 0-4 came back, with more in flight
        if not killed:
            killed.append(next(iter(engine.labelled_by)))
            os.kill(killed[0], signal.SIGKILL)

    label_file(engine, tmp_path / "in.jsonl", tmp_path / "ray.jsonl", batch_size=1, on_bad_line=kill_an_actor)
    assert killed and (tmp_path / "ray.jsonl").read_bytes() == (tmp_path / "local.jsonl").read_bytes()
    batches = len(list(input_batches(InputPlan(tmp_path / "in.jsonl", "conversations", batch_size=1))))
    assert sum(info["batches"] for info in engine.labelled_by.values()) == batches == 16


def run_cli(*arguments):
    return CliRunner().invoke(app, ["label", *map(str, arguments)])


def test_cli_engine_ray_writes_what_the_local_engine_writes(ray_runtime, tiny_model_dir, tmp_path):
    mixed_input(tmp_path / "in.jsonl")
    local = run_cli(tmp_path / "in.jsonl", "-o", tmp_path / "local.parquet", "--model", tiny_model_dir)
    remote = run_cli(
        tmp_path / "in.jsonl", "-o", tmp_path / "ray.parquet", "--model", tiny_model_dir,
        "--engine", "ray", "--ray-actors", 1,
    )  # fmt: skip
    assert local.exit_code == 0 and remote.exit_code == 0, remote.output
    assert (tmp_path / "ray.parquet").read_bytes() == (tmp_path / "local.parquet").read_bytes()
    assert "warning: line 6 skipped: invalid JSON" in remote.output
    assert "labelled 15 records (conversations input, 28 turns) on 1 Ray actor (onnx) on 1 node" in remote.output


def test_cli_ray_option_errors_are_one_line_and_exit_2(ray_runtime, tiny_model_dir, tmp_path, monkeypatch):
    write_jsonl(tmp_path / "in.jsonl", CONVERSATIONS[:1])
    model = ("--model", tiny_model_dir)
    local_with_address = run_cli(tmp_path / "in.jsonl", "-o", tmp_path / "o.jsonl", *model, "--address", "auto")
    assert local_with_address.exit_code == 2 and "options of --engine ray" in local_with_address.output
    too_many = run_cli(tmp_path / "in.jsonl", "-o", tmp_path / "o.jsonl", *model, "--engine", "ray", "--ray-actors", 64)
    assert too_many.exit_code == 2 and "the Ray cluster has 4" in too_many.output
    not_a_model = run_cli(tmp_path / "in.jsonl", "-o", tmp_path / "o.jsonl", "--model", tmp_path, "--engine", "ray")
    assert not_a_model.exit_code == 2 and "not a tonewatch model directory" in not_a_model.output
    monkeypatch.setitem(sys.modules, "ray", None)
    missing = run_cli(tmp_path / "in.jsonl", "-o", tmp_path / "o.jsonl", *model, "--engine", "ray")
    assert missing.exit_code == 2 and "pip install 'tonewatch[ray]'" in missing.output
    with pytest.raises(MissingExtraError):
        RayEngine(tiny_model_dir)
    assert not (tmp_path / "o.jsonl").exists()


def test_an_address_nobody_listens_on_fails_at_once(tiny_model_dir, tmp_path, monkeypatch):
    write_jsonl(tmp_path / "in.jsonl", CONVERSATIONS[:1])
    monkeypatch.setattr(ray, "is_initialized", lambda: False)  # as in a fresh `tonewatch label` process
    monkeypatch.setattr(ray, "init", lambda **kwargs: pytest.fail("ray.init would retry for minutes"))
    started = time.monotonic()
    unreachable = RayEngine(tiny_model_dir, address="ray://127.0.0.1:1")
    with pytest.raises(EngineError, match=r"could not reach the Ray cluster at ray://127\.0\.0\.1:1"), unreachable:
        label_file(unreachable, tmp_path / "in.jsonl", tmp_path / "o.jsonl")
    assert time.monotonic() - started < 10
