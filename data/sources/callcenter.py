"""The project's own in-domain conversations: ``callcenter_dev`` and ``callcenter_train``.

Origin: written and hand-labelled for tonewatch following ``shared/LABELS.md``
(invented but realistic telecom, banking, e-commerce, delivery... calls and
chats in Chinese and Russian). License: CC BY 4.0. Both ship inside the
package (``tonewatch/data/callcenter_*``), copied from ``shared/datasets``.

Mapping: none needed; every customer turn carries the exact ``emotion`` and
``escalate`` labels of the scheme, and every earlier turn (customer and agent)
becomes its context. Agent turns are context only.

- ``callcenter_dev`` (200 conversations): the in-domain **validation** set.
  Its tier is ``eval``: it is never trained on for the shipped model or for a
  reported figure.
- ``callcenter_heldout``: a fifth of the conversations written from the varied briefs
  (``scripts/writing_briefs.py``), chosen by conversation hash and held out for the validation suite; tier
  ``eval``, never trained on. The other four fifths are ``callcenter_train``'s ``<lang>-varied.jsonl``.
- ``callcenter_train``: ``train``. The core set ``zh.jsonl`` and ``ru.jsonl``
  (300 conversations from ``shared/datasets``, weighted toward the
  frustrated/angry/abusive and escalation boundaries) and the project's
  extensions, written the same way and named by what they hold
  (``<lang>-all-boundaries``, ``-angry-vs-abusive``, ``-calm-vs-frustrated``,
  ``-escalation-triggers``; ``data/callcenter_train/README.md``).

What it cannot express: real ASR errors and real customers (the texts are
written, ASR-like for the voice channel); other languages.
"""

from __future__ import annotations

from pathlib import Path

from tonewatch.conversations import read_conversations
from tonewatch.data.records import Record, conversation_records
from tonewatch.data.sources.base import Source, require_file

PACKAGE_DATA = Path(__file__).resolve().parent.parent
"""The folder holding the in-repo copies (``tonewatch/data``)."""

CORE_TRAIN_FILES: tuple[str, ...] = ("zh.jsonl", "ru.jsonl")
"""The core set of ``callcenter_train``, byte-identical copies of ``shared/datasets/callcenter_train``; required."""

LICENSE = "CC BY 4.0"
LICENSE_IDS = ("cc-by-4.0",)
ORIGIN = "tonewatch project (shared/datasets, copied into data/)"


def load_conversation_files(files: list[Path], *, source: str, tier: str) -> list[Record]:
    """Records of every customer turn of the conversation files ``files``, in order; a missing file raises first."""
    paths = [require_file(path) for path in files]
    return [
        record
        for path in paths
        for conversation in read_conversations(path)
        for record in conversation_records(conversation, source=source, tier=tier)
    ]


def load_dev(folder: Path) -> list[Record]:
    """``callcenter_dev``: ``dialogues.jsonl`` (validation only, tier ``eval``)."""
    return load_conversation_files([folder / "dialogues.jsonl"], source="callcenter_dev", tier="eval")


def load_heldout(folder: Path) -> list[Record]:
    """``callcenter_heldout``: ``dialogues.jsonl`` (validation suite only, tier ``eval``)."""
    return load_conversation_files([folder / "dialogues.jsonl"], source="callcenter_heldout", tier="eval")


def train_files(folder: Path) -> list[Path]:
    """The files of ``callcenter_train`` in the order they are read: the core files, then the others by name."""
    files = [folder / name for name in CORE_TRAIN_FILES]
    return files + sorted(path for path in folder.glob("*.jsonl") if path not in files)


def load_train(folder: Path) -> list[Record]:
    """``callcenter_train`` (``train``): the core files, then every other ``*.jsonl`` of ``folder`` by sorted name.

    The order is part of the result: seeded training draws its batches in this
    order, and the ONNX export measures its int8 error on every n-th turn of
    these files in sorted order
    (``tonewatch.model.classifier.package_calibration_turns``), so a renamed
    file must keep its place in the sort to keep both unchanged.
    """
    return load_conversation_files(train_files(folder), source="callcenter_train", tier="train")


DEV_SOURCE = Source(
    name="callcenter_dev",
    langs=("zh", "ru"),
    license=LICENSE,
    license_ids=LICENSE_IDS,
    tier="eval",
    origin=ORIGIN,
    summary="200 hand-labelled in-domain conversations; the validation set, never trained on",
    load=load_dev,
    in_repo=True,
)

HELDOUT_SOURCE = Source(
    name="callcenter_heldout",
    langs=("zh", "ru"),
    license=LICENSE,
    license_ids=LICENSE_IDS,
    tier="eval",
    origin="tonewatch project (data/callcenter_heldout)",
    summary="a fifth of the conversations written from varied briefs, held out: validation suite only",
    load=load_heldout,
    in_repo=True,
)

TRAIN_SOURCE = Source(
    name="callcenter_train",
    langs=("zh", "ru"),
    license=LICENSE,
    license_ids=LICENSE_IDS,
    tier="train",
    origin=ORIGIN,
    summary="300 hand-labelled in-domain conversations weighted toward the hard boundaries",
    load=load_train,
    in_repo=True,
)
