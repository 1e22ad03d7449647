"""Merge annotators' labels into the overlays ``data/annotations/<source>.jsonl`` and report their agreement.

    python scripts/annotation_merge.py disagreements TASKS_DIR LABELS_DIR OUT.jsonl
    python scripts/annotation_merge.py write TASKS_DIR LABELS_DIR [--adjudicated FILE] [--out DIR] [--append]
    python scripts/annotation_merge.py review REVIEW.<reviewer>.jsonl ... [--out DIR]

``TASKS_DIR`` holds the batches ``scripts/annotation_tasks.py`` wrote; ``LABELS_DIR`` the annotators' files
``<batch>.<annotator>.jsonl`` (``{"id", "emotion", "escalate", "note"?}`` per line). Batches named ``double-*`` are
the second, independent annotation of about a tenth of every source's groups.

``disagreements`` writes every turn the two annotators labelled differently, with its conversation and both labels,
for an adjudicator. ``write`` writes one overlay per source (sorted by id): a turn annotated once keeps its label;
a turn annotated twice keeps both labels under ``labels`` and, as its final label, the one they agree on or the
adjudicator's (``adjudicated``: true). It prints the agreement per source and language (see
``tonewatch.data.overlays.agreement``), which the annotations' README reports. ``--out`` defaults to
``data/annotations``; ``--append`` (a later round) keeps the overlays' existing lines and adds the new ones; a turn
labelled in two rounds is an error.

``review`` applies a consistency review of one boundary across rounds (after the guide settled it): each file
``<name>.<reviewer>.jsonl`` has ``{"id", "emotion", "escalate", "changed", "why"?}`` per reviewed turn; a changed
turn takes the reviewer's label as its final one and keeps what it was under ``review`` (``{"by", "was", "why"}``).
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

from tonewatch.data.overlays import agreement


def read_jsonl(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def read_tasks(tasks_dir: Path) -> dict[str, dict]:
    """Every labelled turn's id -> its group (source, lang, turns)."""
    groups = {}
    for path in sorted(tasks_dir.glob("*.jsonl")):
        for group in read_jsonl(path):
            for turn in group["turns"]:
                if "id" in turn:
                    groups[turn["id"]] = group
    return groups


def read_labels(labels_dir: Path) -> tuple[dict[str, dict], dict[str, dict]]:
    """``(first, second)``: labels by id from the first annotation and from the ``double-*`` batches."""
    first: dict[str, dict] = {}
    second: dict[str, dict] = {}
    for path in sorted(labels_dir.glob("*.jsonl")):
        batch, annotator = path.stem.rsplit(".", 1)
        target = second if batch.startswith("double-") else first
        for line in read_jsonl(path):
            if line["id"] in target:
                raise ValueError(f"{path}: {line['id']} labelled twice in the same pass")
            target[line["id"]] = {
                "by": annotator,
                "emotion": line["emotion"],
                "escalate": line["escalate"],
                **({"note": line["note"]} if line.get("note") else {}),
            }
    return first, second


def same(a: dict, b: dict) -> bool:
    return a["emotion"] == b["emotion"] and a["escalate"] == b["escalate"]


