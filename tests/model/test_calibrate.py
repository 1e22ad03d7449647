"""The numpy calibration agrees with PyTorch's float32 softmax and sigmoid (the ONNX path calibrates without torch)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tonewatch.model.calibrate import emotion_probabilities, escalation_probabilities, signal_probabilities

TEMPERATURE, BIAS = 0.8931831121444702, [0.36, -0.13, -0.43, -0.07]


@pytest.mark.parametrize("rows", [1, 2, 7, 33, 810, 100_000])
def test_calibrated_probabilities_agree_with_torch(rows):
    rng = np.random.default_rng(rows)
    emotion = (rng.standard_normal((rows, 4)) * 6).astype(np.float32)
    escalation = (rng.standard_normal(rows) * 6).astype(np.float32)
    signals = rng.standard_normal((rows, 6)) * 7  # float64, as a reader may give
    got = emotion_probabilities(emotion, TEMPERATURE, BIAS)
    expected = torch.softmax(torch.from_numpy(emotion) / TEMPERATURE + torch.tensor(BIAS), dim=-1).numpy()
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, expected, atol=2e-7, rtol=0)
    np.testing.assert_allclose(got.sum(axis=1), 1.0, atol=1e-6)
    expected_escalation = torch.sigmoid(torch.from_numpy(escalation) / 0.93).numpy()
    np.testing.assert_allclose(escalation_probabilities(escalation, 0.93), expected_escalation, atol=2e-7, rtol=0)
    expected_signals = torch.sigmoid(torch.from_numpy(signals).float() / 0.9999933838844299).numpy()
    got_signals = signal_probabilities(signals, 0.9999933838844299)
    np.testing.assert_allclose(got_signals, expected_signals, atol=2e-7, rtol=0)


def test_extreme_and_missing_logits():
    logits = np.array([-1e30, -200, -89, 0, 89, 200, 1e30, np.inf, -np.inf], np.float32)
    probabilities = escalation_probabilities(logits, 1.0)
    np.testing.assert_allclose(probabilities, torch.sigmoid(torch.from_numpy(logits)).numpy(), atol=1e-30, rtol=0)
    assert np.isnan(escalation_probabilities(np.array([np.nan, 1.0], np.float32), 1.0)[0])
    rows = emotion_probabilities(np.array([[1e30, 0, 0, 0], [np.nan, 0, 0, 0]], np.float32), 1.0, [0, 0, 0, 0])
    np.testing.assert_array_equal(rows[0], [1, 0, 0, 0])
    assert np.isnan(rows[1]).all()
