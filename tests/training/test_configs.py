"""The shipped training recipes parse, and what they point at exists."""

from __future__ import annotations

import dataclasses
import json
import re
import tomllib
from pathlib import Path

import pytest

from tonewatch.configfile import ConfigError, field_help
from tonewatch.model.types import resolve_model_dir
from tonewatch.training.config import ExtraData, TrainConfig

ROOT = Path(__file__).resolve().parents[2]
POLICIES = ("escalation.toml",)
"""Files of configs/ that are escalation policies (tonewatch.tracking.policy), not training recipes."""
RECIPES = sorted(path for path in (ROOT / "configs").glob("*.toml") if path.name not in POLICIES)


def test_the_recipes_are_found():
    assert {path.name for path in RECIPES} >= {"default.toml", "distil3.toml"}


@pytest.mark.parametrize("path", RECIPES, ids=lambda path: path.name)
def test_every_recipe_parses_and_its_teacher_is_a_model_directory(path):
    config = TrainConfig.from_file(path)
    assert config.max_steps >= 1 and config.source_shares
    if config.teacher:  # a bundled model's name, or a directory relative to the repository root
        teacher = resolve_model_dir(config.teacher)
        teacher = teacher if teacher.is_absolute() else ROOT / teacher
        assert (teacher / "config.json").is_file() and (teacher / "model.safetensors").is_file()


def test_a_teacher_is_one_model():
    assert TrainConfig(teacher="a").teacher == "a"
    assert TrainConfig().teacher is None
    for bad in (["a", "b"], []):  # ensembles of teachers were removed
        with pytest.raises(ValueError, match="one model directory"):
            TrainConfig(teacher=bad)


@pytest.mark.parametrize("name", ["default", "fast"])
def test_a_shipped_models_saved_training_config_still_loads(name):
    path = ROOT / "model" / name / "training_config.json"
    saved = json.loads(path.read_text())
    config = TrainConfig.from_file(path)
    assert config.num_hidden_layers == saved["num_hidden_layers"]


def test_a_saved_training_config_with_removed_fields_still_loads():
    """fast's training_config.json (written before the clean-up) names the removed architecture field (joint) and
    context_grad (false): both are accepted at those values."""
    path = ROOT / "model" / "fast" / "training_config.json"
    saved = json.loads(path.read_text())
    assert saved["architecture"] == "joint" and saved["context_grad"] is False
    assert TrainConfig.from_file(path).num_hidden_layers == saved["num_hidden_layers"]


def test_a_turns_run_is_refused_with_a_clear_error(tmp_path):
    recipe = tmp_path / "turns.toml"
    recipe.write_text('architecture = "turns"\n')
    removed = "is not supported: the 'turns' architecture was removed"
    with pytest.raises(ConfigError, match=f"^{re.escape(str(recipe))}: architecture = 'turns' {removed}"):
        TrainConfig.from_file(recipe)
    with pytest.raises(ConfigError, match=r"^--set context_grad=true: context_grad = True is not supported"):
        TrainConfig.from_file(None, ["context_grad=true"])
    recipe.write_text('architecture = "joint"\ncontext_grad = false\n')  # what older runs saved: accepted
    assert TrainConfig.from_file(recipe).teacher is None


RESOLVED = json.loads((ROOT / "tests" / "fixtures" / "recipes_resolved.json").read_text())
"""Every recipe's resolved values, written from the recipes as they were before they said ``extends``."""


@pytest.mark.parametrize("path", RECIPES, ids=lambda path: path.name)
def test_every_recipe_resolves_to_the_values_it_had_before_it_extended_the_default(path):
    resolved = TrainConfig.from_file(path).to_dict()
    # Fields removed since the reference was written are not compared; a field added since takes its default.
    expected = {key: value for key, value in RESOLVED[path.name].items() if key in resolved}
    assert set(expected) >= set(tomllib.loads(path.read_text())) - {"extends"}  # what the file sets is compared
    assert {key: resolved[key] for key in expected} == expected


@pytest.mark.parametrize("path", [path for path in RECIPES if path.name != "default.toml"], ids=lambda path: path.name)
def test_the_other_recipes_extend_the_default_and_list_only_what_differs(path):
    own = tomllib.loads(path.read_text())
    assert own.pop("extends") == "default.toml"
    default = TrainConfig.from_file(ROOT / "configs" / "default.toml").to_dict()
    same = [key for key, value in own.items() if TrainConfig.from_file(path).to_dict()[key] == default[key]]
    assert not same, f"{path.name} repeats the default's {same}"


def test_a_recipe_error_names_the_file_and_the_key(tmp_path):
    recipe = tmp_path / "mine.toml"
    recipe.write_text(f'extends = "{ROOT / "configs" / "default.toml"}"\nlora_r = "big"\n')
    with pytest.raises(ConfigError, match=f"^{re.escape(str(recipe))}: lora_r must be an integer, got 'big'"):
        TrainConfig.from_file(recipe)
    recipe.write_text(f'extends = "{ROOT / "configs" / "default.toml"}"\n[source_shares]\ncold = 0.3\nimdb = 0.1\n')
    with pytest.raises(ConfigError, match=f"^{re.escape(str(recipe))}: unknown sources in source_shares: \\['imdb'\\]"):
        TrainConfig.from_file(recipe)
    recipe.write_text(f'extends = "{ROOT / "configs" / "default.toml"}"\n[source_shares]\ncold = 0.3\n')
    shares = TrainConfig.from_file(recipe).source_shares
    assert shares["cold"] == 0.3 and shares["callcenter_train"] == 0.75  # the table merges key by key
    with pytest.raises(ConfigError, match="unknown key 'lora_rank' in TrainConfig; did you mean 'lora_r'"):
        TrainConfig.from_file(recipe, ["lora_rank=4"])
    assert TrainConfig.from_file(recipe, ["source_shares.cedr=0"]).source_shares["cedr"] == 0.0


