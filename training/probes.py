"""The escalation-trigger probes: does the model escalate on LABELS.md rules 1-2 said without anger?

``data/probes/escalation_triggers.jsonl`` (evaluation only, never trained on) holds hand-written
conversations where a supervisor request or a threat of external action is said calmly, conditionally or
in the first customer turn, and negatives that use the same words without a trigger. :func:`probe_report`
scores a model on them per language and group of customer turns (see ``GROUPS``); ``tonewatch evaluate``
adds it to the report (run it on each model to compare several).
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

PROBES_FILE = Path(__file__).resolve().parent.parent / "data" / "probes" / "escalation_triggers.jsonl"
"""The probe set (shipped in the package beside the in-domain data)."""

GROUPS = {"trigger": "trigger", "held": "held", "negative": "mention-no-trigger"}
"""trigger: the customer turn where a positive conversation's escalation starts (should escalate); held: its
later turns, still escalated because the handover or threat is pending; negative: every customer turn of a
conversation that mentions the same words without a trigger (should not escalate)."""


def probe_kinds(conversation: dict) -> list[str]:
    """The group of each customer turn of a probe conversation: ``trigger`` (the turn where a positive
    conversation's escalation starts), ``held`` (its later escalated turns), ``negative`` (every turn of a
    conversation that mentions the words without a trigger), or the conversation's own ``probe`` tag otherwise."""
    kinds, seen_trigger = [], False
    for turn in conversation["turns"]:
        if turn["speaker"] != "customer":
            continue
        kind = conversation.get("probe", "")
        if kind.startswith("trigger") and turn.get("escalate"):
            kind, seen_trigger = ("held" if seen_trigger else "trigger"), True
        elif kind == GROUPS["negative"]:
            kind = "negative"
        kinds.append(kind)
    return kinds


def probe_report(classifier, conversations: list[dict] | None = None) -> dict[str, dict[str, float | int]]:
    """Per language: for each group, its turn count, the share escalated and the mean escalation score; and
    emotion accuracy over every labelled customer turn. ``conversations`` default to :data:`PROBES_FILE`."""
    if conversations is None:
        from tonewatch.conversations import read_conversations

        conversations = read_conversations(PROBES_FILE)
    rows: dict[str, list] = defaultdict(list)
    for conversation in conversations:
        customer = [turn for turn in conversation["turns"] if turn["speaker"] == "customer"]
        predictions = classifier.classify_conversation(conversation)
        for kind, turn, prediction in zip(probe_kinds(conversation), customer, predictions, strict=True):
            rows[conversation.get("lang") or "unknown"].append((kind, turn, prediction))
    results: dict[str, dict[str, float | int]] = {}
    for lang, items in sorted(rows.items()):
        figures: dict[str, float | int] = {}
        for name in GROUPS:
            predictions = [p for kind, _, p in items if kind == name]
            figures[f"{name}_turns"] = len(predictions)
            figures[f"{name}_escalated"] = sum(p.escalate for p in predictions) / max(len(predictions), 1)
            figures[f"{name}_mean_score"] = sum(p.escalate_score for p in predictions) / max(len(predictions), 1)
        labelled = [(t, p) for _, t, p in items if t.get("emotion")]
        figures["emotion_accuracy"] = sum(p.emotion == t["emotion"] for t, p in labelled) / max(len(labelled), 1)
        results[lang] = figures
    return results


def probe_lines(probes: dict | None) -> list[str]:
    """The report.md section."""
    if not probes:
        return []
    lines = [
        "",
        "## Escalation probes (rules 1-2 said without anger; evaluation only)",
        "",
        "Hand-written conversations (`data/probes/`, never trained on): share of customer turns escalated. "
        "`trigger`: the turn where a calm, conditional or first-turn supervisor request or external threat "
        "is said (should be 1); `held`: later turns while it is pending (should be 1); `negative`: turns that "
        "mention the same words without a trigger (should be 0).",
        "",
        "| language | trigger | held | negative | emotion accuracy |",
        "|---|---|---|---|---|",
    ]
    for lang, f in probes.items():
        lines.append(
            f"| {lang} | {f['trigger_escalated']:.2f} ({f['trigger_turns']}) | {f['held_escalated']:.2f} "
            f"({f['held_turns']}) | {f['negative_escalated']:.2f} ({f['negative_turns']}) | "
            f"{f['emotion_accuracy']:.2f} |"
        )
    return lines
