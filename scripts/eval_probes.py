"""Score models on the escalation-trigger probes (``data/probes/escalation_triggers.jsonl``, evaluation only).

    python scripts/eval_probes.py [MODEL ...]        # default: the bundled models "default" and "fast"

For each model and language, per group of customer turns (see ``tonewatch.training.probes.GROUPS``): the
share escalated and the mean escalation score; and emotion accuracy over every labelled customer turn. The
PyTorch path is used, so no ONNX export is built. ``tonewatch evaluate`` puts the same figures in the report.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from tonewatch.training.probes import PROBES_FILE, probe_report


def score(model: str, conversations: list[dict]) -> dict[str, dict[str, float | int]]:
    from tonewatch.model.classifier import Classifier

    return probe_report(Classifier.from_pretrained(model, backend="torch"), conversations)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", default=["default", "fast"], help="Model directories or bundled names.")
    parser.add_argument("--probes", type=Path, default=PROBES_FILE, help="Probe conversations (JSONL).")
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
