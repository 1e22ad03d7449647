from __future__ import annotations

from collections import Counter

import pytest

from tonewatch.data.records import Record
from tonewatch.data.splits import conversation_fraction, split_by_conversation


def records(n_conversations: int, turns: int = 3) -> list[Record]:
    return [
        Record(id=f"c{c}:{t}", text=f"текст {c} {t}", lang="ru", source="s", tier="train", conversation_id=f"c{c}")
        for c in range(n_conversations)
        for t in range(turns)
    ]


def test_no_conversation_is_cut_across_splits():
    train, validation = split_by_conversation(records(200), validation_fraction=0.2, seed=7)
    assert {r.conversation_id for r in train}.isdisjoint({r.conversation_id for r in validation})
    assert len(train) + len(validation) == 600
    assert 20 <= len({r.conversation_id for r in validation}) <= 60


def test_split_is_deterministic_and_order_independent():
    data = records(100)
    first = split_by_conversation(data, 0.3, seed=1)[1]
    again = split_by_conversation(list(reversed(data)), 0.3, seed=1)[1]
    assert sorted(r.id for r in first) == sorted(r.id for r in again)
    other_seed = split_by_conversation(data, 0.3, seed=2)[1]
    assert sorted(r.id for r in first) != sorted(r.id for r in other_seed)


def test_fraction_is_uniformish_and_validated():
    values = [conversation_fraction(f"id{i}", 0) for i in range(2000)]
    assert 0.45 < sum(values) / len(values) < 0.55
    # Every tenth of [0, 1) gets about a tenth of the conversations (fixed ids: the counts never change).
    tenths = Counter(int(value * 10) for value in values)
    assert set(tenths) == set(range(10)) and all(150 <= count <= 250 for count in tenths.values())
    assert conversation_fraction("id0", 1) != values[0]  # the seed draws another split
    with pytest.raises(ValueError):
        split_by_conversation([], 1.0, seed=0)
