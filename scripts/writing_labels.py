"""Label the conversations the writers wrote: batches for annotators who did not write them, then the labelled files.

    python scripts/writing_labels.py tasks WRITTEN_DIR TASKS_DIR [--labellers 4] [--seed 20261206]
    python scripts/writing_labels.py merge WRITTEN_DIR LABELS_DIR [--adjudicated FILE] [--data data] [--name varied]
        [--signals DIR]

``tasks`` turns every writer's file (``<lang>-w<k>.jsonl``, conversations without labels) into annotation batches
(``scripts/annotation_tasks.py``'s format, customer turns identified as ``<conversation id>:<turn index>``): each
labeller gets conversations from several writers and never their own, and ``double-written-<lang>.jsonl`` repeats
about a tenth of the conversations for a second labeller. ``merge`` writes the labelled conversations in the
project's conversation format with every customer turn's labels (the adjudicated one where the two labellers of a
double-annotated turn differ): a fifth of them (``tonewatch.data.overlays.annotation_split`` of the conversation
id) to ``data/callcenter_heldout/dialogues.jsonl`` for the validation suite, the rest to
``data/callcenter_train/<lang>-<name>.jsonl`` (conversation ids ``<lang>-<name>-<brief>``); it prints the agreement
of the double annotation. The held-out file keeps the conversations of other rounds (other names) and replaces this
round's. ``--signals DIR`` adds the conversations' turn signals (``DIR/*.jsonl``, one line per conversation in
the overlay format of ``data/signals``, keyed by the final conversation id, labelled by annotators who saw no emotion
labels) to ``data/signals/callcenter_train.jsonl`` or ``callcenter_heldout.jsonl``, by the conversation's split.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

from tonewatch.data.overlays import agreement, annotation_split
from tonewatch.data.signal_labels import check_signal_overlay, read_signal_overlay


def read_jsonl(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def write_jsonl(path: Path, rows: list[dict]) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")


def written(written_dir: Path) -> dict[str, list[dict]]:
    """Every written conversation by language, in writer and file order."""
    by_lang: dict[str, list[dict]] = {"zh": [], "ru": []}
    for path in sorted(written_dir.glob("*-w*.jsonl")):
        for conversation in read_jsonl(path):
            conversation["writer"] = path.stem
            by_lang[conversation["lang"]].append(conversation)
    return by_lang


def task_group(conversation: dict) -> dict:
    turns = []
    for index, turn in enumerate(conversation["turns"]):
        item = {"speaker": turn["speaker"], "text": turn["text"]}
        if turn["speaker"] == "customer":
            item["id"] = f"{conversation['id']}:{index}"
        turns.append(item)
    return {"group": conversation["id"], "source": "callcenter_varied", "lang": conversation["lang"], "turns": turns}


def tasks(written_dir: Path, tasks_dir: Path, labellers: int, seed: int) -> None:
    rng = random.Random(seed)
    tasks_dir.mkdir(parents=True, exist_ok=True)
    for lang, conversations in written(written_dir).items():
        if not conversations:  # one language's writers may finish first and be labelled on their own
            continue
        rng.shuffle(conversations)
        batches: list[list[dict]] = [[] for _ in range(labellers)]
        for index, conversation in enumerate(conversations):
            batches[index % labellers].append(task_group(conversation))
        for number, batch in enumerate(batches, start=1):
            write_jsonl(tasks_dir / f"written-{lang}-{number}.jsonl", batch)
        doubled = rng.sample(conversations, max(1, round(0.1 * len(conversations))))
        write_jsonl(tasks_dir / f"double-written-{lang}.jsonl", [task_group(c) for c in doubled])
        print(f"{lang}: {len(conversations)} conversations in {labellers} batches, {len(doubled)} doubled")


def add_signals(signals_dir: Path, rows: list[dict], data_dir: Path) -> None:
    """Append every row's turn signals (from ``signals_dir``) to the signal overlay of its set."""
    labelled = {}
    for path in sorted(signals_dir.glob("*.jsonl")):
        labelled.update(read_signal_overlay(path))  # checks the format and the signal names
    missing = [row["id"] for row in rows if row["id"] not in labelled]
    if missing:
        raise SystemExit(f"{len(missing)} conversations have no signal labels in {signals_dir} (first: {missing[0]})")
    check_signal_overlay({row["id"]: labelled[row["id"]] for row in rows}, rows, str(signals_dir))
    for set_name, split in (("callcenter_train", "train"), ("callcenter_heldout", "heldout")):
        overlay = data_dir / "signals" / f"{set_name}.jsonl"
        known = set(read_signal_overlay(overlay))
        new = [row["id"] for row in rows if annotation_split(row["id"]) == split and row["id"] not in known]
        with open(overlay, "a", encoding="utf-8") as handle:
            for conversation_id in new:
                turns = {str(index): list(names) for index, names in sorted(labelled[conversation_id].items()) if names}
                handle.write(json.dumps({"id": conversation_id, "signals": turns}, ensure_ascii=False) + "\n")
        print(f"{overlay}: {len(new)} conversations added")


