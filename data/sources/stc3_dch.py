"""STC-3 DCH: real Chinese customer-helpdesk dialogues from Weibo, with satisfaction scores.

Origin: ``SB233/stc3-dataset`` (fork of ``sakai-lab/stc3-dataset``) at commit
``90da527709dab26a4912a70746c09da06518d46b``, members of ``data.zip``
(Zeng et al., EVIA 2017; NTCIR-14 STC-3). License: CC BY 4.0 for the
annotations; the texts are public Weibo posts. Tier: ``train``. Language: zh.
The texts contain real phone numbers and account ids: treat them as PII.

Raw rows: ``raw/train_data_cn.json``, a JSON array of dialogues ``{id, turns:
[{sender: customer|helpdesk, utterances: [...]}], annotations}``; each
dialogue has 19 annotators' ``quality`` scores ``A`` (accomplishment), ``S``
(customer satisfaction) and ``E`` (efficiency) on -2..2, plus nuggets.
``raw/test_data_cn.json`` has no annotations and is not read.

Records: one per non-empty customer turn, its utterances joined by newlines,
with every earlier non-empty turn as ``context`` (customer turns as
``customer``, helpdesk turns as ``agent``); ``conversation_id`` is the
dialogue. Empty helpdesk turns (images, deleted posts) are left out of the
context.

Mapping onto ``shared/LABELS.md``: the only label is the dialogue-level mean
satisfaction ``S`` over the 19 annotators, a *weak* signal for escalation at
the end of the conversation, put on the last non-empty customer turn only::

    mean S of the dialogue   last customer turn                                     weight
    <= -1.0  (347 of 3,700)  escalate = True                                        0.5
    >= +0.5  (502 of 3,700)  escalate = False, emotion_among = calm|frustrated      0.5
    otherwise                missing                                                -
    every other customer turn: missing (no per-turn labels)

- Thresholds: mean S has median -0.21, 10th percentile -0.95 and 90th
  percentile +0.68. At <= -1.0 the annotators on average rate the customer
  dissatisfied; these dialogues end with unresolved complaints, threats to
  leave or complain ("明天直接去工信部投诉", "能不能让我退网"), which LABELS.md
  rules 2, 4 and 5 make an escalation. At >= +0.5 the customer ends satisfied
  ("好的,谢谢"): the state at the last turn is not one to escalate, and the
  last turn is not hostile, so it is "calm or frustrated".
- Only the last customer turn: an earlier turn of a satisfied dialogue can
  still have warranted escalation (a threat later resolved), and an earlier
  turn of a dissatisfied one may precede the point where it went wrong.
- The last turn of a dissatisfied dialogue gets no emotion: it is sometimes
  only an answer (a phone number, an order id).
- ``A`` (accomplishment) correlates 0.90 with ``S`` and adds little; it is
  kept in ``meta`` with ``S``.

What it cannot express: per-turn emotion (the texts are a good pool for new
annotation), the turn at which escalation became true, and explicit
supervisor requests as such.
"""

from __future__ import annotations

from pathlib import Path
from statistics import mean
from typing import Any

from tonewatch.data.records import CALM_OR_FRUSTRATED, Record, Turn
from tonewatch.data.sources.base import Source, load_split_files, warn_skipped

NAME = "stc3_dch"
TIER = "train"
SPLIT_FILES: dict[str, str] = {"train": "raw/train_data_cn.json"}
"""The labelled splits in the folder and their files (the test file is unlabelled and not read)."""

DISSATISFIED_MAX_MEAN_S = -1.0
"""Dialogues with a mean satisfaction at or below this end with ``escalate=True``."""
SATISFIED_MIN_MEAN_S = 0.5
"""Dialogues with a mean satisfaction at or above this end with ``escalate=False``."""
WEAK_WEIGHT = 0.5
"""Weight of the records labelled from a dialogue-level score."""

SENDER_SPEAKERS: dict[str, str] = {"customer": "customer", "helpdesk": "agent"}


