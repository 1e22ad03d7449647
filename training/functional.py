"""The functional test suite: one behaviour of the label guide at a time (CheckList / HateCheck style).

``data/functional/{zh,ru}.jsonl`` (evaluation only, never trained on) holds short contact-centre exchanges, each
tagged with the ``functionality`` it tests (an insult at the agent, a slur, masked letters, profanity at the
situation, quoted abuse, worry stated plainly...). The last customer turn is the case; its gold label is fixed by
the guide. :func:`functional_report` scores a model per language and functionality: the share of cases called
``abusive`` (the decision that raises an immediate alert), emotion accuracy and escalation accuracy. The targets:
every abusive functionality called abusive on at least :data:`ABUSIVE_TARGET` of its cases, every other one on at
most :data:`NON_ABUSIVE_LIMIT`.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

FUNCTIONAL_DIR = Path(__file__).resolve().parent.parent / "data" / "functional"
"""The suite (shipped in the package beside the in-domain data)."""
ABUSIVE_TARGET = 0.85
NON_ABUSIVE_LIMIT = 0.10


def read_suite(directory: Path = FUNCTIONAL_DIR) -> list[dict]:
    """Every case of the suite, both languages, in file order."""
    from tonewatch.conversations import read_conversations

    cases = []
    for path in sorted(directory.glob("*.jsonl")):
        cases += read_conversations(path)
    return cases


def functional_report(classifier, cases: list[dict] | None = None) -> dict[str, dict[str, dict]]:
    """``{lang: {functionality: figures}}``: cases, gold label, share called abusive, emotion and escalation
    accuracy on the last customer turn, and whether the functionality meets its target."""
    from tonewatch.model.types import conversation_turn_inputs

    cases = read_suite() if cases is None else cases
    targets, golds = [], []
    for case in cases:
        inputs = conversation_turn_inputs(case)
        customer = [turn for turn in case["turns"] if turn["speaker"] == "customer"]
        targets.append(inputs[-1])
        golds.append((case.get("lang") or "unknown", case["functionality"], customer[-1]))
    predictions = classifier.classify(targets) if targets else []
    grouped: dict[tuple[str, str], list] = defaultdict(list)
    for (lang, functionality, gold), prediction in zip(golds, predictions, strict=True):
        grouped[(lang, functionality)].append((gold, prediction))
    report: dict[str, dict[str, dict]] = defaultdict(dict)
    for (lang, functionality), items in sorted(grouped.items()):
        abusive_gold = sum(gold["emotion"] == "abusive" for gold, _ in items) / len(items)
        kind = "abusive" if abusive_gold >= 0.5 else "not abusive"
        called = sum(prediction.emotion == "abusive" for _, prediction in items) / len(items)
        report[lang][functionality] = {
            "cases": len(items),
            "kind": kind,
            "called_abusive": called,
            "emotion_accuracy": sum(p.emotion == g["emotion"] for g, p in items) / len(items),
            "escalation_accuracy": sum(p.escalate == g["escalate"] for g, p in items) / len(items),
            "meets_target": called >= ABUSIVE_TARGET if kind == "abusive" else called <= NON_ABUSIVE_LIMIT,
        }
    return dict(report)


def functional_lines(functional: dict | None) -> list[str]:
    """The report.md section."""
    if not functional:
        return []
    lines = [
        "",
        "## Functional test suite (one phenomenon at a time; evaluation only)",
        "",
        "Short exchanges written for each boundary of the label guide (`data/functional/`, never trained on). "
        f"Target: abusive functionalities called abusive ≥ {ABUSIVE_TARGET:.2f}, the others ≤ "
        f"{NON_ABUSIVE_LIMIT:.2f}.",
        "",
        "| language | functionality | kind | cases | called abusive | emotion accuracy | escalation accuracy "
        "| target |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for lang, functionalities in functional.items():
        for name, f in functionalities.items():
            lines.append(
                f"| {lang} | {name} | {f['kind']} | {f['cases']} | {f['called_abusive']:.2f} | "
                f"{f['emotion_accuracy']:.2f} | {f['escalation_accuracy']:.2f} | "
                f"{'met' if f['meets_target'] else '**missed**'} |"
            )
    return lines
