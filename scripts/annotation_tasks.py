"""Pick the third-party records to annotate by docs/labels.md and write them as annotation batches.

    TONEWATCH_DATA=DIR python scripts/annotation_tasks.py OUT_DIR [--seed 20261206]

Writes ``OUT_DIR/<batch>.jsonl``, one line per group (a conversation, or one stand-alone text) with its turns; the
customer turns to label carry their record ``id``. The selection is seeded, so the same data root gives the same
batches. ``OUT_DIR/double-zh.jsonl`` and ``double-ru.jsonl`` repeat about a tenth of every source's groups, for a
second annotator who never sees the first one's labels. The texts stay outside the repository; only the labels come
back into it, as overlays keyed by record id (``data/annotations/``).
"""

from __future__ import annotations

import argparse
import json
import random
from collections import defaultdict
from pathlib import Path

from tonewatch.data.records import Record
from tonewatch.data.sources import load_source

PLAN = {
    # source: (number of groups, how to pick them)
    "stc3_dch": 1500,  # dialogues, every customer turn
    "cold": 600,  # comments: half weakly offensive, half safe
    "cped": 300,  # dialogue lines, whole dialogue openings
    "ru_paradetox": 400,  # toxic comments with one neutral paraphrase each (800 texts)
    "ru_goemotions": 850,
    "cedr": 900,
}
DOUBLE_SHARE = 0.10
ZH_BATCHES = {"zh-stc3-a": [], "zh-stc3-b": [], "zh-stc3-c": [], "zh-stc3-d": [], "zh-cold-cped": []}
RU_BATCHES = {"ru-a": [], "ru-b": [], "ru-c": []}


def groups_of(records: list[Record]) -> dict[str, list[Record]]:
    grouped: dict[str, list[Record]] = defaultdict(list)
    for record in records:
        grouped[record.conversation_id].append(record)
    return grouped


def conversation_group(records: list[Record]) -> dict:
    """The turns of one conversation up to its last picked customer turn, customer turns carrying their ids."""
    last = max(records, key=lambda record: len(record.context))
    turns = [{"speaker": turn.speaker, "text": turn.text} for turn in last.context]
    turns.append({"speaker": "customer", "text": last.text})
    for record in records:
        position = len(record.context)
        if turns[position]["text"] != record.text:
            raise ValueError(f"{record.id}: context does not line up")
        if turns[position]["speaker"] == "customer":  # a drama's other speaker is context here, never labelled
            turns[position]["id"] = record.id
    return {"group": last.conversation_id, "source": last.source, "lang": last.lang, "turns": turns}


def text_group(record: Record) -> dict:
    return {
        "group": record.id,
        "source": record.source,
        "lang": record.lang,
        "turns": [{"speaker": "customer", "text": record.text, "id": record.id}],
    }


def pick(rng: random.Random, records: list[Record], source: str) -> list[dict]:
    if source == "stc3_dch":
        grouped = groups_of(records)
        keys = sorted(grouped)
        rng.shuffle(keys)
        return [conversation_group(grouped[key]) for key in keys[: PLAN[source]]]
    if source == "cped":
        grouped = groups_of(records)
        keys = sorted(grouped)
        rng.shuffle(keys)
        picked, count = [], 0
        for key in keys:
            dialogue = sorted(grouped[key], key=lambda record: len(record.context))[:10]
            picked.append(conversation_group(dialogue))
            count += len(dialogue)
            if count >= PLAN[source]:
                break
        return picked
    if source == "cold":
        train = [record for record in records if record.origin_split == "train"]
        offensive = [record for record in train if record.emotion == "abusive"]
        safe = [record for record in train if record.emotion != "abusive"]
        half = PLAN[source] // 2
        return [text_group(record) for record in rng.sample(offensive, half) + rng.sample(safe, half)]
    if source == "ru_paradetox":
        grouped = groups_of([record for record in records if record.origin_split == "train"])
        keys = sorted(key for key, group in grouped.items() if any(r.id.endswith(":toxic") for r in group))
        picked = []
        for key in rng.sample(keys, PLAN[source]):
            group = grouped[key]
            toxic = [record for record in group if record.id.endswith(":toxic")]
            neutral = [record for record in group if not record.id.endswith(":toxic")]
            picked += [text_group(record) for record in toxic + neutral[:1]]
        return picked
    # ru_goemotions, cedr: half among texts with negative evidence, half at random
    negative = [record for record in records if record.has_emotion and record.emotion != "calm"]
    half = PLAN[source] // 2
    first = rng.sample(negative, half)
    chosen = {record.id for record in first}
    rest = rng.sample([record for record in records if record.id not in chosen], PLAN[source] - half)
    return [text_group(record) for record in first + rest]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--seed", type=int, default=20261206)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    batches = {**{name: [] for name in ZH_BATCHES}, **{name: [] for name in RU_BATCHES}}
    double = {"double-zh": [], "double-ru": []}
    for source in PLAN:
        groups = pick(rng, load_source(source), source)
        lang = groups[0]["lang"]
        doubled = rng.sample(range(len(groups)), max(1, round(DOUBLE_SHARE * len(groups))))
        double[f"double-{lang}"] += [groups[index] for index in sorted(doubled)]
        if source == "stc3_dch":
            names = [name for name in ZH_BATCHES if name.startswith("zh-stc3")]
        elif lang == "zh":
            names = ["zh-cold-cped"]
        else:
            names = list(RU_BATCHES)
        for index, group in enumerate(groups):
            batches[names[index % len(names)]].append(group)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    for name, groups in {**batches, **double}.items():
        rng.shuffle(groups)
        with open(args.out_dir / f"{name}.jsonl", "w", encoding="utf-8") as handle:
            for group in groups:
                handle.write(json.dumps(group, ensure_ascii=False) + "\n")
        turns = sum(1 for group in groups for turn in group["turns"] if "id" in turn)
        print(f"{name}: {len(groups)} groups, {turns} turns to label")


if __name__ == "__main__":
    main()
