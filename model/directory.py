"""The one writer of a tonewatch model directory (its one reader is ``Classifier.from_pretrained``).

Training calls :func:`save_pretrained` for every directory it writes, so the
files keep one format: ``config.json`` from :meth:`ModelConfig.to_json` and
``model.safetensors`` with the tensor names the loader expects.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import torch

from tonewatch.model.modeling import HEAD_PREFIXES, TRAINED_ENCODER_PARAMETERS
from tonewatch.model.types import CONFIG_NAME, WEIGHTS_NAME, ModelConfig


def _is_stored_tensor(name: str) -> bool:
    """Whether the loader reads a tensor of this name: a LoRA factor, a trained encoder parameter, a head."""
    is_lora = name.startswith("encoder.") and name.endswith((".lora_A", ".lora_B"))
    return is_lora or name in TRAINED_ENCODER_PARAMETERS or name.startswith(HEAD_PREFIXES)


def save_pretrained(
    directory: str | Path, weights: Mapping[str, torch.Tensor], config: ModelConfig, tokenizer=None
) -> Path:
    """Write a loadable model directory; returns it.

    ``weights`` are the trained tensors only (``encoder.<module>.lora_A`` /
    ``lora_B`` factors, the token-type embeddings, the two heads), as
    ``tonewatch.training.train.trainable_state`` names them; any other name is
    refused, since the loader would refuse it. ``tokenizer`` (optional: the
    loader falls back to the base encoder's) has its files saved beside them.
    """
    unknown = sorted(name for name in weights if not _is_stored_tensor(name))
    if unknown:
        raise ValueError(f"tensors a model directory does not store: {unknown}")
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    save_file(dict(weights), str(directory / WEIGHTS_NAME), metadata={"format": "pt"})
    (directory / CONFIG_NAME).write_text(json.dumps(config.to_json(), indent=2, ensure_ascii=False) + "\n")
    if tokenizer is not None:
        tokenizer.save_pretrained(str(directory))
    return directory
