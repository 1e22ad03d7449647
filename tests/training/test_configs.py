"""The shipped training recipes parse, and what they point at exists."""

from __future__ import annotations

from pathlib import Path

import pytest

from tonewatch.model.classifier import resolve_model_dir
from tonewatch.training.config import TrainConfig

ROOT = Path(__file__).resolve().parents[2]
RECIPES = sorted((ROOT / "configs").glob("*.toml"))


def test_the_recipes_are_found():
    assert {path.name for path in RECIPES} >= {"default.toml", "turns.toml", "distil3.toml"}


@pytest.mark.parametrize("path", RECIPES, ids=lambda path: path.name)
def test_every_recipe_parses_and_its_teacher_is_a_model_directory(path):
    config = TrainConfig.from_file(path)
    assert config.max_steps >= 1 and config.source_shares
    for name in config.teachers:  # a bundled model's name, or a directory relative to the repository root
        if Path(name).parts[:1] == ("runs",):
            continue  # trained first by another recipe, as the recipe's comments say
        teacher = resolve_model_dir(name)
        teacher = teacher if teacher.is_absolute() else ROOT / teacher
        assert (teacher / "config.json").is_file() and (teacher / "model.safetensors").is_file()


def test_a_teacher_is_one_model_or_a_non_empty_list_of_them():
    assert TrainConfig(teacher=["a", "b"]).teachers == ["a", "b"]
    assert TrainConfig(teacher="a").teachers == ["a"]
    assert TrainConfig().teachers == []
    for bad in ([], ["a", ""], ["a", 3]):
        with pytest.raises(ValueError, match=r"non-empty list|must be a string or a list of strings"):
            TrainConfig(teacher=bad)
