from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tonewatch.cli import app

runner = CliRunner()
RECIPES = Path(__file__).resolve().parents[1] / "configs"


def test_help_lists_the_subcommands():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("data", "encoder"):
        assert command in result.output


def test_version_alone_prints_the_package_version():
    from tonewatch import __version__

    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == __version__


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


def test_no_data_root_is_one_line_with_exit_2(monkeypatch):
    from tonewatch.data.paths import NO_DATA_ROOT

    monkeypatch.delenv("TONEWATCH_DATA", raising=False)
    result = runner.invoke(app, ["data", "stats", "--source", "cold"])
    assert result.exit_code == 2
    assert result.output.splitlines() == [f"error: {NO_DATA_ROOT}"]


def test_a_data_root_env_that_names_no_folder_says_so(monkeypatch, tmp_path):
    monkeypatch.setenv("TONEWATCH_DATA", str(tmp_path / "gone"))
    result = runner.invoke(app, ["data", "stats", "--source", "cold"])
    assert result.exit_code == 2
    assert result.output.splitlines() == [f"error: data root {tmp_path / 'gone'} does not exist (from $TONEWATCH_DATA)"]


def test_train_without_a_data_root_stops_before_writing_anything(monkeypatch, tmp_path):
    from tonewatch.data.paths import NO_DATA_ROOT

    monkeypatch.delenv("TONEWATCH_DATA", raising=False)
    output = tmp_path / "run"
    result = runner.invoke(app, ["train", "--config", str(RECIPES / "default.toml"), "--set", f"output_dir='{output}'"])
    assert result.exit_code == 2, result.output
    assert result.output.splitlines()[-1] == f"error: {NO_DATA_ROOT}" and "Traceback" not in result.output
    assert not output.exists()


def test_train_data_root_option_wins_over_the_config_file(monkeypatch, tmp_path):
    import tonewatch.training.train

    given = []
    monkeypatch.setattr(tonewatch.training.train, "train", lambda config, **options: given.append(config) or {})
    recipe = tmp_path / "recipe.toml"
    recipe.write_text(f'extends = "{RECIPES / "default.toml"}"\ndata_root = "from-file"\n')
    assert runner.invoke(app, ["train", "-c", str(recipe), "--data-root", str(tmp_path)]).exit_code == 0
    assert runner.invoke(app, ["train", "-c", str(recipe)]).exit_code == 0
    monkeypatch.setenv("TONEWATCH_DATA", "from-env")
    assert runner.invoke(app, ["train", "-c", str(recipe), "--set", "data_root='from-set'"]).exit_code == 0
    assert [config.data_root for config in given] == [str(tmp_path), "from-file", "from-set"]


def test_a_bad_config_is_one_line_naming_the_file_and_key(tmp_path):
    recipe = tmp_path / "bad.toml"
    recipe.write_text('extends = "nowhere.toml"\n')
    result = runner.invoke(app, ["train", "--config", str(recipe)])
    assert result.exit_code == 2
    assert result.output.splitlines() == [f"error: config file {tmp_path / 'nowhere.toml'} does not exist"]
    recipe.write_text("max_steps = 'many'\n")
    result = runner.invoke(app, ["train", "--config", str(recipe), "--set", "lora_r=2"])
    assert result.exit_code == 2
    assert result.output.splitlines() == [f"error: {recipe}: max_steps must be an integer, got 'many'"]
    result = runner.invoke(app, ["serve", "--config", str(recipe)])
    assert result.exit_code == 2
    (line,) = result.output.splitlines()
    assert line.startswith(f"error: {recipe}: unknown key 'max_steps' in ServeConfig")


@pytest.mark.parametrize(
    ("error", "user_facing"),
    [
        ("ConfigError", True),
        ("SourceNotFoundError", True),
        ("DataRootNotFoundError", True),
        ("ValueError", False),  # a bug, e.g. in a data adapter, is not the user's input
        ("KeyError", False),
        ("RuntimeError", False),
    ],
)
def test_only_user_facing_errors_become_one_line_errors(monkeypatch, tmp_path, error, user_facing):
    import tonewatch.data.sources
    from tonewatch.configfile import ConfigError
    from tonewatch.data.paths import DataRootNotFoundError
    from tonewatch.data.sources.base import SourceNotFoundError

    kinds = {"ConfigError": ConfigError, "SourceNotFoundError": SourceNotFoundError}
    kinds |= {"DataRootNotFoundError": DataRootNotFoundError, "ValueError": ValueError}
    kinds |= {"KeyError": KeyError, "RuntimeError": RuntimeError}

    def load_source(name, data_root=None):
        raise kinds[error]("something went wrong")

    monkeypatch.setattr(tonewatch.data.sources, "load_source", load_source)
    result = runner.invoke(app, ["data", "stats", "--source", "cold", "--data-root", str(tmp_path)])
    if user_facing:
        assert result.exit_code == 2
        assert result.output.splitlines() == ["error: something went wrong"]
    else:  # propagates with its traceback (typer's CliRunner catches it into result.exception)
        assert result.exit_code == 1
        assert type(result.exception) is kinds[error] and "error:" not in result.output


