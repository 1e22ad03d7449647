"""Score models on the escalation-trigger probes (``data/probes/escalation_triggers.jsonl``, evaluation only).

    python scripts/eval_probes.py [MODEL ...]        # default: the bundled models "default" and "fast"

For each model and language, per group of customer turns (see ``GROUPS``): the share escalated and the mean
escalation score; and emotion accuracy over every labelled customer turn. The PyTorch path is used,
so no ONNX export is built.
"""

from __future__ import annotations

import argparse
import logging
from collections import defaultdict
from pathlib import Path

PROBES = Path(__file__).resolve().parent.parent / "data" / "probes" / "escalation_triggers.jsonl"
GROUPS = {"trigger": "trigger", "held": "held", "negative": "mention-no-trigger"}
"""trigger: the customer turn where a positive conversation's escalation starts (should escalate); held: its
later turns, still escalated because the handover or threat is pending; negative: every customer turn of a
conversation that mentions the same words without a trigger (should not escalate)."""


def score(model: str, conversations: list[dict]) -> dict[str, dict[str, float]]:
    from tonewatch.model.classifier import Classifier

    classifier = Classifier.from_pretrained(model, backend="torch")
    rows: dict[str, list] = defaultdict(list)
    for conversation in conversations:
        customer = [turn for turn in conversation["turns"] if turn["speaker"] == "customer"]
        predictions = classifier.classify_conversation(conversation)
        seen_trigger = False
        for turn, prediction in zip(customer, predictions, strict=True):
            kind = conversation.get("probe", "")
            if kind.startswith("trigger") and turn.get("escalate"):
                kind, seen_trigger = ("held" if seen_trigger else "trigger"), True
            rows[conversation["lang"]].append((kind, turn, prediction))
    results = {}
    for lang, items in sorted(rows.items()):
        groups = {name: [p for kind, _, p in items if kind == tag] for name, tag in GROUPS.items()}
        labelled = [(t, p) for _, t, p in items if t.get("emotion")]
        figures: dict[str, float | int] = {}
        for name, predictions in groups.items():
            figures[f"{name} turns"] = len(predictions)
            figures[f"{name} escalated"] = sum(p.escalate for p in predictions) / max(len(predictions), 1)
            figures[f"{name} mean score"] = sum(p.escalate_score for p in predictions) / max(len(predictions), 1)
        figures["emotion accuracy"] = sum(p.emotion == t["emotion"] for t, p in labelled) / max(len(labelled), 1)
        results[lang] = figures
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", default=["default", "fast"], help="Model directories or bundled names.")
    parser.add_argument("--probes", type=Path, default=PROBES, help="Probe conversations (JSONL).")
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    from tonewatch.data.conversations import read_conversations

    conversations = read_conversations(args.probes)
    print(f"{args.probes}: {len(conversations)} conversations")
    for model in args.models:
        for lang, figures in score(model, conversations).items():
            shown = ", ".join(
                f"{name} {value:.2f}" if isinstance(value, float) else f"{name} {value}"
                for name, value in figures.items()
            )
            print(f"{model} [{lang}]: {shown}")


if __name__ == "__main__":
    main()
