"""Inference: a model directory -> predictions (the one loader, the heads, the base encoder).

The types are imported eagerly and need no torch; :class:`Classifier` (torch,
transformers) is imported on first use, so ``from tonewatch.model import
TurnInput`` stays cheap for the tracker and the server's configuration.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tonewatch.model.types import (
    DEFAULT_MODEL_DIR,
    Calibration,
    ModelConfig,
    ModelDirectoryError,
    Prediction,
    TurnInput,
)

if TYPE_CHECKING:
    from tonewatch.model.classifier import Classifier

__all__ = [
    "DEFAULT_MODEL_DIR",
    "Calibration",
    "Classifier",
    "ModelConfig",
    "ModelDirectoryError",
    "Prediction",
    "TurnInput",
]


def __getattr__(name: str):
    if name == "Classifier":
        from tonewatch.model.classifier import Classifier

        return Classifier
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
