"""The numpy calibration is PyTorch's to the bit (the ONNX path writes the scores torch wrote, without torch)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tonewatch.model.calibrate import (
    emotion_probabilities,
    escalation_probabilities,
    libm_expf,
    signal_probabilities,
    sleef_expf,
    vector_floats,
)

TEMPERATURE, BIAS = 0.8931831121444702, [0.36, -0.13, -0.43, -0.07]


@pytest.mark.parametrize("rows", [1, 2, 7, 31, 32, 33, 64, 65, 100, 810, 5000])
def test_calibrated_probabilities_are_torchs_bit_for_bit(rows):
    rng = np.random.default_rng(rows)
    emotion = (rng.standard_normal((rows, 4)) * 5).astype(np.float32)
    escalation = (rng.standard_normal(rows) * 5).astype(np.float32)
    signals = rng.standard_normal((rows, 6)) * 7  # float64, as a reader may give: rounded to float32 first
    expected_emotion = torch.softmax(torch.from_numpy(emotion) / TEMPERATURE + torch.tensor(BIAS), dim=-1)
    np.testing.assert_array_equal(emotion_probabilities(emotion, TEMPERATURE, BIAS), expected_emotion.numpy())
    expected_escalation = torch.sigmoid(torch.from_numpy(escalation) / 0.93)
    np.testing.assert_array_equal(escalation_probabilities(escalation, 0.93), expected_escalation.numpy())
    expected_signals = torch.sigmoid(torch.from_numpy(signals).float() / 0.9999933838844299)
    np.testing.assert_array_equal(signal_probabilities(signals, 0.9999933838844299), expected_signals.numpy())


def test_a_million_softmax_rows_and_the_edges_of_exp():
    rng = np.random.default_rng(0)
    emotion = (rng.standard_normal((1_000_000, 4)) * 6).astype(np.float32)
    expected = torch.softmax(torch.from_numpy(emotion) / TEMPERATURE + torch.tensor(BIAS), dim=-1).numpy()
    np.testing.assert_array_equal(emotion_probabilities(emotion, TEMPERATURE, BIAS), expected)
    edges = [-1e30, -200, -104.5, -103.7, -87.5, -1e-30, 0, 1e-30, 1, 88.5, 89, 150, 1e30, np.inf, -np.inf]
    edges = np.array(edges + [0.5] * (32 - len(edges)), np.float32)  # 32 values: torch.exp takes its vector loop
    with np.errstate(over="ignore"):
        np.testing.assert_array_equal(sleef_expf(edges), torch.exp(torch.from_numpy(edges)).numpy())
    assert np.isnan(sleef_expf(np.array([np.nan], np.float32))).all()
    assert np.isnan(escalation_probabilities(np.array([np.nan, 1.0], np.float32), 1.0)[0])
    np.testing.assert_array_equal(libm_expf(np.array([0.0, 1.0], np.float32)), np.array([1.0, np.e], np.float32))
    assert vector_floats() in (16, 32)
