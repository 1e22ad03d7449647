"""Typed configuration of a training run, loadable from TOML with command-line overrides."""

from __future__ import annotations

import dataclasses
import json
import os
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tonewatch import configfile
from tonewatch.model.encoder import DEFAULT_BASE_MODEL
from tonewatch.model.inputs import InputLimits

DEFAULT_SOURCE_SHARES: dict[str, float] = {
    "callcenter_train": 0.50,
    "cold": 0.10,
    "ru_paradetox": 0.10,
    "cped": 0.06,
    "cedr": 0.07,
    "ru_goemotions": 0.09,
    "stc3_dch": 0.08,
}
"""Default share of each training batch drawn from each source (train tier only)."""


DATA_FILE_SUFFIXES = (".jsonl", ".json", ".csv", ".parquet")
READERS = ("none", "char_ngrams")
"""Values of ``signal_reader`` and ``emotion_reader``: no n-gram reader, or one fitted after training."""
"""Suffixes of the local files ``extra_data`` reads; any other ``path`` is a Hugging Face dataset name."""


@dataclass
class ExtraData:
    """A researcher's own data, added by configuration alone."""

    path: str = field(
        metadata={
            "help": "Local JSONL/CSV/Parquet file (relative to the config file that names it; given with --set, to "
            "the working directory), or a Hugging Face dataset name."
        }
    )
    format: str = field(
        default="auto",
        metadata={"help": "'conversations' (project JSONL), 'texts' (text + labels columns) or 'auto'."},
    )
    lang: str | None = field(default=None, metadata={"help": "Language when the rows do not say (zh or ru)."})
    share: float = field(default=0.1, metadata={"help": "Share of each batch drawn from this data."})
    split: str = field(default="train", metadata={"help": "Split to read from a hub dataset."})
    name: str | None = field(
        default=None,
        metadata={"help": "Source name in reports and the card (default: a file's stem, a hub dataset's name)."},
    )
    license: str | None = field(
        default=None,
        metadata={
            "help": "License of this data as a Hugging Face license id (apache-2.0, cc-by-4.0, ...), for the model "
            "card; unset: the card says the license was not recorded."
        },
    )

    def __post_init__(self) -> None:
        configfile.coerce_fields(self)
        if self.format not in ("auto", "conversations", "texts"):
            raise ValueError(f"extra data format must be auto, conversations or texts, not {self.format!r}")
        if self.share <= 0:
            raise ValueError(f"extra data share must be > 0, got {self.share}")

    @property
    def is_hub_dataset(self) -> bool:
        """Whether ``path`` names a Hugging Face dataset (it does not end in one of :data:`DATA_FILE_SUFFIXES`)."""
        return Path(self.path).suffix not in DATA_FILE_SUFFIXES

    @property
    def source_name(self) -> str:
        """The name its records carry (and its batch share, and the card's row): ``name``, else a data file's
        stem (``data/my_calls.jsonl`` -> ``my_calls``), else the hub dataset's name with ``/`` -> ``_``."""
        if self.name:
            return self.name
        return self.path.replace("/", "_") if self.is_hub_dataset else Path(self.path).stem


