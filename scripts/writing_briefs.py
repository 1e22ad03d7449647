"""The brief matrix for new in-domain conversations: one brief per conversation, each a different combination.

    python scripts/writing_briefs.py OUT_DIR [--per-language 300] [--writers 6] [--seed 20261206] [--matrix abuse]
        [--prefix v]

Writes ``OUT_DIR/<lang>-w<k>.jsonl`` (one writer's briefs, one per line) and prints the matrix's counts, which
``data/callcenter_train/README.md`` records. Every brief names a language, a channel, a speaker, a domain, a
boundary of the label guide the conversation must exercise, and the course it takes; the writers write the
conversations without labels, and other annotators label them.

``--matrix abuse`` (the ``*-abuse-boundaries`` round, 2026-12-07) draws the boundary from ``ABUSE_BOUNDARIES``
instead: the abusive side of the guide that the models missed (threats, slurs, short direct insults, disguised
spelling) and its non-abusive look-alikes that they over-called (negated, quoted or reported abuse,
counter-speech, abuse of objects, profanity as emphasis), with 2 to 4 customer turns.

``--prefix`` names the briefs of a later round of the same matrix (``<lang>-<prefix>NNNN``; the first varied round
is ``b``, the abuse round ``a``, the second varied round, 2026-12-07, ``v`` with seed 20261208), so that no two
rounds share a brief id.
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
from collections import Counter
from pathlib import Path

DOMAINS = (
    "banking", "securities", "insurance", "telecom", "broadband", "airline",
    "rail", "delivery", "e-commerce", "utilities", "healthcare", "public services",
)  # fmt: skip
CHANNELS = {
    "zh": (
        "phone ASR transcript: no punctuation, fillers (嗯 啊 那个 就是), a few homophone errors",
        "chat with emoji and typos",
        "chat with some pinyin or English words mixed in",
        "chat in caps or with many !!! or ？？？ where the customer insists",
    ),
    "ru": (
        "phone ASR transcript: no punctuation, fillers (ну э короче вот), a few misrecognised words",
        "chat with emoji, caps and typos",
        "chat partly typed in the wrong keyboard layout (ghbdtn for привет) and corrected",
        "chat in Latin transliteration (privet, ne rabotaet) or mixed scripts",
    ),
}
SPEAKERS = {
    "zh": (
        "an elderly customer, slow and wordy, unsure of technology",
        "a young customer, internet slang, short messages",
        "a non-native speaker of Chinese, simple or slightly wrong grammar",
        "a Hong Kong customer writing Cantonese-flavoured Chinese in Traditional characters",
        "a Taiwanese customer writing Traditional Chinese with Taiwan wording",
        "a mainland office worker in a hurry",
    ),
    "ru": (
        "an elderly customer, formal and wordy, unsure of technology",
        "a young customer, slang and abbreviations",
        "a non-native speaker of Russian (Central Asian migrant), simple or slightly wrong grammar",
        "a customer from Ukraine, some Ukrainian words (surzhyk)",
        "a customer from Kazakhstan or Belarus, local words and names",
        "a busy professional in Moscow, terse",
    ),
}
BOUNDARIES = (
    "worry stated plainly: the customer is anxious about the problem but asks plainly (calm, not frustrated)",
    "acceptance after a conflict: after frustrated or angry turns, the customer accepts the solution and thanks",
    "apology after an outburst: the customer was angry or abusive, then apologises and cooperates",
    "hostile rhetorical questions without exclamation marks or insults (angry, not calm)",
    "sarcasm: mild sarcasm about the situation (frustrated); and/or hostile sarcasm with accusations (angry)",
    "swearing at the situation, not at anyone (frustrated or angry), never at a person",
    "swearing or insults aimed at the agent or a person (abusive), with the situation around it",
    "polite firmness: polite but insistent demands without threats (calm)",
    "a manager or supervisor mentioned by the AGENT (e.g. a financial manager who will call back), customer calm",
    "a calm, conditional or first-turn supervisor request or threat of external action (escalation while pending)",
    "the same words as a trigger without a trigger: 'manager', 'complaint', 'court' used in a calm, harmless sense",
    "the agent warns that the call will end if the abuse goes on; the customer stops, or goes on",
)
ABUSE_BOUNDARIES = {
    "zh": (
        "a short, direct insult at the agent (abusive), after or without a complaint",
        "an insult at a third person: the courier, the installer, a colleague of the agent (abusive)",
        "a slur or derogation of a group: a region, an ethnicity, women, old people, migrants (abusive)",
        "a threat of violence, direct or veiled ('等我找到你', 'I know where your office is') (abusive)",
        "abuse disguised in pinyin or initials (sb, nmsl, cnm, tmd) or in English letters (abusive)",
        "abuse disguised by homophones or split characters (沙比, 草泥马, 傻 逼, 石更) or emoji (abusive)",
        "negated abuse: the customer says they are NOT insulting anyone or takes an insult back (not abusive)",
        "quoted or reported abuse: the customer reports what someone else called them (not abusive)",
        "counter-speech: the customer objects to abuse or to a rude colleague, quoting it (not abusive)",
        "abuse of objects: a broken phone, the app, the queue called rubbish or cursed (not abusive)",
        "profanity as emphasis, even positive (卧槽 太快了), or swearing at the situation (not abusive)",
        "an outburst of abuse, then the customer apologises and calms down (abusive, then calm or frustrated)",
    ),
    "ru": (
        "a short, direct insult at the agent (abusive), after or without a complaint",
        "an insult at a third person: the courier, the installer, a colleague of the agent (abusive)",
        "a slur or derogation of a group: a nationality, migrants, women, old people, a region (abusive)",
        "a threat of violence, direct or veiled ('я тебя найду', 'I know where your office is') (abusive)",
        "abuse disguised by Latin look-alike letters inside Cyrillic words (идиoт, дeбил) or mixed scripts (abusive)",
        "abuse disguised by masked letters (д.бил, с*ка, х@р) or in Latin transliteration (ty debil) (abusive)",
        "negated abuse: the customer says they are NOT insulting anyone or takes an insult back (not abusive)",
        "quoted or reported abuse: the customer reports what someone else called them (not abusive)",
        "counter-speech: the customer objects to abuse or to a rude colleague, quoting it (not abusive)",
        "abuse of objects: a broken phone, the app, the queue called rubbish or cursed with mat (not abusive)",
        "mat as emphasis, even positive (охренеть как быстро), or swearing at the situation (not abusive)",
        "an outburst of abuse, then the customer apologises and calms down (abusive, then calm or frustrated)",
    ),
}
"""``--matrix abuse``: the abuse boundary and its look-alikes (the ``*-abuse-boundaries`` round)."""
COURSES = (
    "stays calm throughout",
    "starts frustrated, calms down once helped",
    "gets worse turn by turn",
    "flares up once, then settles",
    "steady frustration to the end",
    "starts angry, ends accepting",
)


def briefs(
    lang: str, count: int, rng: random.Random, boundaries: tuple[str, ...] = BOUNDARIES, turns: tuple[int, int] = (3, 7)
) -> list[dict]:
    """``count`` briefs for ``lang``: every boundary and domain equally often, the other fields balanced."""
    cells = list(itertools.product(range(len(boundaries)), range(len(DOMAINS))))
    rng.shuffle(cells)
    if count < len(cells):  # fewer briefs than cells: every boundary still equally often, round by round
        columns = [rng.sample(range(len(DOMAINS)), len(DOMAINS)) for _ in boundaries]
        cells = [
            (b, columns[b][r]) for r in range(len(DOMAINS)) for b in rng.sample(range(len(boundaries)), len(boundaries))
        ]
    chosen = [cells[index % len(cells)] for index in range(count)]
    channels = [CHANNELS[lang][index % len(CHANNELS[lang])] for index in range(count)]
    speakers = [SPEAKERS[lang][index % len(SPEAKERS[lang])] for index in range(count)]
    courses = [COURSES[index % len(COURSES)] for index in range(count)]
    for column in (channels, speakers, courses):
        rng.shuffle(column)
    return [
        {
            "brief": f"{lang}-b{index + 1:04d}",
            "lang": lang,
            "boundary": boundaries[boundary],
            "domain": DOMAINS[domain],
            "channel": channels[index],
            "speaker": speakers[index],
            "course": courses[index],
            "customer_turns": rng.randint(*turns),
        }
        for index, (boundary, domain) in enumerate(chosen)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--per-language", type=int, default=300)
    parser.add_argument("--writers", type=int, default=6)
    parser.add_argument("--seed", type=int, default=20261206)
    parser.add_argument("--matrix", choices=("varied", "abuse"), default="varied")
    parser.add_argument("--prefix", help="the letter of the brief ids (default: b, or a with --matrix abuse)")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    for lang in ("zh", "ru"):
        if args.matrix == "abuse":
            items = briefs(lang, args.per_language, rng, ABUSE_BOUNDARIES[lang], turns=(2, 4))
            for item in items:
                item["brief"] = item["brief"].replace("-b", "-a", 1)
        else:
            items = briefs(lang, args.per_language, rng)
        if args.prefix:
            for item in items:
                item["brief"] = f"{lang}-{args.prefix}{item['brief'][-4:]}"
        for writer in range(args.writers):
            with open(args.out_dir / f"{lang}-w{writer + 1}.jsonl", "w", encoding="utf-8") as handle:
                for item in items[writer :: args.writers]:
                    handle.write(json.dumps(item, ensure_ascii=False) + "\n")
        for field in ("boundary", "domain", "channel", "speaker", "course"):
            counts = Counter(item[field] for item in items)
            print(lang, field, {key[:40]: value for key, value in sorted(counts.items())})


if __name__ == "__main__":
    main()
