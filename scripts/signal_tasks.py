"""Write annotation tasks for the turn signals of issue #18 (``data/signals``).

    python scripts/signal_tasks.py OUT_DIR [--chunk 110] [--double-share 0.12] [--seed 0]

Every conversation of callcenter_train, callcenter_dev, callcenter_heldout and the escalation probes goes into
one first-pass chunk (``OUT_DIR/first/NN.txt``); a random share of each set also goes into a second-pass chunk
(``OUT_DIR/second/NN.txt``) for an independent annotator. A chunk lists each conversation with its turns
numbered from 0 and marked C (customer) or A (agent); emotion and escalation labels are not shown, so the
signals are judged from the words.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

DATA = Path(__file__).resolve().parent.parent / "data"
SETS = {
    "callcenter_train": sorted((DATA / "callcenter_train").glob("*.jsonl")),
    "callcenter_dev": [DATA / "callcenter_dev" / "dialogues.jsonl"],
    "callcenter_heldout": [DATA / "callcenter_heldout" / "dialogues.jsonl"],
    "probes": [DATA / "probes" / "escalation_triggers.jsonl"],
}


def render(conversation: dict, name: str) -> str:
    lines = [f"## {conversation['id']} ({conversation['lang']}, {name})"]
    for index, turn in enumerate(conversation["turns"]):
        speaker = "C" if turn["speaker"] == "customer" else "A"
        text = " ".join(turn["text"].split())
        lines.append(f"{index} {speaker}: {text}")
    return "\n".join(lines)


def write_chunks(items: list[str], folder: Path, size: int) -> int:
    folder.mkdir(parents=True, exist_ok=True)
    count = 0
    for start in range(0, len(items), size):
        count += 1
        (folder / f"{count:02d}.txt").write_text("\n\n".join(items[start : start + size]) + "\n")
    return count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--chunk", type=int, default=110)
    parser.add_argument("--double-share", type=float, default=0.12)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    first: list[str] = []
    second: list[str] = []
    for name, paths in SETS.items():
        conversations = [json.loads(line) for path in paths for line in path.read_text().splitlines() if line]
        rendered = [render(conversation, name) for conversation in conversations]
        first.extend(rendered)
        second.extend(rng.sample(rendered, max(1, round(len(rendered) * args.double_share))))
        print(f"{name}: {len(rendered)} conversations")
    rng.shuffle(second)
    print("first-pass chunks:", write_chunks(first, args.out / "first", args.chunk))
    second_chunks = write_chunks(second, args.out / "second", args.chunk)
    print("second-pass chunks:", second_chunks, f"({len(second)} conversations)")


if __name__ == "__main__":
    main()
