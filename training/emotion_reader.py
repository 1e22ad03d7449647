"""Fit the emotion n-gram expert onto a trained model (``tonewatch fit-emotion``).

A char TF-IDF + logistic regression over the turn text alone, trained on the same records, was level with the
fine-tuned encoder on the validation suite, and the two err differently: on default version 7's suite, their
equal-weight product (log-linear pooling) raised emotion macro-F1 by 0.04-0.07 on every split (callcenter_dev,
callcenter_heldout, the real-text held-out sets; docs/experiments.md, 2026-12-07 late night). So a model may carry
that linear model beside its network (:data:`tonewatch.model.ngram_signals.EMOTION_NGRAM_FILE`, the same hashed
n-gram features as the signal reader, numpy only at inference) and add its logits to the network's.

``fit_emotion_reader(MODEL, OUTPUT)`` writes a copy of ``MODEL`` (encoder, heads, signal reader, escalation and
signal calibration unchanged) that also has the expert:

1. the model's training records are rebuilt from its ``training_config.json`` (``build_training_data``: the same
   sources, caps and seed, so the same train / validation split; the annotations' held-out fifth never enters);
2. a multinomial logistic regression (``C``, classes balanced) on the unit-norm TF-IDF of the hashed character
   n-grams of every training record with an emotion label, the turn text alone;
3. its logits are added to the network's raw emotion logits times the network's emotion temperature, so that after
   the network's own calibration the two experts weigh the same (the product of their probabilities);
4. the emotion temperature and label shifts are fitted again on the combined logits of the run's validation
   records that neither expert trained on: the held-out callcenter_train conversations and the annotations' validation
   tenth (real text, so that the combined probabilities are calibrated there too).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import time
from pathlib import Path

import numpy as np

from tonewatch.labels import EMOTION_LABELS, LABEL2ID
from tonewatch.model.ngram_signals import (
    EMOTION_NGRAM_FILE,
    READER_NAME,
    NgramSignalReader,
    NgramSpec,
    document_frequency_idf,
    hashed_counts,
)
from tonewatch.model.types import read_model_config

logger = logging.getLogger(__name__)

FIT_SUMMARY_NAME = "emotion_reader.json"
"""What the fit recorded, in the output directory."""
SKIPPED_FILES = (
    "config.json",
    "README.md",
    "card.toml",
    "report.json",
    "report.md",
    "confusion.png",
    "reliability.png",
)
"""Files of the source model not carried over: the config is rewritten; the report, the card and the hand-written
card facts describe the source model (``tonewatch evaluate`` writes the new model's)."""
CALIBRATION_POOLS = ("callcenter_train", "annotations")
"""The validation pools whose customer turns calibrate the combined logits."""


@dataclasses.dataclass(frozen=True)
class EmotionReaderFit:
    """How the expert is fitted."""

    c: float = 4.0
    """Inverse L2 strength of the logistic regression."""
    spec: NgramSpec = dataclasses.field(default_factory=NgramSpec)
    version: str | None = None
    """The new model's version in ``config.json`` (None: the source model's)."""
    max_iter: int = 300


def fit_linear_expert(texts: list[str], labels: list[int], fit: EmotionReaderFit, normalize: str) -> NgramSignalReader:
    """The expert (steps 2), as a reader with one output per emotion label (logits of the regression)."""
    from sklearn.linear_model import LogisticRegression

    from tonewatch.training.signal_reader import feature_matrix

    spec = fit.spec
    counts = [hashed_counts(text, spec, normalize) for text in texts]
    idf = document_frequency_idf([buckets for buckets, _ in counts], spec.buckets)
    features = feature_matrix(counts, idf, spec)
    target = np.asarray(labels)
    missing = sorted(set(range(len(EMOTION_LABELS))) - set(target.tolist()))
    if missing:
        raise ValueError(f"no training record of emotion {[EMOTION_LABELS[i] for i in missing]}: cannot fit the expert")
    model = LogisticRegression(C=fit.c, class_weight="balanced", max_iter=fit.max_iter)
    model.fit(features, target)
    weight = np.zeros((spec.buckets, len(EMOTION_LABELS)))
    bias = np.zeros(len(EMOTION_LABELS))
    weight[:, model.classes_] = model.coef_.T
    bias[model.classes_] = model.intercept_
    return NgramSignalReader(weight, bias, idf, spec, normalize)


def fit_emotion_reader(
    model_dir: str | Path | None,
    output_dir: str | Path,
    fit: EmotionReaderFit | None = None,
    data_root: str | Path | None = None,
) -> dict:
    """Write ``model_dir`` with a fitted emotion n-gram expert to ``output_dir``; returns the fit summary."""
    import torch
    from safetensors.torch import load_file

    from tonewatch.model.classifier import Classifier
    from tonewatch.model.directory import save_pretrained
    from tonewatch.model.types import WEIGHTS_NAME, TurnInput
    from tonewatch.training.calibration import fit_emotion_calibration
    from tonewatch.training.config import TrainConfig
    from tonewatch.training.dataset import build_training_data
    from tonewatch.training.signal_reader import source_and_output

    fit = fit or EmotionReaderFit()
    started = time.perf_counter()
    source, output = source_and_output(model_dir, output_dir)
    base = read_model_config(source)
    if base.emotion_reader != "none":
        raise ValueError(f"{source} already has an emotion reader ({base.emotion_reader})")
    recipe_path = source / "training_config.json"
    if not recipe_path.is_file():
        raise FileNotFoundError(f"{recipe_path} is missing: the fit rebuilds the model's training records from it")
    recipe = TrainConfig.from_file(recipe_path)
    recipe.data_root = str(data_root) if data_root is not None else None
    data = build_training_data(recipe)
    train = [r for records in data.train.values() for r in records if r.emotion is not None and r.speaker == "customer"]
    held = [
        r
        for pool in CALIBRATION_POOLS
        for r in data.validation.get(pool, [])
        if r.emotion is not None and r.speaker == "customer"
    ]
    logger.info("fitting the emotion expert on %d training records; calibrating on %d held out", len(train), len(held))
    normalize = base.limits.normalize
    reader = fit_linear_expert([r.text for r in train], [LABEL2ID[r.emotion] for r in train], fit, normalize)

    output.mkdir(parents=True, exist_ok=True)
    for path in sorted(source.iterdir()):
        if path.is_file() and path.name not in SKIPPED_FILES:
            shutil.copyfile(path, output / path.name)
    reader.save(output, EMOTION_NGRAM_FILE)
    config = dataclasses.replace(
        base,
        emotion_reader=READER_NAME,
        emotion_reader_weight=round(float(base.calibration.emotion_temperature), 4),
        version=fit.version or base.version,
        calibration=dataclasses.replace(base.calibration),
    )
    state = load_file(str(source / WEIGHTS_NAME))
    save_pretrained(output, state, config)

    # Step 4: calibrate the combined logits (as inference computes them, from the stored float16 expert).
    inputs = [TurnInput(r.text, tuple((t.speaker, t.text) for t in r.context), r.lang) for r in held]
    truth = torch.tensor([LABEL2ID[r.emotion] for r in held])
    combined = Classifier.from_pretrained(output, backend="torch").raw_logits(inputs)[0]
    alone = Classifier.from_pretrained(source, backend="torch").raw_logits(inputs)[0]
    temperature, config.calibration.emotion_bias = fit_emotion_calibration(combined, truth)
    config.calibration.emotion_temperature = temperature
    save_pretrained(output, state, config)

    def macro_f1(logits: torch.Tensor, calibration) -> float:
        from sklearn.metrics import f1_score

        tempered = logits.numpy() / calibration.emotion_temperature + np.asarray(calibration.emotion_bias)
        return round(
            float(f1_score(truth.numpy(), tempered.argmax(1), labels=range(len(EMOTION_LABELS)), average="macro")), 4
        )

    summary = {
        "source_model": str(source),
        "source_version": base.version,
        "c": fit.c,
        "ngrams": dataclasses.asdict(fit.spec),
        "normalize": normalize,
        "weight": config.emotion_reader_weight,
        "train_records": len(train),
        "train_records_per_label": {label: sum(r.emotion == label for r in train) for label in EMOTION_LABELS},
        "calibration_records": len(held),
        "calibration": {"emotion_temperature": temperature, "emotion_bias": config.calibration.emotion_bias},
        "calibration_set_macro_f1": {
            "network": macro_f1(alone, base.calibration),
            "network_and_ngrams": macro_f1(combined, config.calibration),
        },
        "minutes": round((time.perf_counter() - started) / 60, 2),
    }
    (output / FIT_SUMMARY_NAME).write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
    logger.info(
        "emotion expert written to %s (%.1f min): %s", output, summary["minutes"], summary["calibration_set_macro_f1"]
    )
    return summary
