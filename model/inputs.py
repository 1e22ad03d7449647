"""How a customer turn and its conversation context become encoder inputs.

Layout (XLM-R special tokens)::

    <s> turn </s> agent: … customer: … agent: … </s>
    \\_ type 0 _/ \\_________ type 1 (context) ________/

An agent turn (read for its turn signals) starts with its speaker prefix, ``agent: …``, in the type-0 segment,
so the model knows whose turn it labels; a customer turn has no prefix, so that models trained before agent
turns were read encode every turn as they always did.

The turn comes first so it is never truncated away. A turn longer than
``max_turn_tokens`` is read in overlapping windows (:func:`encode_turn_windows`):
each window is ``max_turn_tokens`` of its tokens, the next one starting half a
window later, the last one ending at the turn's end, and each carries the same
context; the classifier combines their predictions. :func:`encode_turn` gives the
first window only (training reads a turn cut to the budget). The context is the
preceding turns in chronological order, each prefixed with its speaker, filling the remaining
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


def content_ids_batch(tokenizer, texts: Sequence[str]) -> list[list[int]]:
    """The token ids of each of ``texts`` without special tokens, in one call of the tokenizer's batch API (the
    same ids as one call per text: a fast tokenizer encodes each text of a batch on its own)."""
    if not texts:
        return []
    return list(tokenizer(list(texts), add_special_tokens=False)["input_ids"])


def turn_token_windows(ids: Sequence[int], width: int, head: int = 0) -> list[list[int]]:
    """``ids`` itself when it fits in ``width`` tokens, else overlapping windows of exactly ``width`` tokens that
    cover it: each starts half a window after the previous one, the last ends at the end, and each repeats the
    first ``head`` tokens (a speaker prefix) before its slice of the rest.

    Half a window of overlap: any stretch of up to half a window (a sentence, an insult) lies whole in some
    window, so it is read with its neighbours and not only cut in two."""
    ids = list(ids)
    if len(ids) <= width:
        return [ids]
    prefix, body, room = ids[:head], ids[head:], width - head
    stride = max(1, room // 2)
    starts = [*range(0, len(body) - room, stride), len(body) - room]
    return [prefix + body[start : start + room] for start in starts]


def _turn_texts(text: str, limits: InputLimits, speaker: str) -> tuple[str, str | None]:
    """The text tokenised for a labelled turn (with its speaker prefix for an agent turn), and the prefix alone
    (``None`` for a customer turn)."""
    if speaker not in SPEAKERS:
        raise ValueError(f"unknown speaker {speaker!r}; expected one of {SPEAKERS}")
    turn_text = normalize_text(text, limits.normalize)
    if speaker == "customer":
        return turn_text, None
    return f"{SPEAKER_PREFIX[speaker]} {turn_text}", SPEAKER_PREFIX[speaker]


def _context_text(speaker: str, text: str, limits: InputLimits) -> str:
    return f"{SPEAKER_PREFIX[speaker]} {normalize_text(text, limits.normalize)}"


def _turn_ids(ids_of, text: str, limits: InputLimits, speaker: str) -> tuple[list[int], int]:
    """The labelled turn's token ids (with its speaker prefix for an agent turn) and the prefix's length;
    ``ids_of(text)`` gives a text's token ids."""
    turn_text, prefix_text = _turn_texts(text, limits, speaker)
    ids = ids_of(turn_text)
    if prefix_text is None:
        return ids, 0
    prefix = ids_of(prefix_text)
    # XLM-R splits on whitespace first, so the prefix's tokens begin the turn's; if a tokenizer merged them, the
    # windows after the first go without the prefix rather than with a wrong one.
    head = len(prefix) if ids[: len(prefix)] == prefix and len(prefix) < limits.max_turn_tokens else 0
    return ids, head


def _single(tokenizer):
    return lambda text: _content_ids(tokenizer, text)


def count_windows(tokenizer, text: str, limits: InputLimits = InputLimits(), speaker: str = "customer") -> int:
    """How many windows :func:`encode_turn_windows` reads ``text`` in (1 for a turn within the budget)."""
    ids, head = _turn_ids(_single(tokenizer), text, limits, speaker)
    return len(turn_token_windows(ids, limits.max_turn_tokens, head))