@dataclass
class TrainConfig:
    """One training run: data mix, model shape, optimisation, calibration and outputs."""

    output_dir: str = field(default="runs/default", metadata={"help": "Where the model directory is written."})
    base_model: str = field(
        default=DEFAULT_BASE_MODEL,
        metadata={"help": "Base encoder: the offline default, a Hugging Face id, or a local path."},
    )
    data_root: str | None = field(
        default=None,
        metadata={
            "help": "Folder of the third-party datasets (cold/, cedr/, ...); unset: --data-root or $TONEWATCH_DATA. "
            "A run records the folder it read in training_config.json."
        },
    )
    source_shares: dict[str, float] = field(
        default_factory=lambda: dict(DEFAULT_SOURCE_SHARES),
        metadata={
            "help": "Share of each batch drawn from each source; sources not listed, or at 0, are not trained on "
            "(a recipe that extends another merges this table key by key: set a share to 0 to drop a source)."
        },
    )
    annotated_share: float = field(
        default=0.0,
        metadata={
            "help": "Share of each batch drawn from the project's exact labels on third-party text (the training "
            "part of data/annotations, pooled across sources; its held-out fifth is never trained on). 0 (the default "
            "for runs that predate it): those records stay in their sources' pools."
        },
    )
    max_records_per_source: int = field(
        default=20000, metadata={"help": "Cap on records read per public source (random subset, fixed seed)."}
    )
    allow_eval_tier: bool = field(
        default=False,
        metadata={"help": "Allow eval-tier sources (unclear licenses) in training: research runs only, never shipped."},
    )
    extra_data: list[ExtraData] = field(default_factory=list, metadata={"help": "Researcher-provided datasets."})
    validation_fraction: float = field(
        default=0.15,
        metadata={"help": "Share of callcenter_train conversations held out for early stopping and calibration."},
    )
    teacher: str | None = field(
        default=None,
        metadata={
            "help": "A trained tonewatch model to distil from (a directory or a bundled name such as default): the "
            "student also learns the teacher's emotion distribution and escalation probability on every training "
            "example. Same input limits and base encoder as this config. None: no teacher."
        },
    )
    distill_weight: float = field(
        default=0.5, metadata={"help": "With a teacher: share of the loss from matching the teacher (0-1)."}
    )
    distill_temperature: float = field(
        default=2.0, metadata={"help": "With a teacher: softmax temperature of the distillation loss."}
    )
    num_hidden_layers: int = field(default=12, metadata={"help": "Encoder layers kept (the first N)."})
    max_length: int = field(default=128, metadata={"help": "Maximum tokens of turn + context."})
    max_turn_tokens: int = field(default=64, metadata={"help": "Maximum tokens of the labelled turn itself."})
    max_context_turns: int = field(default=4, metadata={"help": "Preceding turns read as context."})
    text_normalization: str = field(
        default="none",
        metadata={
            "help": "Text normalisation before tokenising, recorded in the model: 'none' or 'lookalikes' (Latin "
            "look-alike letters inside Cyrillic words, invisible characters)."
        },
    )
    length_group_steps: int = field(
        default=1,
        metadata={
            "help": "Group the examples of this many consecutive steps by length, so that short examples are "
            "batched (and padded) together; 1 = off. The examples seen stay the same."
        },
    )
    lora_r: int = field(default=16, metadata={"help": "LoRA rank."})
    lora_alpha: float = field(default=32.0, metadata={"help": "LoRA alpha (scaling = alpha / r)."})
    lora_dropout: float = field(default=0.1, metadata={"help": "Dropout on the LoRA path."})
    lora_target_modules: list[str] = field(
        default_factory=lambda: ["query", "key", "value", "dense"],
        metadata={"help": "Encoder Linear modules that get LoRA factors."},
    )
    dropout: float = field(default=0.1, metadata={"help": "Dropout before the heads."})
    batch_size: int = field(default=32, metadata={"help": "Examples per optimisation step."})
    max_steps: int = field(default=600, metadata={"help": "Optimisation steps."})
    learning_rate: float = field(default=5e-4, metadata={"help": "Peak learning rate of the LoRA factors."})
    head_learning_rate: float = field(default=2e-3, metadata={"help": "Peak learning rate of the heads."})
    weight_decay: float = field(default=0.01, metadata={"help": "AdamW weight decay."})
    warmup_steps: int = field(default=40, metadata={"help": "Linear warm-up steps, then linear decay."})
    escalation_loss_weight: float = field(default=1.0, metadata={"help": "Weight of the escalation loss."})
    signals: bool = field(
        default=False,
        metadata={
            "help": "Train the turn-signal head (labels.SIGNALS: customer triggers, agent acts) on the signal labels "
            "of data/signals (or signal_labels_dir); false: a model without signals, as before."
        },
    )
    signal_loss_weight: float = field(
        default=1.0, metadata={"help": "With signals: weight of the masked turn-signal loss."}
    )
    agent_turn_share: float = field(
        default=0.15,
        metadata={
            "help": "With signals: share of each batch drawn from callcenter_train agent turns with signal labels "
            "(the other pools share the rest in their proportions)."
        },
    )
    signal_labels_dir: str | None = field(
        default=None,
        metadata={"help": "With signals: folder of the signal overlays (<set>.jsonl); unset: data/signals."},
    )
    signal_reader: str = field(
        default="none",
        metadata={
            "help": "'char_ngrams': after training, fit the char n-gram signal reader onto the model, as `tonewatch "
            "fit-signals` does (on data/signals, or signal_labels_dir); 'none': the network's own signals, if any."
        },
    )
    emotion_reader: str = field(
        default="none",
        metadata={
            "help": "'char_ngrams': after training (and the signal reader), fit the emotion n-gram expert beside the "
            "network, as `tonewatch fit-emotion` does; 'none': the network alone."
        },
    )
    class_balance: float = field(
        default=0.5,
        metadata={"help": "Emotion class weights = (1 / frequency) ** class_balance on exact labels; 0 = none."},
    )
    eval_every: int = field(default=100, metadata={"help": "Steps between validation runs (best model is kept)."})
    checkpoint_every: int = field(default=50, metadata={"help": "Steps between resumable checkpoints."})
    log_every: int = field(default=10, metadata={"help": "Steps between progress lines."})
    seed: int = field(default=20261122, metadata={"help": "Seed of sampling, splits and initialisation."})
    threads: int = field(default=0, metadata={"help": "torch CPU threads (0 = torch's default)."})
    device: str = field(default="auto", metadata={"help": "'auto' (CUDA when present), 'cpu' or 'cuda'."})
    evaluate: bool = field(default=True, metadata={"help": "Write the evaluation report after training."})
    model_name: str | None = field(
        default=None,
        metadata={
            "help": "Name in config.json, the model card and the server's /v1/info; unset: the output directory's "
            "name (runs/mine -> mine). Shipping a model under a release name is an explicit --set model_name=..."
        },
    )
    model_version: str = field(
        default="0",
        metadata={"help": "Version in config.json, the card and /v1/info; a model to ship sets it explicitly."},
    )

    def __post_init__(self) -> None:
        if isinstance(self.teacher, list):  # before the type check, whose message would not say why
            raise ValueError(
                f"teacher must be one model directory or bundled model name, got {self.teacher!r} (ensembles of "
                "teachers were removed; git tag archive/turns-and-ensembles still has them)"
            )
        configfile.coerce_fields(self)  # types first: a TOML table in extra_data becomes an ExtraData here
        for name, value in self.source_shares.items():
            if value < 0:
                raise ValueError(f"source_shares[{name!r}] must be >= 0, got {value}")
        if self.annotated_share < 0:
            raise ValueError(f"annotated_share must be >= 0, got {self.annotated_share}")
        if not self.source_shares and not self.extra_data:
            raise ValueError("nothing to train on: source_shares and extra_data are both empty")
        positive = {
            "batch_size": self.batch_size,
            "max_steps": self.max_steps,
            "num_hidden_layers": self.num_hidden_layers,
            "lora_r": self.lora_r,
            "eval_every": self.eval_every,
            "checkpoint_every": self.checkpoint_every,
            "log_every": self.log_every,
            "max_records_per_source": self.max_records_per_source,
            "length_group_steps": self.length_group_steps,
        }
        for name, value in positive.items():
            if value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        if not 0.0 < self.validation_fraction < 1.0:
            raise ValueError(f"validation_fraction must be in (0, 1), got {self.validation_fraction}")
        if self.max_length < self.max_turn_tokens + 2:
            raise ValueError("max_length must leave room for the turn and two special tokens")
        self.limits  # noqa: B018 -- InputLimits checks text_normalization
        if not 0.0 <= self.distill_weight <= 1.0:
            raise ValueError(f"distill_weight must be in [0, 1], got {self.distill_weight}")
        if self.distill_temperature <= 0:
            raise ValueError(f"distill_temperature must be > 0, got {self.distill_temperature}")
        if self.warmup_steps < 0:
            raise configfile.ConfigError(f"warmup_steps must be >= 0, got {self.warmup_steps}", key="warmup_steps")
        if self.warmup_steps > self.max_steps:  # the learning rate would never reach its peak nor decay
            raise configfile.ConfigError(
                f"warmup_steps ({self.warmup_steps}) is larger than max_steps ({self.max_steps})", key="warmup_steps"
            )
        if self.learning_rate <= 0 or self.head_learning_rate <= 0:
            raise ValueError("learning rates must be > 0")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"device must be auto, cpu or cuda, not {self.device!r}")
        if self.signal_loss_weight < 0:
            raise ValueError(f"signal_loss_weight must be >= 0, got {self.signal_loss_weight}")
        if not 0.0 <= self.agent_turn_share < 1.0:
            raise ValueError(f"agent_turn_share must be in [0, 1), got {self.agent_turn_share}")
        for name in ("signal_reader", "emotion_reader"):
            if getattr(self, name) not in READERS:
                raise ValueError(f"{name} must be one of {', '.join(READERS)}, not {getattr(self, name)!r}")
        if not 0.0 <= self.class_balance <= 1.0:
            raise ValueError(f"class_balance must be in [0, 1], got {self.class_balance}")
        from tonewatch.data.sources import SOURCES

        if self.signals and self.source_shares.get("callcenter_train", 0) <= 0:
            raise ValueError("signals = true needs callcenter_train in source_shares: its signal labels are trained on")
        unknown = [name for name in self.source_shares if name not in SOURCES]
        if unknown:
            raise ValueError(f"unknown sources in source_shares: {unknown}; known: {', '.join(SOURCES)}")
        if "callcenter_dev" in self.source_shares:
            raise ValueError("callcenter_dev is the validation set and is never trained on")
        eval_tier = [name for name in self.source_shares if SOURCES[name].tier == "eval"]
        if eval_tier and not self.allow_eval_tier:
            raise ValueError(
                f"sources {eval_tier} are eval-tier (unclear licenses): set allow_eval_tier = true for a research run"
            )

    @property
    def limits(self) -> InputLimits:
        """How this recipe's model reads its input (written into the model's config.json)."""
        return InputLimits(self.max_length, self.max_turn_tokens, self.max_context_turns, self.text_normalization)

    @property
    def resolved_model_name(self) -> str:
        """``model_name``, else the output directory's name: a run is named by itself, not by the recipe it came
        from."""
        return self.model_name or Path(os.path.abspath(os.path.expanduser(self.output_dir))).name

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n")

    @classmethod
    def from_file(cls, path: str | Path | None, overrides: list[str] | None = None) -> TrainConfig:
        """Load a TOML recipe (its ``extends`` chain resolved) or a saved JSON config, apply ``key=value``
        overrides, validate; a :class:`~tonewatch.configfile.ConfigError` names the file and key of any error."""
        config = configfile.apply_overrides(
            configfile.read_config_file(path) if path is not None else configfile.ConfigValues(), overrides or ()
        )
        source = str(path) if path is not None else None
        drop_retired_fields(config, source)
        resolve_extra_data_paths(config)
        return configfile.build(cls, config.values, origins=config, source=source)


