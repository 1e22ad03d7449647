"""Exact labels added to third-party text: overlays keyed by each source's record ids.

The project annotates real third-party turns by ``docs/labels.md`` without copying their text: the labels live in
``data/annotations/<source>.jsonl``, one line per annotated record::

    {"id": "stc3_dch:train:3538368149250409:2", "emotion": "frustrated", "escalate": false, "by": ["a3"]}

A record annotated twice, independently, keeps both annotators' labels and the final one (the adjudicated label
where they disagreed)::

    {"id": ..., "emotion": "angry", "escalate": true, "by": ["a3", "b1"], "adjudicated": true,
     "labels": [{"by": "a3", "emotion": "frustrated", "escalate": true}, {"by": "b1", "emotion": "angry", ...}]}

:func:`load_source` applies the overlay of a source when it reads it: an annotated record's weak evidence
(``emotion_among``, a dialogue-level escalation guess) is replaced by the exact labels. Every annotated record is
assigned once and for all to ``train`` or ``heldout`` by its conversation (a fifth held out, by hash), so the
held-out part of every annotation set stays out of training and measures the model on real text.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Sequence
from pathlib import Path

from tonewatch.data.records import Record
from tonewatch.data.splits import conversation_fraction
from tonewatch.labels import EMOTION_LABELS, severity

ANNOTATIONS_DIR = Path(__file__).resolve().parent / "annotations"
"""Where the overlays ship (package data)."""
HELDOUT_FRACTION = 0.2
HELDOUT_SEED = 20261206
"""Fixed for good: changing either would move annotated records between training and the held-out set."""
SPLITS = ("train", "heldout")


class OverlayError(ValueError):
    """An overlay line that is malformed, or names a record its source does not have."""


def annotation_split(conversation_id: str) -> str:
    """``heldout`` for about a fifth of the conversations (by hash, stable), else ``train``."""
    return "heldout" if conversation_fraction(conversation_id, HELDOUT_SEED) < HELDOUT_FRACTION else "train"


def _check_label(where: str, entry: dict) -> None:
    if entry.get("emotion") not in EMOTION_LABELS:
        raise OverlayError(f"{where}: emotion must be one of {EMOTION_LABELS}, got {entry.get('emotion')!r}")
    if not isinstance(entry.get("escalate"), bool):
        raise OverlayError(f"{where}: escalate must be true or false, got {entry.get('escalate')!r}")


def read_overlay(path: Path) -> dict[str, dict]:
    """The annotations in ``path`` by record id; malformed or repeated lines raise :class:`OverlayError`."""
    overlay: dict[str, dict] = {}
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            try:
                entry = json.loads(line)
            except json.JSONDecodeError as error:
                raise OverlayError(f"{where}: not JSON ({error.msg})") from None
            if not isinstance(entry, dict) or not isinstance(entry.get("id"), str):
                raise OverlayError(f"{where}: expected an object with a string id")
            _check_label(where, entry)
            for position, label in enumerate(entry.get("labels", [])):
                _check_label(f"{where} labels[{position}]", label)
            if entry["id"] in overlay:
                raise OverlayError(f"{where}: {entry['id']!r} is annotated twice")
            overlay[entry["id"]] = entry
    return overlay


def source_overlay(source: str, directory: Path = ANNOTATIONS_DIR) -> dict[str, dict]:
    """The overlay of ``source`` (empty when the project has not annotated it)."""
    path = directory / f"{source}.jsonl"
    return read_overlay(path) if path.is_file() else {}


def apply_overlay(records: Sequence[Record], overlay: dict[str, dict], source: str) -> list[Record]:
    """``records`` with every annotated one carrying its exact labels and ``meta`` ``annotated`` = train|heldout.

    Raises :class:`OverlayError` when the overlay names ids that ``records`` lack (a stale overlay, or the source
    changed its ids), so labels are never silently dropped.
    """
    if not overlay:
        return list(records)
    seen: set[str] = set()
    labelled = []
    for record in records:
        entry = overlay.get(record.id)
        if entry is None:
            labelled.append(record)
            continue
        seen.add(record.id)
        meta = {**record.meta, "annotated": annotation_split(record.conversation_id)}
        labelled.append(
            dataclasses.replace(
                record, emotion=entry["emotion"], emotion_among=(), escalate=entry["escalate"], weight=1.0, meta=meta
            )
        )
    missing = sorted(set(overlay) - seen)
    if missing:
        raise OverlayError(
            f"data/annotations/{source}.jsonl: {len(missing)} annotated ids are not records of {source} "
            f"(first: {missing[0]!r}); the source's files or its adapter's ids changed"
        )
    return labelled


def _cohen_kappa(first: Sequence, second: Sequence) -> float | None:
    """Cohen's kappa of two annotators' labels (None when chance agreement is total, e.g. one label only)."""
    count = len(first)
    if count == 0:
        return None
    observed = sum(a == b for a, b in zip(first, second, strict=True)) / count
    labels = set(first) | set(second)
    expected = sum((list(first).count(label) / count) * (list(second).count(label) / count) for label in labels)
    if expected >= 1.0:
        return None
    return (observed - expected) / (1.0 - expected)


def _macro_f1(reference: Sequence[str], other: Sequence[str], labels: Iterable[str]) -> float | None:
    """Macro-F1 of ``other`` against ``reference`` over the labels either uses (symmetric for two annotators);
    None when neither uses any of ``labels``."""
    scores = []
    for label in labels:
        true_positive = sum(a == label and b == label for a, b in zip(reference, other, strict=True))
        in_reference = sum(a == label for a in reference)
        in_other = sum(b == label for b in other)
        if in_reference + in_other == 0:
            continue
        scores.append(2 * true_positive / (in_reference + in_other))
    return sum(scores) / len(scores) if scores else None


BOUNDARIES = {
    "calm | frustrated+": "frustrated",
    "frustrated- | angry+": "angry",
    "angry- | abusive": "abusive",
}
"""Each severity cut as a yes/no question: is the turn at least this severe?"""


def agreement(pairs: Sequence[tuple[dict, dict]]) -> dict:
    """Agreement of two independent annotations of the same turns: emotion macro-F1 and Cohen's kappa (four-way
    and at each severity boundary), escalation F1 and kappa, and the share of turns labelled identically."""
    first = [a["emotion"] for a, _ in pairs]
    second = [b["emotion"] for _, b in pairs]
    escalate_first = [a["escalate"] for a, _ in pairs]
    escalate_second = [b["escalate"] for _, b in pairs]
    report = {
        "turns": len(pairs),
        "emotion_exact_agreement": sum(a == b for a, b in zip(first, second, strict=True)) / max(len(pairs), 1),
        "emotion_macro_f1": _macro_f1(first, second, EMOTION_LABELS),
        "emotion_kappa": _cohen_kappa(first, second),
        "boundaries": {},
        "escalate_f1": _macro_f1(
            ["yes" if value else "no" for value in escalate_first],
            ["yes" if value else "no" for value in escalate_second],
            ["yes"],
        ),
        "escalate_kappa": _cohen_kappa(escalate_first, escalate_second),
    }
    for name, label in BOUNDARIES.items():
        cut = severity(label)
        report["boundaries"][name] = _cohen_kappa(
            [severity(value) >= cut for value in first], [severity(value) >= cut for value in second]
        )
    return report


def double_annotated(overlay: dict[str, dict]) -> list[tuple[dict, dict]]:
    """The two independent labels of every record annotated twice, in the overlay's order."""
    return [tuple(entry["labels"][:2]) for entry in overlay.values() if len(entry.get("labels", ())) >= 2]
