"""Records -> Hugging Face ``datasets.Dataset`` of tokenised examples, and the training mix.

The training set is every ``train``-tier source named in the config's
``source_shares`` (plus the researcher's ``extra_data``). Validation data
never overlaps it:

- ``callcenter_train`` is split by conversation: ``validation_fraction`` of its
  conversations are held out for early stopping and calibration;
- public sources with an official dev/valid file beside a train file hold
  that file out; single-file sources are split by conversation (fixed seed);
- ``callcenter_dev`` is never trained on; it is the evaluation set.

Examples keep their labels as tensors-to-be: ``emotion_allowed`` (a 0/1 mask
over the labels; all zero = missing), ``emotion_exact`` (label id or -1),
``escalate`` (1.0, 0.0, or -1.0 = missing), ``signals`` (one value per
``labels.SIGNALS``: 1.0, 0.0, or -1.0 = unknown or another speaker's signal) and
``weight``.

With ``signals = true`` the signal labels of ``data/signals/callcenter_train.jsonl``
are joined to the in-domain customer turns, and the agent turns of the annotated
conversations form their own pool (``agent_turns``, ``agent_turn_share`` of each
batch), split by conversation exactly as callcenter_train is.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from tonewatch.configfile import ConfigError
from tonewatch.conversations import read_conversations
from tonewatch.data.custom import read_table, rows_to_records
from tonewatch.data.paths import DataRootNotFoundError, resolve_data_root
from tonewatch.data.records import Record, conversation_records
from tonewatch.data.signal_labels import (
    agent_signal_records,
    apply_signal_labels,
    load_signal_overlay,
    overlay_path,
    set_conversations,
)
from tonewatch.data.sources import get_source, load_source
from tonewatch.data.splits import split_by_conversation
from tonewatch.labels import EMOTION_LABELS, LABEL2ID, SIGNALS
from tonewatch.model.inputs import InputLimits, encode_turn
from tonewatch.training.config import DATA_FILE_SUFFIXES, ExtraData, TrainConfig

logger = logging.getLogger(__name__)

ANNOTATIONS_POOL = "annotations"
"""The pool of annotated third-party records (their training part), drawn with ``annotated_share``."""
AGENT_TURNS_POOL = "agent_turns"
"""The pool of signal-labelled agent turns of callcenter_train, drawn with ``agent_turn_share``."""
IN_DOMAIN_SOURCE = "callcenter_train"
EVALUATION_SOURCE = "callcenter_dev"
HELD_OUT_SPLITS = ("dev", "valid", "validation", "eval")
PUBLIC_VALIDATION_FRACTION = 0.1


@dataclass
class TrainingData:
    """Records of each source, split into training and validation."""

    train: dict[str, list[Record]]
    validation: dict[str, list[Record]]

    def counts(self) -> dict[str, dict[str, int]]:
        return {
            name: {"train": len(self.train.get(name, [])), "validation": len(self.validation.get(name, []))}
            for name in sorted(set(self.train) | set(self.validation))
        }


def is_labelled(record: Record) -> bool:
    return record.has_emotion or record.escalate is not None or record.signals is not None


def signal_labelled(records: list[Record], config: TrainConfig) -> tuple[list[Record], list[Record]]:
    """callcenter_train ``records`` with their signal labels, and the signal-labelled agent turns; a run with
    ``signals = true`` and no callcenter_train overlay is refused."""
    overlay = load_signal_overlay(IN_DOMAIN_SOURCE, config.signal_labels_dir)
    path = overlay_path(IN_DOMAIN_SOURCE, config.signal_labels_dir)
    if overlay is None:
        raise ConfigError(
            f"signals = true, but there are no signal labels to train on: {path} does not exist "
            "(set signal_labels_dir, or train without signals)",
            key="signals",
        )
    conversations = set_conversations(IN_DOMAIN_SOURCE)
    labelled = apply_signal_labels(records, conversations, overlay, str(path))
    return labelled, agent_signal_records(conversations, overlay, source=IN_DOMAIN_SOURCE, tier="train")


def split_source(records: list[Record], name: str, seed: int, validation_fraction: float) -> tuple[list, list]:
    """Training and validation records of one source (see the module docstring)."""
    if name == IN_DOMAIN_SOURCE:
        return split_by_conversation(records, validation_fraction, seed)
    splits = {record.origin_split for record in records}
    if len(splits) > 1 and splits & set(HELD_OUT_SPLITS):
        train = [record for record in records if record.origin_split not in HELD_OUT_SPLITS]
        validation = [record for record in records if record.origin_split in HELD_OUT_SPLITS]
        return train, validation
    return split_by_conversation(records, PUBLIC_VALIDATION_FRACTION, seed)


def cap_records(records: list[Record], cap: int, seed: int) -> list[Record]:
    """At most ``cap`` records, a random subset by whole conversations (fixed seed), in original order."""
    if len(records) <= cap:
        return records
    by_conversation: dict[str, list[Record]] = defaultdict(list)
    for record in records:
        by_conversation[record.conversation_id].append(record)
    conversations = sorted(by_conversation)
    random.Random(seed).shuffle(conversations)
    kept: set[str] = set()
    total = 0
    for conversation_id in conversations:
        if total >= cap:
            break
        kept.add(conversation_id)
        total += len(by_conversation[conversation_id])
    return [record for record in records if record.conversation_id in kept]


def check_extra_data(config: TrainConfig) -> None:
    """Refuse an ``extra_data`` entry whose local file is missing or of a type that cannot be read, in one line
    and before any source is loaded (a mistyped key is refused earlier, when the config is read)."""
    for index, extra in enumerate(config.extra_data):
        path = Path(extra.path).expanduser()
        key = f"extra_data[{index}].path"
        if extra.is_hub_dataset:
            if path.is_absolute() or extra.path.startswith((".", "~")) or path.is_file():  # a file, not a hub name
                raise ConfigError(
                    f"{key}: unsupported file type {path.suffix!r} of {path} "
                    f"({', '.join(suffix.lstrip('.') for suffix in DATA_FILE_SUFFIXES)})",
                    key=key,
                )
            continue  # a Hugging Face hub dataset: only loading it can tell
        if not path.is_file():
            raise ConfigError(f"{key}: no such file: {path}", key=key)


def load_extra(extra: ExtraData) -> list[Record]:
    """Records of one ``extra_data`` entry: project-format conversations, or a table of texts with labels."""
    path = Path(extra.path).expanduser()
    name = extra.source_name
    local = not extra.is_hub_dataset
    if local and not path.is_file():
        raise ConfigError(f"extra data {path}: no such file")
    kind = extra.format
    if kind == "auto":
        kind = "conversations" if path.suffix == ".jsonl" and _looks_like_conversations(path) else "texts"
    if kind == "conversations":
        return [
            record
            for conversation in read_conversations(path)
            for record in conversation_records(conversation, source=name, tier="train", default_lang=extra.lang)
        ]
    if local and path.suffix.lower() in (".csv", ".jsonl"):
        rows, locations = read_table(path)  # read here, not by `datasets`, to name the line of a bad row
        return rows_to_records(rows, source=name, lang=extra.lang, locations=locations)
    import datasets

    if local:
        builder = {".json": "json", ".parquet": "parquet"}.get(path.suffix.lower())
        if builder is None:
            raise ConfigError(f"extra data {path}: unsupported file type {path.suffix!r} (csv, jsonl, json, parquet)")
        table = datasets.load_dataset(builder, data_files=str(path), split="train")
        return rows_to_records(table, source=name, lang=extra.lang, locations=_row_locations(path, len(table)))
    table = datasets.load_dataset(extra.path, split=extra.split)
    return rows_to_records(table, source=name, lang=extra.lang)


def _row_locations(path: Path, count: int) -> list[str]:
    return [f"{path}: row {index + 1}" for index in range(count)]


def _looks_like_conversations(path: Path) -> bool:
    with open(path, encoding="utf-8-sig") as handle:
        for line in handle:
            if line.strip():
                try:
                    return "turns" in json.loads(line)
                except json.JSONDecodeError:
                    return False
    return False


def training_data_root(config: TrainConfig) -> str | None:
    """The data root a run reads (resolved: ``config.data_root``, else ``$TONEWATCH_DATA``), to record with it.

    ``None`` when none is configured and no source of the mix needs one (the
    project's own data is inside the package); a
    :class:`~tonewatch.data.paths.DataRootNotFoundError` when a source does.
    """
    needed = any(share > 0 and not get_source(name).in_repo for name, share in config.source_shares.items())
    try:
        return str(resolve_data_root(config.data_root))
    except DataRootNotFoundError:
        if needed:
            raise
        return None


def build_training_data(config: TrainConfig) -> TrainingData:
    """Load, filter, cap and split every source of the training mix.

    Records the project annotated (``data/annotations``) never go to training from their held-out fifth; the rest
    form the ``annotations`` pool when ``annotated_share`` > 0 (a tenth of its conversations for validation),
    else they stay in their sources. The cap on records per source never drops an annotated record.
    """
    train: dict[str, list[Record]] = {}
    validation: dict[str, list[Record]] = {}
    annotated: list[Record] = []
    agent_turns: list[Record] = []
    # The researcher's own files first: a bad row is reported before minutes of public sources load.
    extras = {extra.source_name: [r for r in load_extra(extra) if is_labelled(r)] for extra in config.extra_data}
    for name, share in config.source_shares.items():
        if share <= 0:
            continue
        source = get_source(name)
        if source.tier != "train" and not config.allow_eval_tier:
            raise ConfigError(f"source {name!r} is {source.tier}-tier and may not be trained on")
        # Weight 0: a source's claim that the report scores but training must not learn (COLD's offensive).
        records = [r for r in load_source(name, config.data_root) if is_labelled(r) and r.weight > 0]
        records = [record for record in records if record.meta.get("annotated") != "heldout"]
        if config.signals and name == IN_DOMAIN_SOURCE:
            records, agent_turns = signal_labelled(records, config)
        if config.annotated_share > 0:
            annotated += [record for record in records if "annotated" in record.meta]
            records = [record for record in records if "annotated" not in record.meta]
        if name != IN_DOMAIN_SOURCE:
            kept = [record for record in records if "annotated" not in record.meta]
            capped = {record.id for record in cap_records(kept, config.max_records_per_source, config.seed)}
            records = [record for record in records if "annotated" in record.meta or record.id in capped]
        train[name], validation[name] = split_source(records, name, config.seed, config.validation_fraction)
    if annotated:
        train[ANNOTATIONS_POOL], validation[ANNOTATIONS_POOL] = split_by_conversation(
            annotated, PUBLIC_VALIDATION_FRACTION, config.seed
        )
    if agent_turns:  # the same split by conversation as callcenter_train: a validation conversation stays whole
        train[AGENT_TURNS_POOL], validation[AGENT_TURNS_POOL] = split_by_conversation(
            agent_turns, config.validation_fraction, config.seed
        )
    for name, records in extras.items():
        train[name], validation[name] = split_by_conversation(records, config.validation_fraction, config.seed)
    return TrainingData(train, validation)


def source_shares(config: TrainConfig, pools: set[str] | None = None) -> dict[str, float]:
    """The batch share of every training source, extra data and the annotations pool included, normalised to sum
    to 1 (each configured share divided by their sum); with ``pools``, only those (the pools that have training
    examples: a share of nothing is never drawn). With signals, the agent turns take ``agent_turn_share`` of each
    batch and the other pools share the rest in their proportions."""
    shares = {name: share for name, share in config.source_shares.items() if share > 0}
    if config.annotated_share > 0:
        shares[ANNOTATIONS_POOL] = config.annotated_share
    for extra in config.extra_data:
        shares[extra.source_name] = extra.share
    if pools is not None:
        shares = {name: share for name, share in shares.items() if name in pools}
    total = sum(shares.values())
    shares = {name: share / total for name, share in shares.items()}
    agent_share = config.agent_turn_share if config.signals else 0.0
    if agent_share > 0 and (pools is None or AGENT_TURNS_POOL in pools):
        shares = {name: share * (1 - agent_share) for name, share in shares.items()}
        shares[AGENT_TURNS_POOL] = agent_share
    return shares


def signal_targets(record: Record) -> list[float]:
    """One value per ``labels.SIGNALS``: the record's label (1.0 or 0.0), else -1.0 (unknown, or a signal of the
    other speaker, which training never asks of this turn)."""
    known = record.signals or {}
    return [float(known[name]) if name in known else -1.0 for name in SIGNALS]


def record_to_example(record: Record) -> dict:
    """The label fields of one record as plain values (the text fields are tokenised later)."""
    allowed = [record.emotion] if record.emotion is not None else list(record.emotion_among)
    return {
        "id": record.id,
        "text": record.text,
        "context_speakers": [turn.speaker for turn in record.context],
        "context_texts": [turn.text for turn in record.context],
        "lang": record.lang,
        "source": record.source,
        "conversation_id": record.conversation_id,
        "emotion_allowed": [int(label in allowed) for label in EMOTION_LABELS],
        "emotion_exact": LABEL2ID[record.emotion] if record.emotion is not None else -1,
        "escalate": -1.0 if record.escalate is None else float(record.escalate),
        "weight": float(record.weight),
        "speaker": record.speaker,
        "signals": signal_targets(record),
    }


def tokenize_batch(batch: dict, tokenizer, limits: InputLimits) -> dict:
    """``datasets.map`` function: ``input_ids`` and ``token_type_ids`` of turn + context for a batch of examples."""
    input_ids, token_type_ids = [], []
    turns = zip(batch["text"], batch["context_speakers"], batch["context_texts"], batch["speaker"], strict=True)
    for text, speakers, texts, speaker in turns:
        encoded = encode_turn(tokenizer, text, list(zip(speakers, texts, strict=True)), limits, speaker)
        input_ids.append(encoded.input_ids)
        token_type_ids.append(encoded.token_type_ids)
    return {"input_ids": input_ids, "token_type_ids": token_type_ids}


def to_dataset(records: list[Record], tokenizer, limits: InputLimits, cache_dir: Path | None = None):
    """A tokenised ``datasets.Dataset`` of ``records``; cached on disk by content when ``cache_dir`` is given."""
    import datasets

    examples = [record_to_example(record) for record in records]
    dataset = datasets.Dataset.from_list(examples) if examples else _empty_dataset()
    cache_file = None
    if cache_dir is not None and examples:
        fingerprint = hashlib.sha256(
            json.dumps([examples, limits.__dict__, tokenizer.name_or_path, len(tokenizer)], ensure_ascii=False).encode()
        ).hexdigest()[:24]
        cache_dir.mkdir(parents=True, exist_ok=True)
        cache_file = str(cache_dir / f"tokenized-{fingerprint}.arrow")
    return dataset.map(
        tokenize_batch,
        batched=True,
        fn_kwargs={"tokenizer": tokenizer, "limits": limits},
        cache_file_name=cache_file,
        load_from_cache_file=cache_file is not None,
        desc="tokenising",
    )


def _empty_dataset():
    import datasets

    features = datasets.Features(
        {
            "id": datasets.Value("string"),
            "text": datasets.Value("string"),
            "context_speakers": datasets.Sequence(datasets.Value("string")),
            "context_texts": datasets.Sequence(datasets.Value("string")),
            "lang": datasets.Value("string"),
            "source": datasets.Value("string"),
            "conversation_id": datasets.Value("string"),
            "emotion_allowed": datasets.Sequence(datasets.Value("int64")),
            "emotion_exact": datasets.Value("int64"),
            "escalate": datasets.Value("float64"),
            "weight": datasets.Value("float64"),
            "speaker": datasets.Value("string"),
            "signals": datasets.Sequence(datasets.Value("float64")),
        }
    )
    return datasets.Dataset.from_dict({name: [] for name in features}, features=features)
