from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from tonewatch.cli import app

runner = CliRunner()


def test_help_lists_the_subcommands():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("data", "encoder"):
        assert command in result.output


def test_data_sources_lists_every_source_with_its_tier():
    from tonewatch.data.sources import SOURCES

    result = runner.invoke(app, ["data", "sources"])
    assert result.exit_code == 0
    lines = result.output.splitlines()
    assert len(lines) == len(SOURCES)
    assert any(line.startswith("callcenter_dev") and " eval " in line for line in lines)


def test_stats_on_the_packaged_in_domain_data_needs_no_data_root(tmp_path):
    result = runner.invoke(
        app, ["data", "stats", "--source", "callcenter_dev", "--data-root", str(tmp_path), "--format", "json"]
    )
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert {row["lang"] for row in rows} == {"zh", "ru"}
    assert sum(row["records"] for row in rows) == 810
    assert sum(row["escalate_yes"] for row in rows) == 240


def test_missing_data_root_is_a_one_line_error_with_exit_2(tmp_path):
    missing = tmp_path / "nowhere"
    result = runner.invoke(app, ["data", "stats", "--source", "cold", "--data-root", str(missing)])
    assert result.exit_code == 2
    assert f"data root {missing} does not exist" in result.output
    assert "Traceback" not in result.output


def test_missing_source_folder_names_the_path(tmp_path):
    result = runner.invoke(app, ["data", "stats", "--source", "cedr", "--data-root", str(tmp_path)])
    assert result.exit_code == 2
    assert str(tmp_path / "cedr") in result.output


def test_unknown_source_is_a_usage_error():
    result = runner.invoke(app, ["data", "stats", "--source", "imdb"])
    assert result.exit_code == 2
    assert "unknown sources" in result.output


@pytest.mark.datasets
def test_stats_table_on_real_data(data_root):
    result = runner.invoke(app, ["data", "stats", "--data-root", str(data_root)])
    assert result.exit_code == 0, result.output
    from tonewatch.data.sources import SOURCES

    body = result.output.splitlines()
    for name in SOURCES:
        assert any(line.startswith(name + " ") for line in body), name
