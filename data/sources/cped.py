"""CPED: Chinese TV-drama dialogues with 13 emotions, as turn-level evidence with context.

Origin: ``scutcyr/CPED`` at commit ``1e4b81c28a123f22387e06664f37e5dc9322380f``
(Chen et al., arXiv:2205.14727). License: Apache-2.0. Tier: ``train``.
Language: zh. Raw rows: ``raw/valid_split.csv`` (UTF-8 with BOM), one
utterance per row with ``TV_ID, Dialogue_ID, Utterance_ID, Speaker``, speaker
traits, ``Sentiment``, ``Emotion``, ``DA`` (dialogue act) and ``Utterance``.
Only the valid split is here: the train split is missing from the snapshot
and the test split is withheld on purpose. ``raw/speakers.txt`` is not read.

Every utterance becomes a record (an utterance is an ASR-like segment, the
unit LABELS.md labels); its ``context`` is every earlier non-empty utterance
of the same dialogue. CPED has no customer and agent, so each record takes
its own speaker's point of view: the speaker's own earlier utterances are
``customer`` turns and every other speaker's are ``agent`` turns.
``conversation_id`` is the dialogue, so a dialogue is never split apart.

Mapping onto ``shared/LABELS.md``::

    CPED Emotion                             target                                   weight
    neutral                                  emotion = calm (exact)                   1.0
    happy, grateful, relaxed, positive-other emotion = calm (exact)                   0.5
    anger, disgust                           emotion_among = frustrated|angry|abusive 0.5
    sadness, fear, worried                   emotion_among = calm|frustrated          0.5
    depress, negative-other, astonished      missing                                  -
    a mapping allowing calm, DA = irony      missing                                  -

- Neutral and positive speech is ``calm`` (LABELS.md: neutral or positive).
  Positive drama lines include teasing and banter, hence the lower weight.
- ``anger``/``disgust`` rule out calm but not abuse: many anger lines insult
  the other character ("你这人没皮没脸"), and hostility vs mere frustration is
  not told apart, so the evidence is "not calm".
- Sadness, fear and worry are ``frustrated`` with a complaint and ``calm``
  otherwise (LABELS.md), never hostile: "calm or frustrated".
- ``depress``, ``negative-other`` and ``astonished`` are used for everything
  from resignation to hostile retorts ("撞你个头" is ``depress``); missing.
- Sarcasm is at least ``frustrated`` by LABELS.md, so a mapping that allows
  ``calm`` on a line with the ``irony`` dialogue act contradicts itself: missing.
- Emotions were annotated from video and voice, so the words alone sometimes
  look neutral under a non-neutral label; that is why only ``neutral`` gets
  full weight.
- ``escalate`` stays missing: drama has no supervisor, and CPED says nothing
  about escalation.

What it cannot express: ``angry`` vs ``abusive`` vs ``frustrated`` exactly,
escalation, customer-service speech (scripted drama between family, friends
and colleagues).
"""

from __future__ import annotations

from pathlib import Path

from tonewatch.data.records import CALM_OR_FRUSTRATED, NOT_CALM, Record, Turn
from tonewatch.data.sources.base import Source, load_split_files, warn_skipped
from tonewatch.data.sources.evidence import Evidence, lookup_evidence

NAME = "cped"
TIER = "train"
SPLIT_FILES: dict[str, str] = {"valid": "raw/valid_split.csv"}
"""The splits present in the folder and their files (train is missing, test is withheld)."""

IRONY = "irony"

MISSING = Evidence(None, (), 1.0)

EMOTION_EVIDENCE: dict[str, Evidence] = {
    "neutral": Evidence("calm", (), 1.0),
    "happy": Evidence("calm", (), 0.5),
    "grateful": Evidence("calm", (), 0.5),
    "relaxed": Evidence("calm", (), 0.5),
    "positive-other": Evidence("calm", (), 0.5),
    "anger": Evidence(None, NOT_CALM, 0.5),
    "disgust": Evidence(None, NOT_CALM, 0.5),
    "sadness": Evidence(None, CALM_OR_FRUSTRATED, 0.5),
    "fear": Evidence(None, CALM_OR_FRUSTRATED, 0.5),
    "worried": Evidence(None, CALM_OR_FRUSTRATED, 0.5),
    "depress": MISSING,
    "negative-other": MISSING,
    "astonished": MISSING,
}
"""CPED's 13 ``Emotion`` values onto the label scheme (before the irony rule)."""


def emotion_evidence(emotion: str, dialogue_act: str) -> Evidence:
    """The evidence of one utterance's ``Emotion`` and ``DA``; unknown emotions raise ``ValueError``."""
    evidence = lookup_evidence(EMOTION_EVIDENCE, emotion, "cped", what="emotion")
    # Sarcasm is at least frustrated (LABELS.md), so a calm reading of an ironic line contradicts itself.
    if dialogue_act == IRONY and (evidence.emotion == "calm" or "calm" in evidence.emotion_among):
        return MISSING
    return evidence


def map_dialogue(rows: list[dict[str, str]], split: str) -> list[Record]:
    """Records of the utterances of one dialogue (in file order), each with the earlier ones as context."""
    records: list[Record] = []
    earlier: list[tuple[str, str]] = []  # (speaker name, text) of the non-empty earlier utterances
    for row in rows:
        text = (row.get("Utterance") or "").strip()
        if not text:
            continue
        speaker = row.get("Speaker") or ""
        evidence = emotion_evidence(row.get("Emotion") or "", row.get("DA") or "")
        context = tuple(Turn("customer" if other == speaker else "agent", other_text) for other, other_text in earlier)
        records.append(
            Record(
                id=f"{NAME}:{split}:{row['Utterance_ID']}",
                text=text,
                lang="zh",
                source=NAME,
                tier=TIER,
                context=context,
                **evidence._asdict(),
                conversation_id=f"{NAME}:{row['Dialogue_ID']}",
                origin_split=split,
                meta={
                    "emotion": row.get("Emotion") or "",
                    "sentiment": row.get("Sentiment") or "",
                    "dialogue_act": row.get("DA") or "",
                    "tv_id": row.get("TV_ID") or "",
                },
            )
        )
        earlier.append((speaker, text))
    return records


def group_dialogues(rows: list[dict[str, str]]) -> list[list[dict[str, str]]]:
    """Rows grouped by ``Dialogue_ID``, dialogues in order of first appearance, rows in file order."""
    dialogues: dict[str, list[dict[str, str]]] = {}
    for row in rows:
        dialogues.setdefault(row["Dialogue_ID"], []).append(row)
    return list(dialogues.values())


def map_rows(rows: list[dict[str, str]], split: str) -> list[Record]:
    """Records of the parsed rows of one split file; empty utterances are skipped and counted in a warning."""
    records = [record for dialogue in group_dialogues(rows) for record in map_dialogue(dialogue, split)]
    return warn_skipped(records, len(rows), f"cped {split}", "rows with an empty utterance")


def load(folder: Path) -> list[Record]:
    """All records of ``folder`` (``<data root>/cped``): the valid split (a CSV file with a BOM)."""
    return load_split_files(folder, SPLIT_FILES, map_rows, "csv")


SOURCE = Source(
    name=NAME,
    langs=("zh",),
    license="Apache-2.0",
    license_ids=("apache-2.0",),
    tier=TIER,
    origin="scutcyr/CPED@1e4b81c28a123f22387e06664f37e5dc9322380f",
    summary="Chinese TV-drama dialogues with context: neutral/positive -> calm, anger/disgust -> not calm",
    load=load,
)
