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
    if config.teacher is not None:  # a bundled model's name, or a directory relative to the repository root
        teacher = resolve_model_dir(config.teacher)
        teacher = teacher if teacher.is_absolute() else ROOT / teacher
        assert (teacher / "config.json").is_file() and (teacher / "model.safetensors").is_file()