def merge(
    written_dir: Path, labels_dir: Path, adjudicated_path: Path | None, data_dir: Path, name: str, signals_dir=None
) -> None:
    first: dict[str, dict] = {}
    second: dict[str, dict] = {}
    for path in sorted(labels_dir.glob("*.jsonl")):
        target = second if path.name.startswith("double-") else first
        for line in read_jsonl(path):
            target[line["id"]] = line
    adjudicated = {row["id"]: row for row in read_jsonl(adjudicated_path)} if adjudicated_path else {}
    heldout: list[dict] = []
    merged: list[dict] = []
    for lang, conversations in written(written_dir).items():
        pairs, rows = [], []
        for conversation in sorted(conversations, key=lambda c: c["id"]):
            turns = []
            for index, turn in enumerate(conversation["turns"]):
                turn = {"speaker": turn["speaker"], "text": turn["text"]}
                if turn["speaker"] == "customer":
                    turn_id = f"{conversation['id']}:{index}"
                    label = first[turn_id]
                    final = label
                    if turn_id in second:
                        pairs.append((label, second[turn_id]))
                        if (label["emotion"], label["escalate"]) != (
                            second[turn_id]["emotion"],
                            second[turn_id]["escalate"],
                        ):
                            final = adjudicated[turn_id]
                    turn.update(emotion=final["emotion"], escalate=final["escalate"])
                turns.append(turn)
            rows.append(
                {
                    "id": f"{lang}-{name}-{conversation['brief'].split('-')[1]}",
                    "lang": lang,
                    "domain": conversation["domain"],
                    "channel": conversation["channel"],
                    "brief": conversation["brief"],
                    "turns": turns,
                }
            )
        merged += rows
        kept = [row for row in rows if annotation_split(row["id"]) == "train"]
        heldout += [row for row in rows if annotation_split(row["id"]) == "heldout"]
        write_jsonl(data_dir / "callcenter_train" / f"{lang}-{name}.jsonl", kept)
        print(lang, len(kept), "training conversations", json.dumps(agreement(pairs)))
    heldout_path = data_dir / "callcenter_heldout" / "dialogues.jsonl"
    heldout_path.parent.mkdir(exist_ok=True)
    earlier = read_jsonl(heldout_path) if heldout_path.exists() else []
    others = [row for row in earlier if row["id"].split("-")[1] != name]
    write_jsonl(heldout_path, others + heldout)
    print(len(heldout), "held-out conversations of this round,", len(others), "of others")
    if signals_dir is not None:
        add_signals(signals_dir, merged, data_dir)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    making = commands.add_parser("tasks")
    making.add_argument("written_dir", type=Path)
    making.add_argument("tasks_dir", type=Path)
    making.add_argument("--labellers", type=int, default=4)
    making.add_argument("--seed", type=int, default=20261206)
    merging = commands.add_parser("merge")
    merging.add_argument("written_dir", type=Path)
    merging.add_argument("labels_dir", type=Path)
    merging.add_argument("--adjudicated", type=Path)
    merging.add_argument("--data", type=Path, default=Path(__file__).resolve().parent.parent / "data")
    merging.add_argument("--name", default="varied", help="the round's file and id stem (varied2 for the second)")
    merging.add_argument("--signals", type=Path, help="folder of the conversations' turn-signal labels")
    args = parser.parse_args()
    if args.command == "tasks":
        tasks(args.written_dir, args.tasks_dir, args.labellers, args.seed)
    else:
        merge(args.written_dir, args.labels_dir, args.adjudicated, args.data, args.name, args.signals)


if __name__ == "__main__":
    main()