def mean_quality(annotations: list[dict[str, Any]], key: str) -> float | None:
    """The mean of the annotators' ``quality[key]`` scores, or ``None`` without annotations."""
    scores = [annotation["quality"][key] for annotation in annotations if key in annotation.get("quality", {})]
    return mean(scores) if scores else None


def final_escalation(mean_satisfaction: float | None) -> bool | None:
    """The weak escalation label of a dialogue's last customer turn, from its mean satisfaction."""
    if mean_satisfaction is None:
        return None
    if mean_satisfaction <= DISSATISFIED_MAX_MEAN_S:
        return True
    if mean_satisfaction >= SATISFIED_MIN_MEAN_S:
        return False
    return None


def turn_text(turn: dict[str, Any]) -> str:
    """The text of one turn: its non-empty utterances, stripped, one per line."""
    return "\n".join(utterance.strip() for utterance in turn.get("utterances", []) if utterance.strip())


def map_dialogue(dialogue: dict[str, Any], split: str) -> list[Record]:
    """Records of the customer turns of one dialogue, with context and the weak end-of-dialogue label."""
    dialogue_id = str(dialogue["id"])
    turns = []  # (index in the raw turns, speaker, text) of the non-empty turns
    for index, turn in enumerate(dialogue["turns"]):
        sender = turn.get("sender")
        if sender not in SENDER_SPEAKERS:
            raise ValueError(f"stc3_dch dialogue {dialogue_id}: unknown sender {sender!r} in turn {index}")
        text = turn_text(turn)
        if text:
            turns.append((index, SENDER_SPEAKERS[sender], text))
    customer_positions = [position for position, (_, speaker, _) in enumerate(turns) if speaker == "customer"]
    if not customer_positions:
        return []
    annotations = dialogue.get("annotations") or []
    satisfaction = mean_quality(annotations, "S")
    accomplishment = mean_quality(annotations, "A")
    escalate = final_escalation(satisfaction)
    meta = {"dialogue_id": dialogue_id, "annotators": str(len(annotations))}
    if satisfaction is not None:
        meta["mean_satisfaction"] = f"{satisfaction:.3f}"
    if accomplishment is not None:
        meta["mean_accomplishment"] = f"{accomplishment:.3f}"
    last = customer_positions[-1]
    records = []
    for position in customer_positions:
        index, _, text = turns[position]
        labelled = position == last and escalate is not None
        records.append(
            Record(
                id=f"{NAME}:{split}:{dialogue_id}:{index}",
                text=text,
                lang="zh",
                source=NAME,
                tier=TIER,
                context=tuple(Turn(speaker, earlier) for _, speaker, earlier in turns[:position]),
                emotion_among=CALM_OR_FRUSTRATED if labelled and escalate is False else (),
                escalate=escalate if labelled else None,
                weight=WEAK_WEIGHT if labelled else 1.0,
                conversation_id=f"{NAME}:{dialogue_id}",
                origin_split=split,
                meta=dict(meta),
            )
        )
    return records


def map_rows(dialogues: list[dict[str, Any]], split: str) -> list[Record]:
    """Records of the parsed dialogues of one split file; empty customer turns are skipped and counted."""
    records = [record for dialogue in dialogues for record in map_dialogue(dialogue, split)]
    customer_turns = sum(turn.get("sender") == "customer" for dialogue in dialogues for turn in dialogue["turns"])
    return warn_skipped(records, customer_turns, f"stc3_dch {split}", "empty customer turns")


def load(folder: Path) -> list[Record]:
    """All records of ``folder`` (``<data root>/stc3_dch``): the labelled train split (a JSON array of dialogues)."""
    return load_split_files(folder, SPLIT_FILES, map_rows, "json")


SOURCE = Source(
    name=NAME,
    langs=("zh",),
    license="CC BY 4.0 (annotations)",
    license_ids=("cc-by-4.0",),
    tier=TIER,
    origin="SB233/stc3-dataset@90da527709dab26a4912a70746c09da06518d46b",
    summary="Real Weibo customer-helpdesk dialogues: satisfaction -> weak escalation on the last customer turn",
    load=load,
)
