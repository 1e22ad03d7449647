"""Merge the turn-signal annotations of issue #18 into ``data/signals/`` and report their agreement.

    python scripts/signal_merge.py TASKS ANNOTATIONS [--written DIR] [--adjudicated FILE] [--write]

``TASKS`` is the folder ``scripts/signal_tasks.py`` wrote (``first/NN.txt``, ``second/NN.txt``);
``ANNOTATIONS`` holds the annotators' answers under the same names (``first/NN.jsonl``, ``second/NN.jsonl``),
one line per conversation: ``{"id": ..., "signals": {"3": ["refusal"]}}``. ``--written`` adds the signals the
writers gave their own conversations (``*.jsonl``, set callcenter_train), ``--adjudicated`` a JSONL file of
decisions on disagreements (``{"id", "turn", "signal", "value": true|false}``), which win over both passes.

Prints, per signal and language, the double-annotated turns' agreement (Cohen's kappa and F1 of the second pass
against the first), writes the disagreements to ``ANNOTATIONS/disagreements.jsonl``, and with ``--write``
writes ``data/signals/{set}.jsonl`` (first pass, adjudicated decisions applied).
"""

from __future__ import annotations

import argparse
import json
import re
from collections import defaultdict
from pathlib import Path

from tonewatch.labels import LANGUAGES, SIGNAL_SPEAKER, SIGNALS

OUT = Path(__file__).resolve().parent.parent / "data" / "signals"
HEADER = re.compile(r"^## (\S+) \((\w+), (\w+)\)$")
TURN = re.compile(r"^(\d+) ([CA]): ")


def read_tasks(folder: Path) -> dict[str, dict]:
    """id -> {set, lang, speakers (per turn)} from the task files of one pass."""
    conversations: dict[str, dict] = {}
    for path in sorted(folder.glob("*.txt")):
        current = None
        for line in path.read_text().splitlines():
            if header := HEADER.match(line):
                current = {"set": header.group(3), "lang": header.group(2), "speakers": [], "file": path.stem}
                conversations[header.group(1)] = current
            elif (turn := TURN.match(line)) and current is not None:
                assert int(turn.group(1)) == len(current["speakers"]), line
                current["speakers"].append("customer" if turn.group(2) == "C" else "agent")
    return conversations


def read_answers(folder: Path, tasks: dict[str, dict], strict: bool = True) -> dict[str, dict[int, set[str]]]:
    answers: dict[str, dict[int, set[str]]] = {}
    for path in sorted(folder.glob("*.jsonl")):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if not line.strip():
                continue
            record = json.loads(line)
            key = record["id"]
            if key not in tasks:
                raise SystemExit(f"{path}:{number}: unknown conversation {key!r}")
            speakers = tasks[key]["speakers"]
            turns: dict[int, set[str]] = {}
            for index, names in record.get("signals", {}).items():
                index = int(index)
                if not 0 <= index < len(speakers):
                    raise SystemExit(f"{path}:{number}: {key} has no turn {index}")
                for name in names:
                    if name not in SIGNAL_SPEAKER:
                        raise SystemExit(f"{path}:{number}: unknown signal {name!r}")
                    if SIGNAL_SPEAKER[name] != speakers[index]:
                        print(
                            f"warning: {path.name}:{number}: {key} turn {index}: {name} on a {speakers[index]} turn; "
                            "dropped"
                        )
                        continue
                    turns.setdefault(index, set()).add(name)
            answers[key] = turns
    missing = sorted(set(tasks) - set(answers))
    if missing and strict:
        raise SystemExit(f"{folder}: {len(missing)} conversations unanswered, e.g. {missing[:3]}")
    return answers