def disagreements(tasks_dir: Path, labels_dir: Path, out: Path) -> None:
    groups = read_tasks(tasks_dir)
    first, second = read_labels(labels_dir)
    rows = []
    for turn_id, label in second.items():
        if turn_id in first and not same(first[turn_id], label):
            group = groups[turn_id]
            rows.append(
                {
                    "id": turn_id,
                    "source": group["source"],
                    "lang": group["lang"],
                    "turns": group["turns"],
                    "annotator_1": first[turn_id],
                    "annotator_2": label,
                }
            )
    with open(out, "w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    print(f"{len(rows)} disagreements of {sum(1 for i in second if i in first)} double-annotated turns -> {out}")


def write(
    tasks_dir: Path, labels_dir: Path, adjudicated_path: Path | None, out_dir: Path, append: bool = False
) -> None:
    groups = read_tasks(tasks_dir)
    first, second = read_labels(labels_dir)
    adjudicated = {row["id"]: row for row in read_jsonl(adjudicated_path)} if adjudicated_path else {}
    overlays: dict[str, list[dict]] = defaultdict(list)
    pairs: dict[tuple[str, str], list] = defaultdict(list)
    missing = [turn_id for turn_id in second if turn_id not in first]
    if missing:
        raise SystemExit(f"{len(missing)} second labels without a first one, e.g. {missing[0]}")
    for turn_id, label in first.items():
        group = groups[turn_id]
        clean = {key: label[key] for key in ("emotion", "escalate")}
        entry = {"id": turn_id, **clean, "by": [label["by"]]}
        other = second.get(turn_id)
        if other is not None:
            pair = [{key: x[key] for key in ("by", "emotion", "escalate")} for x in (label, other)]
            pairs[(group["source"], group["lang"])].append((label, other))
            entry["by"] = [label["by"], other["by"]]
            entry["labels"] = pair
            if not same(label, other):
                decision = adjudicated.get(turn_id)
                if decision is None:
                    raise SystemExit(f"{turn_id}: the annotators disagree and there is no adjudicated label")
                entry.update(emotion=decision["emotion"], escalate=decision["escalate"], adjudicated=True)
        overlays[group["source"]].append(entry)
    out_dir.mkdir(parents=True, exist_ok=True)
    for source, entries in sorted(overlays.items()):
        existing = out_dir / f"{source}.jsonl"
        if append and existing.is_file():
            earlier = read_jsonl(existing)
            twice = {entry["id"] for entry in earlier} & {entry["id"] for entry in entries}
            if twice:
                raise SystemExit(f"{source}: {len(twice)} turns labelled in an earlier round too, e.g. {min(twice)}")
            print(f"{source}: {len(earlier)} annotated turns kept from earlier rounds")
            entries = earlier + entries
        entries.sort(key=lambda entry: entry["id"])
        with open(out_dir / f"{source}.jsonl", "w", encoding="utf-8") as handle:
            for entry in entries:
                handle.write(json.dumps(entry, ensure_ascii=False, separators=(",", ":")) + "\n")
        print(f"{source}: {len(entries)} annotated turns")
    everything = [pair for key in sorted(pairs) for pair in pairs[key]]
    print(json.dumps({f"{s}/{lang}": agreement(p) for (s, lang), p in sorted(pairs.items())}, indent=1))
    print(json.dumps({"all": agreement(everything)}, indent=1))
    for lang in ("zh", "ru"):
        subset = [pair for (source, pair_lang), items in pairs.items() if pair_lang == lang for pair in items]
        print(json.dumps({lang: agreement(subset)}, indent=1))


def review(paths: list[Path], out_dir: Path) -> None:
    changes: dict[str, dict] = {}
    for path in paths:
        reviewer = path.stem.rsplit(".", 1)[1]
        for line in read_jsonl(path):
            if line.get("changed"):
                changes[line["id"]] = {"by": reviewer, **{key: line[key] for key in ("emotion", "escalate")}}
                changes[line["id"]]["why"] = line.get("why", "")
    applied = 0
    for overlay in sorted(out_dir.glob("*.jsonl")):
        entries = read_jsonl(overlay)
        for entry in entries:
            change = changes.get(entry["id"])
            if change is None:
                continue
            if "review" in entry:
                raise SystemExit(f"{entry['id']}: reviewed twice")
            was = {key: entry[key] for key in ("emotion", "escalate")}
            entry["review"] = {"by": change["by"], "was": was, "why": change["why"]}
            entry.update(emotion=change["emotion"], escalate=change["escalate"])
            applied += 1
        with open(overlay, "w", encoding="utf-8") as handle:
            for entry in entries:
                handle.write(json.dumps(entry, ensure_ascii=False, separators=(",", ":")) + "\n")
    if applied != len(changes):
        raise SystemExit(f"{len(changes) - applied} reviewed turns are in no overlay")
    print(f"{applied} turns changed by the review")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    listing = commands.add_parser("disagreements")
    listing.add_argument("tasks_dir", type=Path)
    listing.add_argument("labels_dir", type=Path)
    listing.add_argument("out", type=Path)
    writing = commands.add_parser("write")
    writing.add_argument("tasks_dir", type=Path)
    writing.add_argument("labels_dir", type=Path)
    writing.add_argument("--adjudicated", type=Path)
    writing.add_argument("--out", type=Path, default=Path(__file__).resolve().parent.parent / "data" / "annotations")
    writing.add_argument("--append", action="store_true", help="keep the overlays' lines from earlier rounds")
    reviewing = commands.add_parser("review")
    reviewing.add_argument("reviews", type=Path, nargs="+")
    reviewing.add_argument("--out", type=Path, default=Path(__file__).resolve().parent.parent / "data" / "annotations")
    args = parser.parse_args()
    if args.command == "review":
        review(args.reviews, args.out)
    elif args.command == "disagreements":
        disagreements(args.tasks_dir, args.labels_dir, args.out)
    else:
        write(args.tasks_dir, args.labels_dir, args.adjudicated, args.out, args.append)


if __name__ == "__main__":
    main()
