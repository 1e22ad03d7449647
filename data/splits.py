"""Deterministic splits by conversation.

A record's split depends only on its conversation id and the seed (a hash,
not a shuffle), so it is stable when sources are added, reordered or
filtered, and no conversation is ever cut across two splits.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from tonewatch.data.records import Record


def conversation_fraction(conversation_id: str, seed: int) -> float:
    """A uniform number in [0, 1) fixed by ``conversation_id`` and ``seed``."""
    digest = hashlib.sha256(f"{seed}\0{conversation_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def split_by_conversation(
    records: Iterable[Record], validation_fraction: float, seed: int
) -> tuple[list[Record], list[Record]]:
    """``(train, validation)``: about ``validation_fraction`` of the conversations go to validation."""
    if not 0.0 <= validation_fraction < 1.0:
        raise ValueError(f"validation_fraction must be in [0, 1), got {validation_fraction}")
    train, validation = [], []
    for record in records:
        if conversation_fraction(record.conversation_id, seed) < validation_fraction:
            validation.append(record)
        else:
            train.append(record)
    return train, validation
