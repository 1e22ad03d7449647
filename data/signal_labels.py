"""Turn-signal labels (issue #18): overlays keyed by conversation id, joined to the project's own conversations.

Each labelled set has one overlay, ``data/signals/<set>.jsonl`` (``callcenter_train``, ``callcenter_dev``,
``callcenter_heldout``, ``probes``), one line per annotated conversation::

    {"id": "ru-train-x0002", "signals": {"3": ["refusal"], "4": ["supervisor_request"]}}

Turn indices count every turn of the conversation from 0, customer and agent; only turns with a signal are listed,
and an annotated conversation without any has ``{}``. So every turn of an annotated conversation is labelled: the
signals listed are 1, the speaker's other signals (``labels.SIGNAL_SPEAKER``) 0. A conversation without a line is
*unknown*: its records keep ``signals = None`` and training masks them; it is not "no signal".

:func:`apply_signal_labels` gives the customer-turn records of a set their customer signals;
:func:`agent_signal_records` makes one record per agent turn of the annotated conversations (text, preceding
turns as context, agent signals), which training reads as a pool of its own and evaluation scores. A malformed
line, an unknown signal, a signal on the other speaker's turn, a turn index out of range or an id that is not a
conversation of the set raise :class:`SignalLabelError`, so labels are never silently dropped.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Sequence
from pathlib import Path

from tonewatch.conversations import read_conversations
from tonewatch.data.records import Record, Turn, conversation_records
from tonewatch.data.sources.callcenter import PACKAGE_DATA, train_files
from tonewatch.labels import SIGNAL_SPEAKER, SIGNALS

SIGNALS_DIR = PACKAGE_DATA / "signals"
"""Where the overlays ship (package data)."""
SIGNAL_SETS: tuple[str, ...] = ("callcenter_train", "callcenter_dev", "callcenter_heldout", "probes")
"""The sets that can have signal labels; only ``callcenter_train`` is trained on."""
HELD_OUT_SIGNAL_SETS: tuple[str, ...] = ("callcenter_dev", "callcenter_heldout", "probes")
"""The sets the evaluation report scores the signals on (when their overlays exist)."""
SET_TIERS = {"callcenter_train": "train", "callcenter_dev": "eval", "callcenter_heldout": "eval", "probes": "eval"}

SignalOverlay = dict[str, dict[int, tuple[str, ...]]]
"""Conversation id -> turn index -> the signals of that turn."""


class SignalLabelError(ValueError):
    """A signal overlay line that is malformed, or that does not fit the conversations of its set."""


def overlay_path(name: str, directory: str | Path | None = None) -> Path:
    """The overlay file of set ``name`` in ``directory`` (default :data:`SIGNALS_DIR`)."""
    if name not in SIGNAL_SETS:
        raise ValueError(f"unknown signal set {name!r}; expected one of {SIGNAL_SETS}")
    return Path(directory if directory is not None else SIGNALS_DIR) / f"{name}.jsonl"


def set_conversations(name: str) -> list[dict]:
    """The conversations of set ``name``, in the order its records are read."""
    if name == "callcenter_train":
        files = train_files(PACKAGE_DATA / name)
    elif name == "probes":
        files = [PACKAGE_DATA / "probes" / "escalation_triggers.jsonl"]
    elif name in SIGNAL_SETS:
        files = [PACKAGE_DATA / name / "dialogues.jsonl"]
    else:
        raise ValueError(f"unknown signal set {name!r}; expected one of {SIGNAL_SETS}")
    return [conversation for path in files for conversation in read_conversations(path)]


def read_signal_overlay(path: str | Path) -> SignalOverlay:
    """The overlay in ``path`` by conversation id; a malformed or repeated line raises :class:`SignalLabelError`."""
    overlay: SignalOverlay = {}
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            try:
                entry = json.loads(line)
            except json.JSONDecodeError as error:
                raise SignalLabelError(f"{where}: not JSON ({error.msg})") from None
            if not isinstance(entry, dict) or not isinstance(entry.get("id"), str):
                raise SignalLabelError(f"{where}: expected an object with a string id")
            turns = entry.get("signals")
            if not isinstance(turns, dict):
                raise SignalLabelError(f"{where}: signals must be an object of turn index -> signal names")
            labelled: dict[int, tuple[str, ...]] = {}
            for key, names in turns.items():
                if not (isinstance(key, str) and key.isdigit()):
                    raise SignalLabelError(f"{where}: turn index {key!r} is not a number")
                if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
                    raise SignalLabelError(f"{where}: turn {key}: expected a list of signal names, got {names!r}")
                unknown = [name for name in names if name not in SIGNALS]
                if unknown:
                    raise SignalLabelError(f"{where}: turn {key}: unknown signals {unknown}; known: {SIGNALS}")
                if len(set(names)) != len(names):
                    raise SignalLabelError(f"{where}: turn {key}: a signal is listed twice: {names}")
                labelled[int(key)] = tuple(name for name in SIGNALS if name in names)
            if entry["id"] in overlay:
                raise SignalLabelError(f"{where}: conversation {entry['id']!r} is annotated twice")
            overlay[entry["id"]] = labelled
    return overlay


def load_signal_overlay(name: str, directory: str | Path | None = None) -> SignalOverlay | None:
    """The overlay of set ``name``, or None when it has none (its signals are unknown)."""
    path = overlay_path(name, directory)
    return read_signal_overlay(path) if path.is_file() else None


def check_signal_overlay(overlay: SignalOverlay, conversations: Iterable[dict], where: str) -> None:
    """Raise :class:`SignalLabelError` unless every labelled turn exists and has a signal of its own speaker."""
    by_id = {str(conversation["id"]): conversation for conversation in conversations}
    unknown = sorted(set(overlay) - set(by_id))
    if unknown:
        raise SignalLabelError(
            f"{where}: {len(unknown)} annotated conversations are not in the set (first: {unknown[0]!r})"
        )
    for conversation_id, turns in overlay.items():
        conversation_turns = by_id[conversation_id]["turns"]
        for index, names in turns.items():
            if index >= len(conversation_turns):
                raise SignalLabelError(
                    f"{where}: {conversation_id!r} turn {index} is out of range (the conversation has "
                    f"{len(conversation_turns)} turns, counted from 0)"
                )
            speaker = conversation_turns[index]["speaker"]
            wrong = [name for name in names if SIGNAL_SPEAKER[name] != speaker]
            if wrong:
                raise SignalLabelError(
                    f"{where}: {conversation_id!r} turn {index} is the {speaker}'s; {wrong} are "
                    f"{SIGNAL_SPEAKER[wrong[0]]} signals"
                )


def turn_signal_labels(speaker: str, listed: Sequence[str]) -> dict[str, int]:
    """Every signal of ``speaker``: 1 when ``listed``, else 0 (the turn is annotated)."""
    return {name: int(name in listed) for name in SIGNALS if SIGNAL_SPEAKER[name] == speaker}


def _turn_index(record: Record) -> int:
    conversation_id, _, index = record.id.rpartition(":")
    if conversation_id != record.conversation_id or not index.isdigit():
        raise SignalLabelError(f"record {record.id!r} is not a conversation turn (<conversation id>:<turn index>)")
    return int(index)


def apply_signal_labels(
    records: Sequence[Record], conversations: Iterable[dict], overlay: SignalOverlay, where: str
) -> list[Record]:
    """``records`` (customer turns of ``conversations``) with the customer signals of every annotated conversation;
    the others keep ``signals = None``. ``where`` names the overlay in errors."""
    check_signal_overlay(overlay, conversations, where)
    labelled = []
    for record in records:
        turns = overlay.get(record.conversation_id)
        if turns is not None:
            signals = turn_signal_labels(record.speaker, turns.get(_turn_index(record), ()))
            record = dataclasses.replace(record, signals=signals)
        labelled.append(record)
    return labelled


def agent_signal_records(
    conversations: Iterable[dict], overlay: SignalOverlay, *, source: str, tier: str
) -> list[Record]:
    """One record per agent turn of every annotated conversation, with its preceding turns and agent signals, in
    the conversations' order (call :func:`check_signal_overlay` first)."""
    records = []
    for conversation in conversations:
        conversation_id = str(conversation["id"])
        turns = overlay.get(conversation_id)
        if turns is None:
            continue
        context: list[Turn] = []
        for index, turn in enumerate(conversation["turns"]):
            text = turn["text"].strip()
            if turn["speaker"] == "agent":
                records.append(
                    Record(
                        id=f"{conversation_id}:{index}",
                        text=text,
                        lang=conversation.get("lang"),
                        source=source,
                        tier=tier,
                        context=tuple(context),
                        conversation_id=conversation_id,
                        speaker="agent",
                        signals=turn_signal_labels("agent", turns.get(index, ())),
                    )
                )
            context.append(Turn(turn["speaker"], text))
    return records


def signal_set_records(name: str, directory: str | Path | None = None) -> list[Record] | None:
    """Every signal-labelled turn of set ``name``: its annotated customer turns (with their emotion labels), then
    its annotated agent turns; None when the set has no overlay."""
    overlay = load_signal_overlay(name, directory)
    if overlay is None:
        return None
    conversations = set_conversations(name)
    tier = SET_TIERS[name]
    customer = [
        record
        for conversation in conversations
        if str(conversation["id"]) in overlay
        for record in conversation_records(conversation, source=name, tier=tier)
    ]
    customer = apply_signal_labels(customer, conversations, overlay, str(overlay_path(name, directory)))
    return customer + agent_signal_records(conversations, overlay, source=name, tier=tier)
