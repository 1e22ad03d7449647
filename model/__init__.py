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
from tonewatch.model.tracker import AlertEvent, AlertPolicy, ConversationState, ConversationTracker, TurnUpdate

__all__ = [
    "DEFAULT_MODEL_DIR",
    "AlertEvent",
    "AlertPolicy",
    "Calibration",
    "Classifier",
    "ConversationState",
    "ConversationTracker",
    "ModelConfig",
    "ModelDirectoryError",
    "Prediction",
    "TurnInput",
    "TurnUpdate",
]
