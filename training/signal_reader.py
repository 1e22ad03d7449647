"""Fit the char n-gram turn-signal reader (:mod:`tonewatch.model.ngram_signals`) onto a trained model.

``tonewatch fit-signals MODEL --output DIR`` writes a copy of ``MODEL`` (same encoder, LoRA, emotion and
escalation heads and their calibration: those figures do not move) that also reads the six turn signals:

1. the signal-labelled turns of ``callcenter_train`` (``data/signals/callcenter_train.jsonl``: customer turns for
   the customer signals, agent turns for the agent signals) are split by conversation with the model's own seed
   and ``validation_fraction`` (from its ``training_config.json``), so the held-out part is the one the model
   itself was calibrated on and never trained on;
2. per signal, an L2 logistic regression (``C``, classes balanced) on the training part's n-gram features;
3. per signal, Platt scaling on the held-out part, folded into the reader's weights, so each signal's
   probability is calibrated on its own (a balanced fit over-states rare signals);
4. the model's signal temperature and per-signal, per-language thresholds, fitted on the held-out part as
   training does (:func:`tonewatch.training.calibration.fit_signal_calibration`), from the stored (float16) reader.

It takes a minute or two on a CPU and needs no data root; ``--evaluate`` (with one) then writes the report.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import time
from pathlib import Path

import numpy as np

from tonewatch.data.records import Record
from tonewatch.data.signal_labels import signal_set_records
from tonewatch.data.splits import split_by_conversation
from tonewatch.labels import LANGUAGES, SIGNALS
from tonewatch.model.directory import save_pretrained
from tonewatch.model.ngram_signals import (
    EMOTION_NGRAM_FILE,
    READER_NAME,
    NgramSignalReader,
    NgramSpec,
    document_frequency_idf,
    hashed_counts,
    tfidf_row,
)
from tonewatch.model.types import WEIGHTS_NAME, read_model_config, resolve_model_dir
from tonewatch.training.calibration import fit_signal_calibration
from tonewatch.training.signals_eval import signal_figures, signal_target_matrix

logger = logging.getLogger(__name__)

FIT_SUMMARY_NAME = "signal_reader.json"
"""What the fit recorded, in the output directory."""
COPIED_FILES = (
    "training_config.json",
    "training_summary.json",
    "tokenizer.json",
    "tokenizer_config.json",
    EMOTION_NGRAM_FILE,
    "emotion_reader.json",
)
"""Files of the source model carried over as they are (the run that trained its network, and the emotion expert
of a model that has one: its config keeps naming it)."""
SIGNAL_SET = "callcenter_train"


@dataclasses.dataclass(frozen=True)
class ReaderFit:
    """How the reader is fitted."""

    c: float = 4.0
    """Inverse L2 strength of each signal's logistic regression."""
    spec: NgramSpec = dataclasses.field(default_factory=NgramSpec)
    seed: int | None = None
    """Split seed (None: the source model's training seed)."""
    validation_fraction: float | None = None
    """Held-out share of the conversations (None: the source model's)."""
    version: str | None = None
    """The new model's version in ``config.json`` (None: the source model's)."""
    balanced: bool = True
    """Weight each signal's two classes equally (a rare signal's positives count as much as its negatives)."""


def feature_matrix(counts: list[tuple[np.ndarray, np.ndarray]], idf: np.ndarray, spec: NgramSpec):
    """The unit-norm TF-IDF rows of texts given as their :func:`hashed_counts`, as a scipy CSR matrix
    ``[texts, buckets]``."""
    from scipy import sparse

    indptr = np.cumsum([0, *(len(buckets) for buckets, _ in counts)])
    indices = np.concatenate([buckets for buckets, _ in counts]) if counts else np.zeros(0, dtype=np.int64)
    values = np.concatenate([tfidf_row(b, c, idf) for b, c in counts]) if counts else np.zeros(0)
    return sparse.csr_matrix((values, indices, indptr), shape=(len(counts), spec.buckets))


