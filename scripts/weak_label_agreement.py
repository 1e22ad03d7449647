"""How often each weak mapping of a source agrees with the project's exact labels on the same records.

    TONEWATCH_DATA=DIR python scripts/weak_label_agreement.py [SOURCE ...]

For every annotated record (``data/annotations``), the source's own evidence (its adapter's mapping, read with
``annotations=False``) is compared with the exact label given by the guide: a partial set agrees when it contains
the exact label, an exact weak label when it equals it. Rows are grouped by the evidence and, where the source
keeps its raw label in ``meta`` (``label`` or ``labels``), by that label. A mapping that agrees well below nine
times in ten teaches the model something the guide says is wrong (docs/design.md, "The training mix and weak
labels").
"""

from __future__ import annotations

import argparse
from collections import Counter, defaultdict

from tonewatch.data.sources import SOURCES, load_source

RAW_KEYS = ("label", "labels", "side")


def evidence_key(record) -> str:
    if record.emotion:
        return f"exact {record.emotion}"
    if record.emotion_among:
        return "among " + "|".join(record.emotion_among)
    return "none"


def agreement_rows(name: str) -> list[tuple[str, str, int, float | None, Counter]]:
    """(evidence, raw label, n, share agreeing or None, exact labels) per group of ``name``'s annotated records."""
    weak = {record.id: record for record in load_source(name, annotations=False)}
    groups: dict[tuple[str, str], Counter] = defaultdict(Counter)
    agree: Counter = Counter()
    for record in load_source(name):
        if "annotated" not in record.meta:
            continue
        source_record = weak[record.id]
        raw = next((str(source_record.meta[key]) for key in RAW_KEYS if key in source_record.meta), "")
        key = (evidence_key(source_record), raw)
        groups[key][record.emotion] += 1
        allowed = (source_record.emotion,) if source_record.emotion else source_record.emotion_among
        if allowed and record.emotion in allowed:
            agree[key] += 1
    rows = []
    for (evidence, raw), labels in groups.items():
        n = sum(labels.values())
        rows.append((evidence, raw, n, None if evidence == "none" else agree[(evidence, raw)] / n, labels))
    return sorted(rows, key=lambda row: (row[0], -row[2]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sources", nargs="*", help="default: every source with annotations")
    parser.add_argument("--min-count", type=int, default=10, help="leave out raw labels with fewer records")
    args = parser.parse_args()
    names = args.sources or [name for name, source in SOURCES.items() if not source.in_repo]
    print("| source | weak evidence | raw label | annotated | agrees | calm / frustrated / angry / abusive |")
    print("|---|---|---|---|---|---|")
    for name in names:
        for evidence, raw, n, share, labels in agreement_rows(name):
            if n < args.min_count:
                continue
            counts = " / ".join(str(labels[label]) for label in ("calm", "frustrated", "angry", "abusive"))
            shown = "-" if share is None else f"{share:.2f}"
            print(f"| {name} | {evidence} | {raw} | {n} | {shown} | {counts} |")


if __name__ == "__main__":
    main()