def test_extra_data_tables_become_typed_entries(tmp_path):
    recipe = tmp_path / "extra.toml"
    recipe.write_text('[[extra_data]]\npath = "mine.csv"\nlang = "zh"\nshare = 1\n')
    (extra,) = TrainConfig.from_file(recipe).extra_data
    assert isinstance(extra, ExtraData) and extra.share == 1.0 and isinstance(extra.share, float)
    recipe.write_text('[[extra_data]]\npath = "mine.csv"\nformat = "xml"\n')
    with pytest.raises(ConfigError, match=r"extra_data\[0\]: extra data format must be"):
        TrainConfig.from_file(recipe)


def test_a_run_records_its_resolved_data_root_and_needs_one_only_for_third_party_sources(tmp_path, monkeypatch):
    from tonewatch.data.paths import NO_DATA_ROOT, DataRootNotFoundError
    from tonewatch.training.dataset import training_data_root

    monkeypatch.delenv("TONEWATCH_DATA", raising=False)
    in_repo_only = TrainConfig(source_shares={"callcenter_train": 1.0})
    assert training_data_root(in_repo_only) is None
    with pytest.raises(DataRootNotFoundError) as error:
        training_data_root(TrainConfig())
    assert str(error.value) == NO_DATA_ROOT
    monkeypatch.setenv("TONEWATCH_DATA", str(tmp_path))
    assert training_data_root(TrainConfig()) == str(tmp_path.resolve())
    assert training_data_root(in_repo_only) == str(tmp_path.resolve())
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    assert training_data_root(TrainConfig(data_root=str(elsewhere))) == str(elsewhere.resolve())  # beats the env


def test_show_fields_lists_every_field_with_its_help():
    rows = field_help(TrainConfig)
    assert [name for name, _, _ in rows] == [item.name for item in dataclasses.fields(TrainConfig)]
    assert all(text for _, _, text in rows)


def test_relative_extra_data_paths_resolve_against_the_config_file_or_the_working_directory(tmp_path, monkeypatch):
    tmp_path = tmp_path.resolve()
    (tmp_path / "recipes").mkdir()
    (tmp_path / "elsewhere").mkdir()
    parent = tmp_path / "recipes" / "parent.toml"
    parent.write_text('[[extra_data]]\npath = "data/mine.csv"\nlang = "zh"\n[[extra_data]]\npath = "owner/hub_set"\n')
    (tmp_path / "child").mkdir()
    child = tmp_path / "child" / "child.toml"
    child.write_text('extends = "../recipes/parent.toml"\nmax_steps = 10\nwarmup_steps = 2\n')
    monkeypatch.chdir(tmp_path / "elsewhere")
    for recipe in (parent, child):  # the file that says it, not the one that extends it nor the working directory
        local, hub = TrainConfig.from_file(recipe).extra_data
        assert local.path == str(tmp_path / "recipes" / "data" / "mine.csv")
        assert hub.path == "owner/hub_set"  # a Hugging Face dataset name is not a path
    relative_recipe = Path("..") / "recipes" / "parent.toml"  # a config file named relative to the cwd
    assert TrainConfig.from_file(relative_recipe).extra_data[0].path == str(tmp_path / "recipes" / "data" / "mine.csv")
    overridden = TrainConfig.from_file(child, ["extra_data=[{path = 'tickets.csv', lang = 'ru'}]"])
    assert [extra.path for extra in overridden.extra_data] == [str(tmp_path / "elsewhere" / "tickets.csv")]
    absolute = str(tmp_path / "abs.csv")
    assert TrainConfig.from_file(None, [f"extra_data=[{{path = '{absolute}'}}]"]).extra_data[0].path == absolute


def test_a_mistyped_extra_data_key_names_the_entry_and_the_key(tmp_path):
    recipe = tmp_path / "typo.toml"
    recipe.write_text('[[extra_data]]\npath = "mine.csv"\n[[extra_data]]\nfile = "mine.csv"\n')
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(recipe))}: extra_data\[1\]: unknown key 'file' in "):
        TrainConfig.from_file(recipe)


def test_warmup_longer_than_the_run_is_refused():
    with pytest.raises(ConfigError, match=r"warmup_steps \(50\) is larger than max_steps \(20\)"):
        TrainConfig(max_steps=20, warmup_steps=50)
    with pytest.raises(ConfigError, match=r"^--set warmup_steps=700: warmup_steps \(700\) is larger than max_steps"):
        TrainConfig.from_file(None, ["warmup_steps=700"])
    with pytest.raises(ConfigError, match="warmup_steps must be >= 0"):
        TrainConfig(warmup_steps=-1)
    assert TrainConfig(max_steps=20, warmup_steps=20).warmup_steps == 20
