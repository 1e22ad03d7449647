"""The benchmark scripts' report writing (their timings are measured by running them, never by tests)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


@pytest.fixture(scope="module")
def speed():
    sys.path.insert(0, str(BENCHMARKS))  # the scripts import their sibling ``_machine``
    try:
        spec = importlib.util.spec_from_file_location("tonewatch_bench_speed", BENCHMARKS / "speed.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.path.remove(str(BENCHMARKS))


def result(path: str, p50: float) -> dict:
    return {
        "path": path,
        "p50_ms": p50,
        "p99_ms": 2 * p50,
        "turns_per_s": 100.0,
        "texts_per_s": 200.0,
        "peak_rss_mb": 1000,
        "load_s": 1.5,
        "emotion_agreement": 1.0,
        "escalation_agreement": 0.99,
    }


SETTINGS = {
    "machine": "test machine",
    "threads": 2,
    "model": "m",
    "layers": 6,
    "turns": 10,
    "timed": 10,
    "tokens": "median 80 tokens",
}


def test_speed_table_gives_the_speed_up_against_the_naive_path(speed, tmp_path):
    out = tmp_path / "speed.md"
    speed.write_markdown([result("naive", 20.0), result("onnx", 10.0)], SETTINGS, out)
    rows = [line for line in out.read_text().splitlines() if line.startswith("| onnx ")]
    assert rows and "| 2.0× |" in rows[0]


def test_speed_table_without_the_naive_path_leaves_the_speed_up_out(speed, tmp_path):
    out = tmp_path / "speed.md"
    speed.write_markdown([result("onnx", 10.0)], SETTINGS, out)
    rows = [line for line in out.read_text().splitlines() if line.startswith("| onnx ")]
    assert rows and "| - |" in rows[0]


@pytest.fixture(scope="module")
def label_engines():
    sys.path.insert(0, str(BENCHMARKS))
    try:
        spec = importlib.util.spec_from_file_location("tonewatch_bench_label", BENCHMARKS / "label_engines.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.path.remove(str(BENCHMARKS))


def engine_result(engine: str, actor_rss: int | None) -> dict:
    return {
        "engine": engine,
        "detail": "d",
        "records": 5,
        "turns": 12,
        "start_s": 1.5,
        "label_s": 2.25,
        "turns_per_s": 5.3,
        "driver_cpu_s": 0.1,
        "driver_peak_rss_mb": 300,
        "actor_peak_rss_mb": actor_rss,
    }


def test_label_engines_table_says_when_an_output_differs_from_the_local_engines(label_engines):
    results = [engine_result("local", None), engine_result("2x1", 1800)]
    table = label_engines.markdown(results, Path("a.jsonl"), {"local": True, "2x1": False}, 1.0)
    rows = {line.split(" | ")[0]: line for line in table.splitlines() if line.startswith("| ")}
    assert rows["| local"].endswith("| 300 | yes |")
    assert rows["| 2x1"].endswith("| driver 300, each actor 1800 | NO |") and "| 3.8 |" in rows["| 2x1"]