@dataclass(frozen=True)
class TrainCommand:
    """How ``tonewatch train`` was started: the config file as given and the ``--set`` overrides, in order. A run
    records it in ``training_summary.json`` so that its model card names the command that made it."""

    config_file: str | None = None
    overrides: tuple[str, ...] = ()

    def command_line(self) -> str:
        """The shell command (quoted for a POSIX shell), without ``--resume`` or ``--data-root``."""
        words = ["tonewatch", "train"]
        if self.config_file is not None:
            words += ["--config", self.config_file]
        for override in self.overrides:
            words += ["--set", override]
        return shlex.join(words)

    def to_json(self) -> dict[str, Any]:
        return {"config_file": self.config_file, "overrides": list(self.overrides)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TrainCommand:
        return cls(data.get("config_file"), tuple(data.get("overrides") or ()))


def resolve_extra_data_paths(config: configfile.ConfigValues) -> None:
    """Make every relative local ``extra_data`` path absolute, in place: relative to the config file that set it
    (as ``extends`` is), or to the working directory when ``--set`` gave it. A hub dataset name is kept."""
    entries = config.values.get("extra_data")
    if not isinstance(entries, list):
        return  # not set, or of a wrong type that building reports
    resolved = []
    for index, entry in enumerate(entries):
        path = entry.get("path") if isinstance(entry, dict) else None
        if not isinstance(path, str) or not path:
            resolved.append(entry)
            continue
        origin = config.origin(f"extra_data[{index}].path", None)
        from_file = origin is not None and not origin.startswith("--set ")
        base = Path(origin).parent if from_file else Path.cwd()
        candidate = Path(path).expanduser()
        if not candidate.is_absolute() and (candidate.suffix in DATA_FILE_SUFFIXES or (base / candidate).exists()):
            candidate = (base / candidate).resolve()
        resolved.append({**entry, "path": str(candidate)} if candidate != Path(path) else entry)
    config.values["extra_data"] = resolved


RETIRED_FIELDS: dict[str, Any] = {"architecture": "joint", "context_grad": False}
"""Fields of the removed ``turns`` architecture, each with the one value it may still hold: older runs' saved
``training_config.json`` (the shipped models' included) have them and still load."""


def drop_retired_fields(config: configfile.ConfigValues, source: str | None = None) -> None:
    """Remove :data:`RETIRED_FIELDS` from ``config``; any other value of them is a ConfigError naming its file."""
    for name, kept in RETIRED_FIELDS.items():
        value = config.values.pop(name, kept)
        if value != kept:
            where = config.origin(name, source)
            raise configfile.ConfigError(
                f"{where + ': ' if where else ''}{name} = {value!r} is not supported: the 'turns' architecture was "
                f"removed (git tag archive/turns-and-ensembles still has it); only {name} = {kept!r} is accepted",
                key=name,
            )


def field_help(cls: type = TrainConfig) -> list[tuple[str, str, str]]:
    """``(name, default, help)`` of every field, for ``--show-fields``."""
    return configfile.field_help(cls)