def test_evaluate_refuses_two_different_models():
    result = runner.invoke(app, ["evaluate", "runs/a", "--model", "runs/b"])
    assert result.exit_code == 2
    assert result.output.splitlines() == ["error: two models given: runs/a and --model runs/b; give one"]


def _options() -> dict[str, list[tuple[str, object, object]]]:
    """Every option of every command: its first flag -> [(command, declared value type, the parsed option)]."""
    import typing

    import typer.main

    def callbacks(typer_app, prefix=""):
        for info in typer_app.registered_commands:
            yield prefix + (info.name or info.callback.__name__), info.callback
        for group in typer_app.registered_groups:
            yield from callbacks(group.typer_instance, f"{prefix}{group.name} ")

    def commands(command, prefix=""):
        for name, sub in getattr(command, "commands", {}).items():
            if hasattr(sub, "commands"):
                yield from commands(sub, f"{prefix}{name} ")
            else:
                yield prefix + name, sub

    hints = {name: typing.get_type_hints(callback) for name, callback in callbacks(app)}
    found: dict[str, list[tuple[str, object, object]]] = {}
    for name, command in commands(typer.main.get_command(app)):
        for option in command.params:
            if option.opts[0].startswith("-"):
                found.setdefault(option.opts[0], []).append((name, hints[name][option.name], option))
    return found


@pytest.mark.parametrize(
    ("flag", "commands"),
    [
        ("--model", {"label", "export", "serve", "evaluate"}),
        ("--data-root", {"data stats", "train", "evaluate"}),
        ("--backend", {"label", "serve"}),
        ("--cache-dir", {"encoder build", "cache info", "cache clear"}),
    ],
)
def test_options_that_mean_the_same_thing_have_the_same_form_everywhere(flag, commands):
    uses = _options()[flag]
    assert {name for name, _, _ in uses} >= commands
    forms = {(value_type, tuple(option.opts), option.help, option.metavar) for _, value_type, option in uses}
    assert len(forms) == 1, forms


def test_format_output_config_options_share_their_spelling():
    from enum import Enum

    options = _options()
    for name, value_type, option in options["--format"]:
        choices = typing_args_without_none(value_type)
        assert option.opts == ["--format"] and issubclass(choices, Enum), name
    table_json = [value_type for name, value_type, _ in options["--format"] if name in ("data stats", "cache info")]
    assert len(table_json) == 2 and table_json[0] is table_json[1]
    assert {tuple(option.opts) for _, _, option in options["--output"]} == {("--output", "-o")}
    assert {tuple(option.opts) for _, _, option in options["--config"]} == {("--config", "-c")}
    from tonewatch.cli import Backend
    from tonewatch.model.backends import BACKENDS

    assert tuple(Backend) == BACKENDS


def typing_args_without_none(value_type):
    import typing

    args = [arg for arg in typing.get_args(value_type) if arg is not type(None)]
    return args[0] if args else value_type


def test_train_resume_without_a_checkpoint_is_one_line_with_exit_2(tmp_path):
    output = tmp_path / "run"
    result = runner.invoke(app, ["train", "--set", f"output_dir='{output}'", "--resume"])
    assert result.exit_code == 2, result.output
    assert result.output.splitlines() == [
        f"error: nothing to resume: no checkpoint in {output}.state/checkpoint (a run writes one every "
        "checkpoint_every steps); run without --resume to start a new run"
    ]
    assert not output.exists()


def test_train_extra_data_errors_are_one_line_before_any_data_loads(tmp_path, monkeypatch):
    import tonewatch.training.train

    def no_data(config):
        raise AssertionError("the sources were loaded before extra_data was checked")

    monkeypatch.setattr(tonewatch.training.train, "build_training_data", no_data)
    (tmp_path / "recipes").mkdir()
    recipe = tmp_path / "recipes" / "mine.toml"
    recipe.write_text(f'output_dir = "{tmp_path / "run"}"\n[[extra_data]]\npath = "calls/mine.csv"\nlang = "zh"\n')
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["train", "-c", str(recipe)])
    assert result.exit_code == 2, result.output
    missing = tmp_path / "recipes" / "calls" / "mine.csv"  # beside the recipe, not in the working directory
    assert result.output.splitlines() == [f"error: extra_data[0].path: no such file: {missing.resolve()}"]
    recipe.write_text('[[extra_data]]\nfile = "calls/mine.csv"\n')
    result = runner.invoke(app, ["train", "-c", str(recipe)])
    assert result.exit_code == 2
    (line,) = result.output.splitlines()
    assert line.startswith(f"error: {recipe}: extra_data[0]: unknown key 'file' in ExtraData")
    assert not (tmp_path / "run").exists()