def _platt(logits: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """``(a, b)`` with ``sigmoid(a * logit + b)`` calibrated on ``truth`` (identity when it has one class)."""
    from sklearn.linear_model import LogisticRegression

    if truth.all() or not truth.any():
        return 1.0, 0.0
    model = LogisticRegression(C=1e4, max_iter=1000).fit(logits.reshape(-1, 1), truth)
    a = float(model.coef_[0, 0])
    return (a, float(model.intercept_[0])) if a > 0 else (1.0, 0.0)


def fit_reader(
    train: list[Record], held_out: list[Record], fit: ReaderFit, normalize: str
) -> tuple[NgramSignalReader, dict]:
    """The reader fitted on ``train`` and Platt-scaled on ``held_out`` (steps 2-3), and per signal what it saw."""
    from sklearn.linear_model import LogisticRegression

    spec = fit.spec
    train_counts = [hashed_counts(record.text, spec, normalize) for record in train]
    idf = document_frequency_idf([buckets for buckets, _ in train_counts], spec.buckets)
    x_train = feature_matrix(train_counts, idf, spec)
    x_held = feature_matrix([hashed_counts(record.text, spec, normalize) for record in held_out], idf, spec)
    y_train, y_held = signal_target_matrix(train, SIGNALS), signal_target_matrix(held_out, SIGNALS)
    weight = np.zeros((spec.buckets, len(SIGNALS)))
    bias = np.zeros(len(SIGNALS))
    details: dict = {}
    for column, name in enumerate(SIGNALS):
        known = y_train[:, column] >= 0
        truth = y_train[known, column] > 0.5
        details[name] = {"train_turns": int(known.sum()), "train_positives": int(truth.sum())}
        if not truth.any() or truth.all():
            logger.warning("%s: no positive (or no negative) training turn; the signal stays at probability 0.5", name)
            continue
        model = LogisticRegression(C=fit.c, class_weight="balanced" if fit.balanced else None, max_iter=5000)
        model.fit(x_train[known], truth)
        coef, intercept = model.coef_[0], float(model.intercept_[0])
        held = y_held[:, column] >= 0
        held_truth = y_held[held, column] > 0.5
        a, b = _platt(x_held[held] @ coef + intercept, held_truth)
        weight[:, column], bias[column] = a * coef, a * intercept + b
        details[name].update(held_out_turns=int(held.sum()), held_out_positives=int(held_truth.sum()), platt=[a, b])
    return NgramSignalReader(weight, bias, idf, spec, normalize), details


def source_and_output(model_dir: str | Path | None, output_dir: str | Path) -> tuple[Path, Path]:
    """The model directory a fit reads and the new directory it writes (refused if they are the same)."""
    source = resolve_model_dir(model_dir)
    output = Path(output_dir)
    if output.resolve() == source.resolve():
        raise ValueError("--output must be a new directory, not the source model's")
    return source, output


def fit_signals(
    model_dir: str | Path | None,
    output_dir: str | Path,
    fit: ReaderFit | None = None,
    signal_labels_dir: str | Path | None = None,
) -> dict:
    """Write ``model_dir`` with a fitted char n-gram signal reader to ``output_dir``; returns the fit summary."""
    from safetensors.torch import load_file

    fit = fit or ReaderFit()
    started = time.perf_counter()
    source, output = source_and_output(model_dir, output_dir)
    base = read_model_config(source)
    recipe_path = source / "training_config.json"
    recipe = json.loads(recipe_path.read_text()) if recipe_path.is_file() else {}
    seed = fit.seed if fit.seed is not None else int(recipe.get("seed", 0))
    fraction = fit.validation_fraction if fit.validation_fraction is not None else recipe.get("validation_fraction")
    if fraction is None:
        raise ValueError(f"{source} records no validation_fraction: pass one")
    records = signal_set_records(SIGNAL_SET, signal_labels_dir)
    if not records:
        raise FileNotFoundError(f"no signal labels for {SIGNAL_SET} (data/signals/{SIGNAL_SET}.jsonl)")
    train, held_out = split_by_conversation(records, float(fraction), seed)
    logger.info("fitting the signal reader on %d turns; %d held out", len(train), len(held_out))
    normalize = base.limits.normalize
    reader, details = fit_reader(train, held_out, fit, normalize)

    output.mkdir(parents=True, exist_ok=True)
    state = {
        key: value for key, value in load_file(str(source / WEIGHTS_NAME)).items() if not key.startswith("signal_head.")
    }
    config = dataclasses.replace(base, signals=SIGNALS, signal_reader=READER_NAME, version=fit.version or base.version)
    reader.save(output)
    stored = NgramSignalReader.load(output)  # the thresholds are fitted on what inference will read (float16)
    held_logits = stored.logits([record.text for record in held_out])
    import torch

    config.calibration = dataclasses.replace(base.calibration)
    config.calibration.signal_temperature, config.calibration.signal_thresholds = fit_signal_calibration(
        torch.from_numpy(held_logits), held_out, SIGNALS
    )
    save_pretrained(output, state, config)
    for name in COPIED_FILES:
        if (source / name).is_file():
            shutil.copyfile(source / name, output / name)
    probabilities = 1.0 / (1.0 + np.exp(-held_logits / config.calibration.signal_temperature))
    summary = {
        "source_model": str(source),
        "source_version": base.version,
        "signal_set": SIGNAL_SET,
        "seed": seed,
        "validation_fraction": float(fraction),
        "turns": {"train": len(train), "held_out": len(held_out)},
        "c": fit.c,
        "ngrams": dataclasses.asdict(fit.spec),
        "normalize": normalize,
        "signals": details,
        "held_out_figures": signal_figures(held_out, probabilities, SIGNALS, config.calibration),
        "languages": list(LANGUAGES),
        "minutes": round((time.perf_counter() - started) / 60, 2),
    }
    (output / FIT_SUMMARY_NAME).write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
    logger.info("signal reader written to %s (%.1f min)", output, summary["minutes"])
    return summary
