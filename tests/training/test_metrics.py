"""The shared first-alert count behind the report's alert timing and the escalation-mode comparison."""

from __future__ import annotations

from tonewatch.training.metrics import first_alerts


def test_first_alerts_counts_offsets_misses_false_alarms_and_quiet_conversations():
    gold = [
        [False, True, True],  # escalates at turn 1, alerted at 2: late by one
        [True, True],  # alerted at 0: on time
        [False, None, True],  # a missing gold label is not an escalation; alerted early at 0
        [False, True],  # never alerted: missed
        [False, False],  # alerted: a false alarm
        [None, False],  # quiet
    ]
    decided = [[False, False, True], [True, False], [True, True, True], [False, False], [False, True], [0, 0]]
    assert first_alerts(gold, decided) == {
        "offsets": [1, 0, -2],
        "missed": 1,
        "false_alarm_conversations": 1,
        "correctly_quiet": 1,
    }
