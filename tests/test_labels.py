from __future__ import annotations

import pytest

from tonewatch.labels import EMOTION_LABELS, ID2LABEL, LABEL2ID, most_severe, severity


def test_label_maps_are_inverse_and_ordered_by_severity():
    assert EMOTION_LABELS == ("calm", "frustrated", "angry", "abusive")
    assert [ID2LABEL[i] for i in range(len(EMOTION_LABELS))] == list(EMOTION_LABELS)
    assert all(ID2LABEL[LABEL2ID[label]] == label for label in EMOTION_LABELS)
    assert severity("calm") < severity("frustrated") < severity("angry") < severity("abusive")


def test_most_severe_picks_the_worst_label():
    assert most_severe(["calm", "abusive", "frustrated"]) == "abusive"
    assert most_severe(("frustrated", "calm")) == "frustrated"
    with pytest.raises(ValueError):
        most_severe([])
    with pytest.raises(ValueError, match="unknown emotion"):
        severity("furious")
