"""How a customer turn and its conversation context become encoder inputs.

Layout (XLM-R special tokens)::

    <s> turn </s> agent: … customer: … agent: … </s>
    \\_ type 0 _/ \\_________ type 1 (context) ________/

An agent turn (read for its turn signals) starts with its speaker prefix, ``agent: …``, in the type-0 segment,
so the model knows whose turn it labels; a customer turn has no prefix, so that models trained before agent
turns were read encode every turn as they always did.

The turn comes first so it is never truncated away (only its own tail is cut
beyond ``max_turn_tokens``). The context is the preceding turns in
chronological order, each prefixed with its speaker, filling the remaining
budget from the most recent turn backwards: the oldest turns are dropped
first, and the oldest kept turn may lose its beginning. Token type 1 marks
the context so the network can tell what it labels from what it reads.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from tonewatch.labels import SPEAKERS
from tonewatch.model.normalize import NORMALIZATIONS, normalize_text

SPEAKER_PREFIX = {"customer": "customer:", "agent": "agent:"}
"""Text put before each context turn; English words every language of the encoder knows."""


@dataclass(frozen=True)
class InputLimits:
    """Token budgets of one encoded example."""

    max_length: int = 128
    max_turn_tokens: int = 64
    max_context_turns: int = 4
    normalize: str = "none"
    """Text normalisation before tokenising (:mod:`tonewatch.model.normalize`); "none" for older models."""

    def __post_init__(self) -> None:
        if self.normalize not in NORMALIZATIONS:
            raise ValueError(f"unknown text normalisation {self.normalize!r}; expected one of {NORMALIZATIONS}")
        if self.max_turn_tokens < 1 or self.max_length < self.max_turn_tokens + 2:
            raise ValueError(
                f"need 1 <= max_turn_tokens and max_length >= max_turn_tokens + 2, got {self.max_turn_tokens}, "
                f"{self.max_length}"
            )
        if self.max_context_turns < 0:
            raise ValueError(f"max_context_turns must be >= 0, got {self.max_context_turns}")


@dataclass(frozen=True)
class EncodedInput:
    input_ids: list[int]
    token_type_ids: list[int]


def _content_ids(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def encode_turn(
    tokenizer,
    text: str,
    context: Sequence[tuple[str, str]] = (),
    limits: InputLimits = InputLimits(),
    speaker: str = "customer",
) -> EncodedInput:
    """Token ids and token types for ``text`` (``speaker``'s turn) with ``context`` = ``[(speaker, text), ...]``
    oldest first."""
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    if speaker not in SPEAKERS:
        raise ValueError(f"unknown speaker {speaker!r}; expected one of {SPEAKERS}")
    turn_text = normalize_text(text, limits.normalize)
    if speaker != "customer":
        turn_text = f"{SPEAKER_PREFIX[speaker]} {turn_text}"
    turn = _content_ids(tokenizer, turn_text)[: limits.max_turn_tokens]
    input_ids = [bos, *turn, eos]
    token_types = [0] * len(input_ids)
    budget = limits.max_length - len(input_ids) - 1  # room for the closing </s>
    recent = list(context)[-limits.max_context_turns :] if limits.max_context_turns else []
    pieces: list[list[int]] = []
    for speaker, turn_text in reversed(recent):
        if budget <= 0:
            break
        if speaker not in SPEAKERS:
            raise ValueError(f"unknown speaker {speaker!r}; expected one of {SPEAKERS}")
        ids = _content_ids(tokenizer, f"{SPEAKER_PREFIX[speaker]} {normalize_text(turn_text, limits.normalize)}")
        if len(ids) > budget:
            ids = ids[len(ids) - budget :]  # keep the end, nearest the labelled turn
        pieces.append(ids)
        budget -= len(ids)
    context_ids = [token for ids in reversed(pieces) for token in ids]
    if context_ids:
        input_ids += [*context_ids, eos]
        token_types += [1] * (len(context_ids) + 1)
    return EncodedInput(input_ids, token_types)
