"""Merge written signal conversations with their independent labels into callcenter_train and its signal overlay.

    python scripts/signal_writing_merge.py WRITTEN_DIR LABELS_DIR NAME [--adjudicated FILE] [--data data]

``WRITTEN_DIR/<lang>-<k>.jsonl`` are the writers' conversations (each turn with the labels the writer ``intended``);
``LABELS_DIR/labels-<lang>-<k>.jsonl`` the first annotator's labels of every conversation of that file and
``LABELS_DIR/labels-<lang>-second.jsonl`` a second annotator's labels of a sample (``{"id": ..., "labels": {turn
index: {"emotion", "escalate", "signals"}}}``; neither annotator saw the writer's labels or the other's). The labels
kept are the first annotator's, except where ``--adjudicated`` (``{"id": ..., "turn": k, "field": ...,
"value": ...}`` lines) decided a disagreement with the second. Writes ``data/callcenter_train/<lang>-NAME.jsonl``
(the project's conversation format, the writer's ``brief`` kept) and appends the conversations' turn signals to
``data/signals/callcenter_train.jsonl``; prints the agreement tables (first annotator against the writer on every
turn; the two annotators on the sample) for the data READMEs.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from tonewatch.data.overlays import agreement
from tonewatch.labels import SIGNAL_SPEAKER, SIGNALS


def read_jsonl(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def check_labels(conversation: dict, labels: dict, where: str) -> None:
    for index, turn in enumerate(conversation["turns"]):
        entry = labels.get(str(index))
        if entry is None:
            raise SystemExit(f"{where}: {conversation['id']} turn {index} has no label")
        wrong = [s for s in entry.get("signals", []) if s not in SIGNALS or SIGNAL_SPEAKER[s] != turn["speaker"]]
        if wrong:
            raise SystemExit(f"{where}: {conversation['id']} turn {index} ({turn['speaker']}) has signals {wrong}")
        if turn["speaker"] == "customer" and (
            entry.get("emotion") not in ("calm", "frustrated", "angry", "abusive")
            or not isinstance(entry.get("escalate"), bool)
        ):
            raise SystemExit(f"{where}: {conversation['id']} turn {index} has a bad emotion or escalate")


def kappa(pairs: list[tuple[bool, bool]]) -> tuple[float | None, int]:
    """Cohen's kappa of two yes/no annotations and the positives of the first (None when undefined)."""
    n = len(pairs)
    first = sum(a for a, _ in pairs)
    second = sum(b for _, b in pairs)
    if not n:
        return None, 0
    observed = sum(a == b for a, b in pairs) / n
    expected = (first * second + (n - first) * (n - second)) / n / n
    return (1.0 if expected == 1 else (observed - expected) / (1 - expected)), first


def agreement_table(pairs: list[tuple[dict, dict, str]], title: str) -> None:
    """Print emotion / escalation agreement of customer turns and per-signal kappa of every turn."""
    customer = [(a, b) for a, b, speaker in pairs if speaker == "customer"]
    report = agreement(customer)
    print(f"\n{title}: {len(customer)} customer turns, {len(pairs)} turns")
    print(
        f"  emotion exact {report['emotion_exact_agreement']:.3f}, kappa {report['emotion_kappa']:.3f}; "
        f"boundaries {json.dumps({k: None if v is None else round(v, 3) for k, v in report['boundaries'].items()})}; "
        f"escalation kappa {report['escalate_kappa']:.3f}"
    )
    for name in SIGNALS:
        own = [(name in a["signals"], name in b["signals"]) for a, b, s in pairs if s == SIGNAL_SPEAKER[name]]
        value, positives = kappa(own)
        shown = "-" if value is None else f"{value:.2f}"
        print(f"  {name}: kappa {shown} over {len(own)} turns, {positives} positives (first)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("written", type=Path)
    parser.add_argument("labels", type=Path)
    parser.add_argument("name")
    parser.add_argument("--adjudicated", type=Path)
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parent.parent / "data")
    args = parser.parse_args()
    decided = {}
    if args.adjudicated:
        for row in read_jsonl(args.adjudicated):
            decided[(row["id"], str(row["turn"]), row["field"])] = row["value"]
    overlay_lines = []
    for lang in ("zh", "ru"):
        conversations, first = [], {}
        for path in sorted(args.written.glob(f"{lang}-*.jsonl")):
            conversations += read_jsonl(path)
            first.update({row["id"]: row["labels"] for row in read_jsonl(args.labels / f"labels-{path.name}")})
        second_path = args.labels / f"labels-{lang}-second.jsonl"
        second = {row["id"]: row["labels"] for row in read_jsonl(second_path)} if second_path.is_file() else {}
        writer_pairs, annotator_pairs, out = [], [], []
        for conversation in conversations:
            cid = conversation["id"]
            labels = first.get(cid)
            if labels is None:
                raise SystemExit(f"{cid} has no first annotation")
            check_labels(conversation, labels, "first")
            if cid in second:
                check_labels(conversation, second[cid], "second")
            turns, signals = [], {}
            for index, turn in enumerate(conversation["turns"]):
                entry = dict(labels[str(index)])
                for field in ("emotion", "escalate", "signals"):
                    if (cid, str(index), field) in decided:
                        entry[field] = decided[(cid, str(index), field)]
                intended = turn.get("intended", {})
                wrote = {**intended, "signals": intended.get("signals", [])}
                writer_pairs.append((wrote, labels[str(index)], turn["speaker"]))  # before adjudication
                if cid in second:
                    annotator_pairs.append((labels[str(index)], second[cid][str(index)], turn["speaker"]))
                row = {"speaker": turn["speaker"], "text": turn["text"]}
                if turn["speaker"] == "customer":
                    row.update(emotion=entry["emotion"], escalate=entry["escalate"])
                turns.append(row)
                if entry.get("signals"):
                    signals[str(index)] = sorted(entry["signals"], key=SIGNALS.index)
            keep = {
                key: conversation[key] for key in ("id", "lang", "domain", "channel", "brief") if key in conversation
            }
            out.append({**keep, "turns": turns})
            overlay_lines.append({"id": cid, "signals": signals})
        if not out:
            continue
        target = args.data / "callcenter_train" / f"{lang}-{args.name}.jsonl"
        target.write_text("".join(json.dumps(c, ensure_ascii=False) + "\n" for c in out), encoding="utf-8")
        print(f"{target}: {len(out)} conversations, {sum(len(c['turns']) for c in out)} turns")
        agreement_table(writer_pairs, f"{lang}: first annotator against the writer's intended labels")
        if annotator_pairs:
            agreement_table(annotator_pairs, f"{lang}: first against second annotator ({len(second)} conversations)")
    overlay = args.data / "signals" / "callcenter_train.jsonl"
    known = {row["id"] for row in read_jsonl(overlay)}
    new = [row for row in overlay_lines if row["id"] not in known]
    with open(overlay, "a", encoding="utf-8") as handle:
        handle.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in new)
    print(f"{overlay}: {len(new)} conversations added")


if __name__ == "__main__":
    main()