def _windows(
    ids_of,
    bos: int,
    eos: int,
    text: str,
    context: Sequence[tuple[str, str]],
    limits: InputLimits,
    speaker: str,
) -> list[EncodedInput]:
    """:func:`encode_turn_windows` with ``ids_of(text)`` giving a text's token ids."""
    ids, head = _turn_ids(ids_of, text, limits, speaker)
    windows = turn_token_windows(ids, limits.max_turn_tokens, head)
    # Every window of a long turn has the same length, so the same room for context.
    budget = limits.max_length - (len(windows[0]) + 2) - 1  # room for the closing </s>
    pieces: list[list[int]] = []
    for context_speaker, turn_text in reversed(_recent(context, limits)):
        if budget <= 0:
            break
        if context_speaker not in SPEAKERS:
            raise ValueError(f"unknown speaker {context_speaker!r}; expected one of {SPEAKERS}")
        piece = ids_of(_context_text(context_speaker, turn_text, limits))
        if len(piece) > budget:
            piece = piece[len(piece) - budget :]  # keep the end, nearest the labelled turn
        pieces.append(piece)
        budget -= len(piece)
    context_ids = [token for piece in reversed(pieces) for token in piece]
    encoded = []
    for window in windows:
        input_ids = [bos, *window, eos]
        token_types = [0] * len(input_ids)
        if context_ids:
            input_ids += [*context_ids, eos]
            token_types += [1] * (len(context_ids) + 1)
        encoded.append(EncodedInput(input_ids, token_types))
    return encoded


def _recent(context: Sequence[tuple[str, str]], limits: InputLimits) -> list[tuple[str, str]]:
    return list(context)[-limits.max_context_turns :] if limits.max_context_turns else []


def encode_turn_windows(
    tokenizer,
    text: str,
    context: Sequence[tuple[str, str]] = (),
    limits: InputLimits = InputLimits(),
    speaker: str = "customer",
) -> list[EncodedInput]:
    """Token ids and token types of every window of ``text`` (``speaker``'s turn), each with ``context`` =
    ``[(speaker, text), ...]`` oldest first; one window, the same as :func:`encode_turn`'s, for a turn within
    ``max_turn_tokens``."""
    return _windows(_single(tokenizer), tokenizer.bos_token_id, tokenizer.eos_token_id, text, context, limits, speaker)


def encode_turns_windows(
    tokenizer,
    turns: Sequence[tuple[str, Sequence[tuple[str, str]], str]],
    limits: InputLimits = InputLimits(),
) -> list[list[EncodedInput]]:
    """:func:`encode_turn_windows` of each ``(text, context, speaker)`` of ``turns``, with every distinct text
    tokenised once, in one batch call of the tokenizer (a conversation's turns share their context turns)."""
    texts: dict[str, None] = {}
    for text, context, speaker in turns:
        for piece in _turn_texts(text, limits, speaker):
            if piece is not None:
                texts[piece] = None
        for context_speaker, turn_text in _recent(context, limits):
            if context_speaker in SPEAKERS:  # an unknown speaker is refused below, where the single path refuses it
                texts[_context_text(context_speaker, turn_text, limits)] = None
    known = dict(zip(texts, content_ids_batch(tokenizer, list(texts)), strict=True))
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    return [_windows(known.__getitem__, bos, eos, text, context, limits, speaker) for text, context, speaker in turns]


def encode_turn(
    tokenizer,
    text: str,
    context: Sequence[tuple[str, str]] = (),
    limits: InputLimits = InputLimits(),
    speaker: str = "customer",
) -> EncodedInput:
    """Token ids and token types for ``text`` (``speaker``'s turn) with ``context`` = ``[(speaker, text), ...]``
    oldest first; a turn beyond ``max_turn_tokens`` is cut to its first window (see :func:`encode_turn_windows`)."""
    return encode_turn_windows(tokenizer, text, context, limits, speaker)[0]
