"""The model card (``README.md`` of a model directory), generated from what the run recorded.

Everything comes from the model directory and from code that describes it:

- ``config.json``: name, version, base encoder, input limits, LoRA shape, calibration;
- ``training_config.json``: the resolved recipe; ``training_summary.json``: records per source, the batch
  shares after normalisation and the command that started the run (``tonewatch train --config ... --set ...``);
- ``report.json``: the evaluation (the front matter's ``model-index`` and the card's figures);
- ``card.toml`` (optional, :class:`CardNotes`): facts the run could not record, written by hand;
- the data registry (``tonewatch.data.sources``): each source's license, tier and languages; and
  :func:`tonewatch.model.encoder.base_encoder_info`: what the base encoder is and its license.

A field an older run did not record is said to be missing, never filled with today's default. The front matter
is Hugging Face model-card metadata, written by ``huggingface_hub.ModelCardData``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from tonewatch import configfile
from tonewatch.data.sources import SOURCES
from tonewatch.labels import EMOTION_LABELS, ESCALATION_LABEL, SIGNAL_SPEAKER
from tonewatch.model.encoder import BaseEncoderInfo, base_encoder_info
from tonewatch.training.config import ExtraData, TrainCommand, TrainConfig
from tonewatch.training.dataset import ANNOTATIONS_POOL
from tonewatch.training.report import HEADLINE_FIGURES, IN_DOMAIN, get_path, headline_rows

CARD_NOTES_NAME = "card.toml"
UNKNOWN_LICENSE = "unknown"
"""The license id the card gives a component whose license was not recorded."""
LANGUAGE_NAMES = {"zh": "Chinese", "ru": "Russian"}
PUBLIC_FIGURES = (
    ("emotion macro-F1 (exact labels)", ("emotion", "exact", "macro_f1")),
    ("emotion in allowed set (partial labels)", ("emotion", "partial", "prediction_in_allowed_set")),
    ("abusive-vs-rest macro-F1", ("emotion", "abusive_vs_rest", "macro_f1")),
    ("escalation F1", ("escalation", "f1")),
)
"""The figures of a public held-out set in the model-index (those of report.md's public table)."""
METRIC_TYPES = {
    "macro_f1": ("f1", "macro"),
    "f1": ("f1", None),
    "precision": ("precision", None),
    "recall": ("recall", None),
    "pr_auc": ("pr_auc", None),
    "ece": ("ece", None),
    "prediction_in_allowed_set": ("accuracy", "partial labels"),
}
"""A report figure's last key -> Hugging Face metric type and config."""


@dataclass
class CardNotes:
    """``card.toml`` beside a model: facts its run did not record (written by hand), kept in every regenerated
    card. Each entry is one paragraph (``training``) or one bullet (``limitations``) of Markdown."""

    training: list[str] = field(
        default_factory=list, metadata={"help": "Paragraphs added to the card's Training section."}
    )
    limitations: list[str] = field(default_factory=list, metadata={"help": "Bullets added to the Limitations."})

    def __post_init__(self) -> None:
        configfile.coerce_fields(self)


@dataclass(frozen=True)
class TrainingSource:
    """One row of the card's training-data table."""

    name: str
    license: str
    license_ids: tuple[str, ...]
    """Hugging Face license ids; empty when the license was not recorded."""
    tier: str
    langs: tuple[str, ...]
    train_records: int | None
    validation_records: int | None
    batch_share: float | None
    hub_dataset: str | None = None
    """The Hugging Face dataset id of extra data read from the hub."""


def _load_json(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None


def load_card_notes(directory: Path) -> CardNotes:
    path = directory / CARD_NOTES_NAME
    return configfile.load(CardNotes, path) if path.is_file() else CardNotes()


def _recipe(directory: Path) -> TrainConfig | None:
    """The run's resolved config as a TrainConfig, or None when it is missing or no longer loads."""
    path = directory / "training_config.json"
    if not path.is_file():
        return None
    try:
        return TrainConfig.from_file(path)
    except ValueError:  # ConfigError included: a run this tonewatch cannot read back
        return None


def batch_shares(summary: dict, recipe: TrainConfig | None) -> dict[str, float]:
    """Each source's share of a batch after normalisation: recorded by the run, else computed from its config
    the way training does (runs before the shares were recorded)."""
    if summary.get("batch_shares") is not None:
        return summary["batch_shares"]
    if recipe is None:
        return {}
    from tonewatch.training.dataset import source_shares

    return source_shares(recipe)


ANNOTATION_LICENSE_IDS = ("cc-by-4.0",)
"""The license of ``data/annotations``: the project's labels, under the license of its own data."""


def training_sources(summary: dict, recipe: TrainConfig | None) -> list[TrainingSource]:
    """Every source the run trained on (``records`` of its summary), with license, tier, records and share."""
    shares = batch_shares(summary, recipe)
    extras: dict[str, ExtraData] = {extra.source_name: extra for extra in (recipe.extra_data if recipe else [])}
    rows = []
    for name, counts in (summary.get("records") or {}).items():
        source, extra = SOURCES.get(name), extras.get(name)
        if source is not None:
            text, ids, tier, langs, hub = source.license, source.license_ids, source.tier, source.langs, None
        elif name == ANNOTATIONS_POOL:
            # The project's exact labels (CC BY 4.0, like its own data) on texts of the sources listed beside it.
            text = "CC BY 4.0 (the project's labels; the texts are the listed sources')"
            ids, tier, langs, hub = ANNOTATION_LICENSE_IDS, "train", ("zh", "ru"), None
        else:
            declared = extra.license if extra else None
            text = declared or "not recorded (user data)"
            ids, tier = ((declared,) if declared else ()), "user data"
            langs = (extra.lang,) if extra and extra.lang else ()
            hub = extra.path if extra is not None and extra.is_hub_dataset else None
        rows.append(
            TrainingSource(
                name, text, ids, tier, langs, counts.get("train"), counts.get("validation"), shares.get(name), hub
            )
        )
    return rows


def license_components(sources: list[TrainingSource], base: BaseEncoderInfo) -> dict[str, list[str]]:
    """License id -> what carries it (the base encoder, each training source); ``unknown`` where not recorded."""
    components: dict[str, list[str]] = {}
    for license_id in (base.license,) if base.license else (UNKNOWN_LICENSE,):
        components.setdefault(license_id, []).append(f"base encoder `{base.upstream or base.name}`")
    for source in sources:
        for license_id in source.license_ids or (UNKNOWN_LICENSE,):
            components.setdefault(license_id, []).append(f"`{source.name}`")
    return components


def card_license(components: dict[str, list[str]]) -> dict[str, str]:
    """The front matter's license: the one license every component shares, else ``other`` with a name that lists
    them all (the card's Licenses section says which component carries which)."""
    if len(components) == 1 and UNKNOWN_LICENSE not in components:
        return {"license": next(iter(components))}
    return {"license": "other", "license_name": "+".join(sorted(components))}


def evaluation_split(name: str, tier: str | None) -> str:
    """The part of a source a report set is (``training.evaluate.evaluation_sets``): callcenter_dev whole; a
    train-tier source's held-out part (its dev/valid file or a tenth of its conversations); an eval-tier
    source a seeded sample."""
    if name == IN_DOMAIN:
        return "all"
    return "held-out" if tier == "train" else "sample"


def model_index_results(report: dict) -> list:
    """``huggingface_hub.EvalResult`` of every model figure in ``report.json``: the in-domain headline figures per
    language, and each public set's figures."""
    from huggingface_hub import EvalResult

    results = []

    def add(set_name: str, tier: str | None, scope: str | None, label: str, path, figures: dict) -> None:
        value = get_path(figures, *path)
        if value is None:
            return
        metric_type, metric_config = METRIC_TYPES.get(path[-1], (path[-1], None))
        results.append(
            EvalResult(
                task_type="text-classification",
                task_name="customer emotion and escalation",
                dataset_type=set_name,
                dataset_name=set_name,
                dataset_config=scope,
                dataset_split=evaluation_split(set_name, tier),
                metric_type=metric_type,
                metric_config=metric_config,
                metric_name=f"{label} ({scope or 'all'})" if set_name == IN_DOMAIN else label,
                metric_value=round(float(value), 4),
            )
        )

    for set_name, entry in report.get("sets", {}).items():
        figures, tier = entry.get("model") or {}, entry.get("tier")
        if set_name == IN_DOMAIN:
            scopes = [(None, figures)] + [(lang, f) for lang, f in sorted(figures.get("by_language", {}).items())]
            for scope, scoped in scopes:
                for label, path in HEADLINE_FIGURES:
                    add(set_name, tier, scope, label, path, scoped)
        else:
            for label, path in PUBLIC_FIGURES:
                add(set_name, tier, None, label, path, figures)
    return results


def front_matter(
    name: str,
    sources: list[TrainingSource],
    base: BaseEncoderInfo,
    report: dict | None,
    teacher: str | None,
) -> str:
    """The card's YAML metadata (Hugging Face model-card fields)."""
    from huggingface_hub import ModelCardData

    languages = list(dict.fromkeys(lang for source in sources for lang in source.langs))
    tags = ["tonewatch", "emotion", "escalation", "contact-centre"] + (["distillation"] if teacher else [])
    results = model_index_results(report) if report else []
    data = ModelCardData(
        **card_license(license_components(sources, base)),
        language=languages or None,
        library_name="tonewatch",
        pipeline_tag="text-classification",
        base_model=base.upstream,
        datasets=[source.hub_dataset or source.name for source in sources] or None,
        tags=tags,
        model_name=name if results else None,
        eval_results=results or None,
    )
    return data.to_yaml()


def _share(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g}"


def _count(value: int | None) -> str:
    return "-" if value is None else str(value)


def _languages(codes: list[str]) -> str:
    return " and ".join(f"{LANGUAGE_NAMES.get(code, code)} (`{code}`)" for code in codes)


def _base_encoder_lines(config: dict, base: BaseEncoderInfo, size_mb: float) -> list[str]:
    if base.built_from:
        what = (
            f"- `{base.name}`: [`{base.upstream}`](https://huggingface.co/{base.upstream}) (license "
            f"`{base.license}`) rebuilt offline by tonewatch from `{base.built_from}`: " + "; ".join(base.notes) + "."
        )
    elif base.upstream:
        what = f"- `{base.name}`, a Hugging Face model (tonewatch does not record its license)."
    else:
        what = f"- A local encoder directory, `{base.name}`."
    sha = config.get("base_weights_sha256")
    if sha:
        what += f" Weights sha256 `{sha}`."
    of = f" of {base.num_hidden_layers}" if base.num_hidden_layers else ""
    return [
        what,
        f"- First {config.get('num_hidden_layers')}{of} layers kept; LoRA r={config.get('lora_r')} "
        f"alpha={config.get('lora_alpha')} on {', '.join(config.get('lora_target_modules', []))}, merged into the "
        "base weights at load time; token-type embeddings and two heads trained in full.",
        f"- This directory stores only the trained tensors: `model.safetensors` is {size_mb:.1f} MB.",
    ]


def _training_data_lines(sources: list[TrainingSource], components: dict[str, list[str]]) -> list[str]:
    if not sources:
        return ["The run did not record its training data (`records` in `training_summary.json`).", ""]
    lines = [
        "| source | license | tier | train records | validation records | batch share |",
        "|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {s.name} | {s.license} | {s.tier} | {_count(s.train_records)} | {_count(s.validation_records)} | "
        f"{_share(s.batch_share)} |"
        for s in sources
    ]
    eval_tier = [f"`{s.name}`" for s in sources if s.tier == "eval"]
    names = {s.name for s in sources}
    lines += [
        "",
        "Batch shares are normalised: each configured share (`source_shares`, `extra_data`) divided by their sum. "
        + (
            f"This run trained on eval-tier sources ({', '.join(eval_tier)}: unclear licenses): a research model, "
            "not one to ship. "
            if eval_tier
            else "Every registry source is `train`-tier (a license that allows derived models). "
        )
        + "`callcenter_dev` (the in-domain evaluation set) was never trained on; early stopping and calibration "
        + (
            "used held-out `callcenter_train` conversations. "
            if "callcenter_train" in names
            else "used the held-out part of the sources above. "
        )
        + "See `data/SOURCES.md` for every mapping onto the label scheme.",
        "",
        "## Licenses",
        "",
        "The weights derive from the base encoder and the training data; check each license before you "
        "redistribute them:",
        "",
    ]
    lines += [f"- `{license_id}`: {', '.join(who)}" for license_id, who in sorted(components.items())]
    return [*lines, ""]


def _name_line(config: dict, training: dict) -> str:
    name, version = config.get("name"), config.get("version")
    run_name = Path(training.get("output_dir") or "").name
    if training.get("model_name") is None and run_name and run_name != name:
        how = f"renamed for release (its run, `{run_name}`, set no `model_name`)"
    elif "model_name" in training and training["model_name"] is None:
        how = "named after its output directory (the run set no `model_name`)"
    elif training.get("model_name"):
        how = "named by the run's `model_name`"
    else:
        how = "the run did not record how it was named"
    return f"`{name}`, version {version}: {how}."


def _reproduction(training: dict, summary: dict) -> str:
    recorded = summary.get("command")
    # A rerun of a named run would carry its name: a new model is named by its own run.
    rename = " --set model_name=<new name>" if training.get("model_name") else ""
    rerun = (
        "`training_config.json` is the resolved configuration: `tonewatch train --config training_config.json "
        f"--set output_dir=<new directory>{rename}`, from this directory, trains the same recipe again."
    )
    if recorded is None:
        return f"The run did not record the command that started it (its config file and `--set` overrides). {rerun}"
    command = TrainCommand.from_json(recorded)
    if command.config_file is None:
        made = f"Made by `{command.command_line()}` (no config file: `TrainConfig`'s defaults)."
    else:
        made = f"Made by `{command.command_line()}` (config file as given, then each `--set` in order)."
    return f"{made} {rerun}"


def _training_lines(training: dict, summary: dict, notes: CardNotes) -> list[str]:
    teacher = training.get("teacher")
    text = (
        f"{training.get('max_steps')} steps of batch {training.get('batch_size')}, AdamW (LoRA lr "
        f"{training.get('learning_rate')}, heads lr {training.get('head_learning_rate')}), partial-label "
        f"cross-entropy for weak labels, class balance {training.get('class_balance')}, seed "
        f"{training.get('seed')}; best validation step {summary.get('best_step')}; {summary.get('train_minutes')} "
        f"minutes on {summary.get('device')}. "
    )
    if teacher:
        text += (
            f"Distilled from the model `{teacher}` (loss weight {training.get('distill_weight')}, temperature "
            f"{training.get('distill_temperature')}): the teacher's own training data applies too. "
        )
    return [text + _reproduction(training, summary), *(f"\n{note}" for note in notes.training)]


def _evaluation_lines(report: dict | None) -> list[str]:
    if not report:
        return ["No evaluation report yet: run `tonewatch evaluate` on this directory."]
    lines = [
        f"On `{IN_DOMAIN}` (never trained on), beside a TF-IDF + logistic regression baseline trained in the same run:",
        "",
        "| figure | scope | model | baseline |",
        "|---|---|---|---|",
    ]
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in headline_rows(report)]
    probes = report.get("probes")
    if probes:
        counts = [
            f"{round(f['trigger_escalated'] * f['trigger_turns'])} of {f['trigger_turns']} {lang} trigger turns "
            f"({round(f['negative_escalated'] * f['negative_turns'])} of {f['negative_turns']} negatives)"
            for lang, f in probes.items()
        ]
        lines += [
            "",
            "Escalation probes (hand-written conversations in `data/probes/`, evaluation only: a supervisor request "
            "or an external threat said calmly, conditionally or first, and negatives that use the same words "
            f"without one): this model escalates at {'; '.join(counts)}.",
        ]
    signals = report.get("signals")
    if signals and signals.get("all"):
        figures = [
            f"{name} {lang} {row['f1']:.2f} ({row['support']} positives)"
            for lang, by_signal in signals["all"].items()
            for name, row in by_signal.items()
            if row.get("f1") is not None
        ]
        lines += [
            "",
            "Turn signals, F1 per language on the held-out turns with signal labels ("
            + ", ".join(f"`{name}`" for name in signals["sets"])
            + f"): {'; '.join(figures) or 'no signal has a positive there yet'}.",
        ]
    elif signals is not None:
        lines += ["", "Turn signals: no held-out set has signal labels yet, so the report has no signal figures."]
    return [
        *lines,
        "",
        "The full report, public held-out sets included, is `report.md` / `report.json`; the front matter's "
        "`model-index` holds the model's figures on every set.",
    ]


def _signal_lines(config: dict) -> list[str]:
    """What the card says of the turn signals, for a model that predicts them (nothing otherwise)."""
    signals = config.get("signals") or []
    if not signals:
        return []
    by_speaker = {
        speaker: ", ".join(f"`{name}`" for name in signals if SIGNAL_SPEAKER[name] == speaker)
        for speaker in ("customer", "agent")
    }
    if config.get("signal_reader", "head") == "char_ngrams":
        how = (
            "Both are read from the turn's own words by a character n-gram linear model beside the network "
            "(`signal_ngrams.safetensors`, fitted by `tonewatch fit-signals`; `signal_reader.json` records the fit), "
            "not by the encoder."
        )
    else:
        how = "A head on the encoder reads them, agent turns with an `agent:` prefix and their context."
    agent = f"agent turn {by_speaker['agent'] or 'none'}"
    return [
        "It also reads turn signals, each a calibrated probability decided at a threshold per signal and language "
        f"(issue #18): from a customer turn {by_speaker['customer'] or 'none'} (`Prediction.signals`), and from an "
        f"{agent} (`Classifier.agent_signals`). {how} Signal labels are trained on `callcenter_train` only.",
        "",
    ]


def write_model_card(model_dir: str | Path) -> Path:
    """Write ``README.md`` in ``model_dir`` from its config, training config, summary, report and card notes."""
    directory = Path(model_dir)
    config = _load_json(directory / "config.json") or {}
    training = _load_json(directory / "training_config.json") or {}
    summary = _load_json(directory / "training_summary.json") or {}
    report = _load_json(directory / "report.json")
    notes = load_card_notes(directory)
    weights = directory / "model.safetensors"
    size_mb = weights.stat().st_size / 1e6 if weights.is_file() else 0.0
    limits = config.get("limits", {})
    name = config.get("name", directory.name)
    base = base_encoder_info(config.get("base_model"))
    sources = training_sources(summary, _recipe(directory))
    components = license_components(sources, base)
    languages = list(dict.fromkeys(lang for source in sources for lang in source.langs))
    names = {source.name for source in sources}
    labels = ", ".join(f"`{label}`" for label in EMOTION_LABELS)
    lines = [
        "---",
        front_matter(name, sources, base, report, training.get("teacher")),
        "---",
        "",
        f"# {name}",
        "",
        _name_line(config, training),
        "",
        f"Customer-turn classifier for contact-centre conversations: emotion ({labels}, as defined in tonewatch's "
        f"LABELS.md) and whether the conversation needs a supervisor now (`{ESCALATION_LABEL}`), in one forward "
        "pass. Load it with `tonewatch.model.Classifier.from_pretrained(path)` or `tonewatch label --model path`.",
        "",
        *_signal_lines(config),
        "## Base encoder",
        "",
        *_base_encoder_lines(config, base, size_mb),
        "",
        "## Input",
        "",
        f"The customer turn (at most {limits.get('max_turn_tokens')} tokens, token type 0), then "
        f"up to {limits.get('max_context_turns')} preceding turns prefixed with their speaker "
        f"(token type 1), truncated from the oldest end, {limits.get('max_length')} tokens in all. "
        "Turn and context are mean-pooled separately; both heads read the concatenation.",
        "",
        "## Runtime",
        "",
        "By default tonewatch runs this model on ONNX Runtime: exported once into the cache (adapters merged, "
        "graph fused), every MatMul int8, and the turns whose int8 decision lies within the measured int8 error "
        "of a boundary re-run in fp32 (`tonewatch export`; `--backend torch` forces PyTorch). The report's "
        '"ONNX Runtime path" section gives its figures beside the PyTorch ones and how often they agree.',
        "",
        "## Training data",
        "",
        *_training_data_lines(sources, components),
        "## Training",
        "",
        *_training_lines(training, summary, notes),
        "",
        "## Calibration",
        "",
        "Temperature scaling per head and escalation thresholds per language, fitted on "
        + ("held-out `callcenter_train` conversations" if "callcenter_train" in names else "the held-out records")
        + f": `{json.dumps(config.get('calibration', {}))}`.",
        "",
        "## Evaluation",
        "",
        *_evaluation_lines(report),
        "",
        "## Limitations",
        "",
        "- The in-domain data is written, not recorded: real ASR noise, real customers and other domains may "
        "score lower than the in-domain figures.",
        "- The frustrated/angry boundary is the least reliable decision; use the scores, not only the label.",
    ]
    if any(source.name in SOURCES and source.name != "callcenter_train" for source in sources):
        lines.append(
            "- Public sources give weak evidence (partial labels) from social media, TV drama and reviews, not "
            "customer speech."
        )
    if "ru_paradetox" in names:
        lines.append(
            "- Russian abusive evidence beyond the in-domain set is weak (RuParaDetox toxic text is used only as "
            "'not calm', since much of it is profanity at the situation)."
        )
    lines += [f"- {note}" for note in notes.limitations]
    lines += [f"- {limitation}" for limitation in base.limitations]
    if languages:
        lines.append(f"- Languages: {_languages(languages)} only, those of its training data.")
    path = directory / "README.md"
    path.write_text("\n".join(lines) + "\n")
    return path
