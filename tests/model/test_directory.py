"""The one writer of a model directory keeps the format the loader and the shipped models use."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from tonewatch.model.classifier import Classifier
from tonewatch.model.directory import save_pretrained
from tonewatch.model.types import read_model_config, resolve_model_dir


@pytest.mark.parametrize("name", ["default", "fast"])
def test_rewriting_a_shipped_model_gives_the_same_bytes(name, tmp_path):
    shipped = resolve_model_dir(name)
    written = save_pretrained(
        tmp_path / name, load_file(str(shipped / "model.safetensors")), read_model_config(shipped)
    )
    for file in ("config.json", "model.safetensors"):
        assert (written / file).read_bytes() == (shipped / file).read_bytes(), file
    assert not (written / "tokenizer.json").exists()  # no tokenizer given: the loader uses the base encoder's


def test_a_saved_directory_loads_and_predicts_the_same(tiny_model_dir, tmp_path):
    copy = save_pretrained(
        tmp_path / "copy",
        load_file(str(tiny_model_dir / "model.safetensors")),
        read_model_config(tiny_model_dir),
        Classifier.from_pretrained(tiny_model_dir, backend="torch").tokenizer,
    )
    assert (copy / "tokenizer.json").is_file()
    items = ["你好 请问", "опять не работает"]
    original = Classifier.from_pretrained(tiny_model_dir, backend="torch").classify(items)
    reloaded = Classifier.from_pretrained(copy, backend="torch").classify(items)
    assert [p.to_dict() for p in reloaded] == [p.to_dict() for p in original]


def test_tensors_the_loader_would_refuse_are_not_written(tiny_model_dir, tmp_path):
    weights = load_file(str(tiny_model_dir / "model.safetensors"))
    config = read_model_config(tiny_model_dir)
    for name in ("context.layer.weight", "encoder.encoder.layer.0.attention.self.query.weight", "lora_A"):
        with pytest.raises(ValueError, match="does not store"):
            save_pretrained(tmp_path / "bad", {**weights, name: torch.zeros(1)}, config)
    assert not (tmp_path / "bad").exists()
