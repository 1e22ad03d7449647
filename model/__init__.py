"""Inference: a model directory -> predictions (the one loader, the heads, the base encoder, labelling)."""

from tonewatch.model.classifier import (
    DEFAULT_MODEL_DIR,
    Calibration,
    Classifier,
    ModelConfig,
    ModelDirectoryError,
    Prediction,
    TurnInput,
)

__all__ = [
    "DEFAULT_MODEL_DIR",
    "Calibration",
    "Classifier",
    "ModelConfig",
    "ModelDirectoryError",
    "Prediction",
    "TurnInput",
]