def kappa(pairs: list[tuple[bool, bool]]) -> tuple[float, float, int]:
    """Cohen's kappa, F1 of the second against the first, and the first's positives."""
    n = len(pairs)
    both = sum(a and b for a, b in pairs)
    first = sum(a for a, _ in pairs)
    second = sum(b for _, b in pairs)
    observed = sum(a == b for a, b in pairs) / n
    expected = (first * second + (n - first) * (n - second)) / n / n
    k = 1.0 if expected == 1 else (observed - expected) / (1 - expected)
    f1 = 2 * both / (first + second) if first + second else 1.0
    return k, f1, first


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tasks", type=Path)
    parser.add_argument("annotations", type=Path)
    parser.add_argument("--written", type=Path)
    parser.add_argument("--written-second", type=Path, help="an independent pass over a share of the written ones")
    parser.add_argument("--adjudicated", type=Path)
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    tasks = read_tasks(args.tasks / "first")
    first = read_answers(args.annotations / "first", tasks)
    second_tasks = read_tasks(args.tasks / "second")
    second = read_answers(args.annotations / "second", second_tasks, strict=False)
    if args.written:
        for path in sorted(args.written.glob("*.jsonl")):
            source = Path(__file__).resolve().parent.parent / "data" / "callcenter_train" / path.name
            for line in source.read_text().splitlines():
                conversation = json.loads(line)
                tasks[conversation["id"]] = {
                    "set": "callcenter_train",
                    "lang": conversation["lang"],
                    "speakers": [turn["speaker"] for turn in conversation["turns"]],
                }
        written_tasks = {key: value for key, value in tasks.items() if value["set"] == "callcenter_train"}
        first.update(read_answers(args.written, written_tasks, strict=False))
        if args.written_second:
            second.update(read_answers(args.written_second, written_tasks, strict=False))
    decisions: dict[tuple[str, int, str], bool] = {}
    if args.adjudicated:
        for line in args.adjudicated.read_text().splitlines():
            if line.strip():
                record = json.loads(line)
                decisions[(record["id"], int(record["turn"]), record["signal"])] = bool(record["value"])

    pairs: dict[tuple[str, str], list[tuple[bool, bool]]] = defaultdict(list)
    disagreements = []
    for key in sorted(second):
        if key not in first:
            continue
        task = tasks[key]
        for index, speaker in enumerate(task["speakers"]):
            for name in SIGNALS:
                if SIGNAL_SPEAKER[name] != speaker:
                    continue
                a = name in first[key].get(index, set())
                b = name in second[key].get(index, set())
                pairs[(task["lang"], name)].append((a, b))
                if a != b:
                    disagreements.append({"id": key, "turn": index, "signal": name, "first": a, "second": b})
    print(f"double-annotated conversations: {sum(1 for key in second if key in first)}")
    print("| signal | lang | turns | first-pass positives | kappa | F1 |\n|---|---|---|---|---|---|")
    for name in SIGNALS:
        for lang in LANGUAGES:
            if pairs[(lang, name)]:
                k, f1, positives = kappa(pairs[(lang, name)])
                print(f"| {name} | {lang} | {len(pairs[(lang, name)])} | {positives} | {k:.2f} | {f1:.2f} |")
    (args.annotations / "disagreements.jsonl").write_text(
        "".join(json.dumps(item, ensure_ascii=False) + "\n" for item in disagreements)
    )
    print(f"disagreements: {len(disagreements)} (turn-signal pairs), adjudicated: {len(decisions)}")

    for (key, index, name), value in decisions.items():
        turns = first.setdefault(key, {})
        if value:
            turns.setdefault(index, set()).add(name)
        else:
            turns.get(index, set()).discard(name)
    counts: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    by_set: dict[str, list[str]] = defaultdict(list)
    for key, task in tasks.items():
        if key not in first:
            continue
        signals = {str(index): sorted(names, key=SIGNALS.index) for index, names in sorted(first[key].items()) if names}
        for names in signals.values():
            for name in names:
                counts[task["set"]][name] += 1
        by_set[task["set"]].append(json.dumps({"id": key, "signals": signals}, ensure_ascii=False))
    for name, lines in by_set.items():
        print(f"{name}: {len(lines)} conversations, " + ", ".join(f"{s} {counts[name][s]}" for s in SIGNALS))
        if args.write:
            OUT.mkdir(exist_ok=True)
            (OUT / f"{name}.jsonl").write_text("".join(line + "\n" for line in sorted(lines)))


if __name__ == "__main__":
    main()
