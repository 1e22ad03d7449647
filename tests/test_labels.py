from __future__ import annotations

import pytest

from tonewatch.labels import EMOTION_LABELS, most_severe, severity


def test_the_labels_of_the_guide_are_ordered_by_severity():
    assert EMOTION_LABELS == ("calm", "frustrated", "angry", "abusive")
    assert severity("calm") < severity("frustrated") < severity("angry") < severity("abusive")


def test_most_severe_picks_the_worst_label():
    assert most_severe(["calm", "abusive", "frustrated"]) == "abusive"
    assert most_severe(("frustrated", "calm")) == "frustrated"
    with pytest.raises(ValueError):
        most_severe([])
    with pytest.raises(ValueError, match="unknown emotion"):
        severity("furious")
