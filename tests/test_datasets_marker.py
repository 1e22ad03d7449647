"""The rule for tests that read the third-party datasets, run through tests/conftest.py itself (pytester):
marked ``datasets``; skipped when ``$TONEWATCH_DATA`` is unset; failed when it names no folder; an unmarked
use of the ``data_root`` fixture stops the run."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

CONFTEST = Path(__file__).with_name("conftest.py")

MARKED = """
import pytest

@pytest.mark.datasets
def test_reads_the_data(data_root):
    assert data_root.is_dir()
"""


@pytest.fixture
def suite(pytester):
    pytester.makeconftest(CONFTEST.read_text(encoding="utf-8"))
    pytester.makeini("[pytest]\nmarkers =\n    datasets: reads the third-party datasets\n")
    return pytester


def test_a_marked_test_skips_with_a_reason_when_no_data_root_is_configured(suite, monkeypatch):
    monkeypatch.delenv("TONEWATCH_DATA", raising=False)
    suite.makepyfile(test_marked=MARKED)
    result = suite.runpytest_inprocess("-rs")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*third-party datasets not configured: set $TONEWATCH_DATA*"])


def test_a_marked_test_fails_when_the_data_root_names_no_folder(suite, monkeypatch, tmp_path):
    monkeypatch.setenv("TONEWATCH_DATA", str(tmp_path / "missing"))
    suite.makepyfile(test_marked=MARKED)
    result = suite.runpytest_inprocess()
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines([f"*$TONEWATCH_DATA is {tmp_path / 'missing'}, which is not a folder*"])


def test_a_marked_test_runs_when_the_data_root_exists(suite, monkeypatch, tmp_path):
    monkeypatch.setenv("TONEWATCH_DATA", str(tmp_path))
    suite.makepyfile(test_marked=MARKED)
    suite.runpytest_inprocess().assert_outcomes(passed=1)


def test_an_unmarked_use_of_the_data_root_stops_the_run(suite, monkeypatch, tmp_path):
    monkeypatch.setenv("TONEWATCH_DATA", str(tmp_path))
    suite.makepyfile(
        test_unmarked="""
def test_forgot_the_marker(data_root):
    assert data_root.is_dir()

def test_needs_no_data():
    assert True
"""
    )
    result = suite.runpytest_inprocess()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*without @pytest.mark.datasets: test_unmarked.py::test_forgot_the_marker"])


def test_every_test_file_marks_its_data_root_tests():
    """Statically, over every test file (the hook above sees only the tests a run collects)."""
    unmarked, using = [], 0
    for path in sorted(CONFTEST.parent.rglob("test_*.py")):
        module = ast.parse(path.read_text(encoding="utf-8"))
        module_marked = "pytest.mark.datasets" in ast.unparse(module) and any(
            isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "pytestmark" for t in node.targets)
            for node in module.body
        )
        for node in ast.walk(module):
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test_"):
                uses = any(argument.arg == "data_root" for argument in node.args.args)
                marked = any(ast.unparse(decorator) == "pytest.mark.datasets" for decorator in node.decorator_list)
                using += uses
                if uses and not (marked or module_marked):
                    unmarked.append(f"{path.name}::{node.name}")
    assert using > 0 and not unmarked, unmarked
