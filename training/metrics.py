"""Metric functions shared by training-time validation and the evaluation report."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> float:
    """Macro-F1 over the classes present in ``y_true`` or ``y_pred`` (0.0 for no examples)."""
    if len(y_true) == 0:
        return 0.0
    from sklearn.metrics import f1_score

    labels = sorted(set(np.asarray(y_true).tolist()) | set(np.asarray(y_pred).tolist()))
    labels = [label for label in labels if 0 <= label < n_classes]
    return float(f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0))


def binary_f1(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """F1 of the positive class (0.0 when there are no positives predicted or true)."""
    if len(y_true) == 0:
        return 0.0
    from sklearn.metrics import f1_score

    return float(f1_score(np.asarray(y_true, dtype=bool), np.asarray(y_pred, dtype=bool), zero_division=0))


def expected_calibration_error(confidence: np.ndarray, correct: np.ndarray, n_bins: int = 10) -> float:
    """ECE: the bin-weighted gap between confidence and accuracy over ``n_bins`` equal-width bins."""
    confidence = np.asarray(confidence, dtype=float)
    correct = np.asarray(correct, dtype=float)
    if len(confidence) == 0:
        return 0.0
    bins = np.minimum((confidence * n_bins).astype(int), n_bins - 1)
    error = 0.0
    for index in range(n_bins):
        members = bins == index
        if members.any():
            error += members.mean() * abs(confidence[members].mean() - correct[members].mean())
    return float(error)


def reliability_bins(confidence: np.ndarray, correct: np.ndarray, n_bins: int = 10) -> list[dict]:
    """Per-bin mean confidence, accuracy and count (for the reliability diagram)."""
    confidence = np.asarray(confidence, dtype=float)
    correct = np.asarray(correct, dtype=float)
    bins = np.minimum((confidence * n_bins).astype(int), n_bins - 1)
    rows = []
    for index in range(n_bins):
        members = bins == index
        rows.append(
            {
                "low": index / n_bins,
                "high": (index + 1) / n_bins,
                "count": int(members.sum()),
                "confidence": float(confidence[members].mean()) if members.any() else None,
                "accuracy": float(correct[members].mean()) if members.any() else None,
            }
        )
    return rows


def first_alerts(gold: Sequence[Sequence[object]], decided: Sequence[Sequence[object]]) -> dict:
    """The first alert of each conversation against its gold first escalation turn. ``gold`` and ``decided`` hold,
    per conversation, each customer turn's gold and decided escalation (truthy = escalate; a missing gold label
    is None, not an escalation). Returns ``offsets`` (first decided minus first gold turn, in customer turns) of the
    conversations that escalate and alert, and the counts of ``missed`` (escalate, no alert),
    ``false_alarm_conversations`` (alert, no gold escalation) and ``correctly_quiet`` conversations."""
    offsets: list[int] = []
    missed = false_alarms = quiet = 0
    for gold_turns, decided_turns in zip(gold, decided, strict=True):
        first_gold = next((k for k, value in enumerate(gold_turns) if value), None)
        first_fired = next((k for k, value in enumerate(decided_turns) if value), None)
        if first_gold is not None and first_fired is not None:
            offsets.append(first_fired - first_gold)
        elif first_gold is not None:
            missed += 1
        elif first_fired is not None:
            false_alarms += 1
        else:
            quiet += 1
    return {"offsets": offsets, "missed": missed, "false_alarm_conversations": false_alarms, "correctly_quiet": quiet}
