"""Turn-signal figures of a model with a signal head: precision, recall, F1 and support per language and signal.

Scored on the held-out sets with signal labels (``data/signals``: ``callcenter_dev``, ``callcenter_heldout``,
``probes``, each when its overlay exists; none of them is trained on): every turn of an annotated conversation,
customer turns for the customer signals and agent turns (read as agent turns, with their context) for the agent
signals. A turn has the signal when its calibrated probability reaches the model's threshold for the signal and
the turn's language. ``all`` pools the sets; the validation suite reads ``signals/{lang}/{signal}/f1`` from it.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import numpy as np

from tonewatch.data.records import Record
from tonewatch.data.signal_labels import HELD_OUT_SIGNAL_SETS, signal_set_records
from tonewatch.labels import LANGUAGES, SIGNAL_SPEAKER
from tonewatch.model.types import Calibration, TurnInput
from tonewatch.training.progress import progress_bar

if TYPE_CHECKING:  # the report's Markdown (signal_lines) is written without loading torch
    from tonewatch.model.classifier import Classifier


def signal_target_matrix(records: list[Record], signals: tuple[str, ...]) -> np.ndarray:
    """``[records, signals]``: each record's label of each signal (1.0 / 0.0), -1.0 where it has none (unknown, or
    the other speaker's signal)."""
    targets = np.full((len(records), len(signals)), -1.0)
    for row, record in enumerate(records):
        for column, name in enumerate(signals):
            if record.signals and name in record.signals:
                targets[row, column] = float(record.signals[name])
    return targets


def signal_probabilities(classifier: Classifier, records: list[Record], description: str) -> np.ndarray:
    """``[records, signals]`` calibrated probabilities (columns: ``classifier.signal_names``), each turn read as
    its speaker's (by the model's n-gram signal reader alone where it has one: the same logits
    :meth:`Classifier.classify` and :meth:`Classifier.agent_signals` give, without running the encoder)."""
    import torch

    reader = getattr(classifier, "signal_reader", None)
    if reader is not None:  # an n-gram reader reads the text alone: no encoder pass over the turns
        signal_logits = torch.from_numpy(reader.logits([r.text for r in records]))
    else:
        inputs = [
            TurnInput(r.text, tuple((t.speaker, t.text) for t in r.context), r.lang, speaker=r.speaker) for r in records
        ]
        with progress_bar(len(inputs), description) as bar:
            _, _, signal_logits = classifier.raw_logits(inputs, on_batch=bar.update, with_signals=True)
    temperature = classifier.config.calibration.signal_temperature
    return torch.sigmoid(signal_logits.float() / temperature).numpy()


def _figures(truth: np.ndarray, decided: np.ndarray) -> dict:
    """Precision, recall and F1 of one signal's decisions (None where undefined: nothing predicted or no
    positive), its support (positives) and the turns scored."""
    true_positive = int((truth & decided).sum())
    predicted, support = int(decided.sum()), int(truth.sum())
    precision = true_positive / predicted if predicted else None
    recall = true_positive / support if support else None
    f1 = 2 * true_positive / (predicted + support) if predicted + support else None
    return {"precision": precision, "recall": recall, "f1": f1, "support": support, "n": len(truth)}


def signal_figures(
    records: list[Record], probabilities: np.ndarray, signals: tuple[str, ...], calibration: Calibration
) -> dict:
    """``{lang: {signal: figures}}`` over the turns of ``records`` labelled for each signal."""
    targets = signal_target_matrix(records, signals)
    langs = np.array([record.lang for record in records])
    figures: dict = {}
    for lang in [lang for lang in LANGUAGES if (langs == lang).any()]:
        figures[lang] = {}
        for column, name in enumerate(signals):
            rows = (langs == lang) & (targets[:, column] >= 0)
            if not rows.any():
                continue
            decided = probabilities[rows, column] >= calibration.signal_threshold(name, lang)
            figures[lang][name] = _figures(targets[rows, column] > 0.5, decided)
    return figures


def signals_report(classifier: Classifier, signal_labels_dir: str | None = None) -> dict | None:
    """The signal section of the evaluation report, or None for a model without signals. ``sets`` (the held-out
    sets whose overlays exist; empty when none does), ``all`` (pooled) and the thresholds the decisions used."""
    signals = classifier.signal_names
    if not signals:
        return None
    calibration = classifier.config.calibration
    report: dict = {
        "sets": {},
        "all": {},
        "temperature": calibration.signal_temperature,
        "thresholds": calibration.signal_thresholds,
        "speakers": {name: SIGNAL_SPEAKER[name] for name in signals},
    }
    pooled_records: list[Record] = []
    pooled: list[np.ndarray] = []
    for name in HELD_OUT_SIGNAL_SETS:
        records = signal_set_records(name, signal_labels_dir)
        if not records:
            continue
        probabilities = signal_probabilities(classifier, records, f"{name} (signals)")
        report["sets"][name] = signal_figures(records, probabilities, signals, calibration)
        pooled_records += records
        pooled.append(probabilities)
    if pooled_records:
        report["all"] = signal_figures(pooled_records, np.concatenate(pooled), signals, calibration)
    return report


def signal_lines(report: dict | None) -> list[str]:
    """The Markdown section of the signal figures (nothing for a model without signals)."""
    if report is None:
        return []
    lines = ["", "## Turn signals", ""]
    if not report.get("sets"):
        return [*lines, "No held-out set has signal labels yet (`data/signals/`): no figures.", ""]
    lines += [
        "Held-out turns with signal labels (" + ", ".join(f"`{name}`" for name in report["sets"]) + ", pooled; "
        "never trained on): customer signals on customer turns, agent signals on agent turns, decided at the "
        "model's calibrated threshold per signal and language.",
        "",
        "| signal | speaker | lang | precision | recall | F1 | support | turns |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for lang, by_signal in report["all"].items():
        for name, row in by_signal.items():
            lines.append(
                f"| {name} | {report['speakers'].get(name, '-')} | {lang} | {_fmt(row['precision'])} | "
                f"{_fmt(row['recall'])} | {_fmt(row['f1'])} | {row['support']} | {row['n']} |"
            )
    lines += [
        "",
        f"Signal temperature {_fmt(report.get('temperature'))}; thresholds (per signal, `default` for a language "
        f"without its own; 0.5 where none was fitted): `{json.dumps(report.get('thresholds') or {})}`.",
    ]
    return [*lines, ""]


def _fmt(value) -> str:
    return "-" if value is None else f"{value:.3f}"
