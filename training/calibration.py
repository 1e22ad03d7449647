"""Temperature scaling per head and escalation thresholds, fitted on validation data (never on callcenter_dev).

Turn signals (a model with a signal head): one temperature for every signal logit (LBFGS on the BCE of the
labelled (turn, signal) pairs), then per signal the threshold with the best F1 on :data:`THRESHOLD_GRID` (ties:
nearest 0.5), and per language the same where the language has at least :data:`MIN_SIGNAL_POSITIVES_PER_LANGUAGE`
positives of that signal (else the signal's threshold applies). A signal without a single positive among the
validation turns gets no threshold: the model's 0.5 applies.
"""

from __future__ import annotations

import numpy as np
import torch

from tonewatch.data.records import Record
from tonewatch.labels import LABEL2ID
from tonewatch.model.classifier import Classifier
from tonewatch.model.types import SIGNAL_THRESHOLD_DEFAULT, Calibration, TurnInput
from tonewatch.training.progress import progress_bar
from tonewatch.training.signals_eval import signal_target_matrix

THRESHOLD_GRID = np.round(np.arange(0.20, 0.81, 0.05), 2)
MIN_POSITIVES_PER_LANGUAGE = 15
"""Below this many escalation positives a language uses the global threshold (too few to tune on)."""
MIN_SIGNAL_POSITIVES_PER_LANGUAGE = 10
"""Below this many positives of a signal in a language, the language uses the signal's threshold."""


def fit_temperature(logits: torch.Tensor, loss_fn) -> float:
    """The temperature T > 0 minimising ``loss_fn(logits / T)`` (LBFGS on log T)."""
    log_temperature = torch.zeros(1, requires_grad=True)
    optimizer = torch.optim.LBFGS([log_temperature], lr=0.1, max_iter=100)

    def closure():
        optimizer.zero_grad()
        loss = loss_fn(logits / log_temperature.exp())
        loss.backward()
        return loss

    optimizer.step(closure)
    temperature = float(log_temperature.detach().exp())
    return temperature if np.isfinite(temperature) and 0.05 < temperature < 20 else 1.0


def best_threshold(scores: np.ndarray, labels: np.ndarray) -> float:
    """The grid threshold with the best F1 (ties: the one closest to 0.5)."""
    best, best_f1 = 0.5, -1.0
    for threshold in sorted(THRESHOLD_GRID, key=lambda value: abs(value - 0.5)):
        predicted = scores >= threshold
        true_positive = float((predicted & labels).sum())
        f1 = 2 * true_positive / max(float(predicted.sum() + labels.sum()), 1.0)
        if f1 > best_f1 + 1e-9:
            best, best_f1 = float(threshold), f1
    return best


BIAS_GRID = np.round(np.arange(-1.0, 1.51, 0.1), 2)
BIAS_BOOTSTRAPS = 15
"""Bootstrap resamples whose fitted shifts are averaged: one fit on a few hundred turns swings by 0.2-0.6."""


def _fit_bias_once(log_probabilities: np.ndarray, labels: np.ndarray, rounds: int) -> np.ndarray:
    """Coordinate ascent of macro-F1 on :data:`BIAS_GRID` (ties keep the smaller shift)."""
    from sklearn.metrics import f1_score

    bias = np.zeros(log_probabilities.shape[1])

    def score(candidate: np.ndarray) -> float:
        predicted = (log_probabilities + candidate).argmax(-1)
        return f1_score(labels, predicted, labels=range(len(candidate)), average="macro", zero_division=0)

    best = score(bias)
    for _ in range(rounds):
        for label in range(len(bias)):
            for value in sorted(BIAS_GRID, key=abs):
                candidate = bias.copy()
                candidate[label] = value
                result = score(candidate)
                if result > best + 1e-9:
                    best, bias = result, candidate
    return bias


def fit_emotion_bias(
    log_probabilities: np.ndarray,
    labels: np.ndarray,
    rounds: int = 3,
    bootstraps: int = BIAS_BOOTSTRAPS,
    seed: int = 0,
) -> list[float]:
    """Per-label log-prior shifts maximising macro-F1, bagged: the mean of the fits on ``bootstraps``
    resamples of the turns (``0``: one fit on all of them). Bagging lowers the fit's variance; on held-out
    callcenter_train conversations it scored at least as well as the single fit (docs/design.md)."""
    if bootstraps <= 0:
        return [float(value) for value in _fit_bias_once(log_probabilities, labels, rounds)]
    rng = np.random.default_rng(seed)
    fits = [
        _fit_bias_once(log_probabilities[rows], labels[rows], rounds)
        for rows in (rng.integers(0, len(labels), len(labels)) for _ in range(bootstraps))
    ]
    return [round(float(value), 2) for value in np.mean(fits, axis=0)]


def fit_signal_calibration(
    signal_logits: torch.Tensor, records: list[Record], signals: tuple[str, ...]
) -> tuple[float, dict[str, dict[str, float]]]:
    """``(signal_temperature, signal_thresholds)`` from the raw signal logits of ``records`` (module docstring)."""
    targets = signal_target_matrix(records, signals)
    known = targets >= 0
    if not known.any():
        return 1.0, {}
    known_tensor = torch.from_numpy(known)
    target = torch.from_numpy(targets[known]).float()
    temperature = fit_temperature(
        signal_logits.float()[known_tensor],
        lambda scaled: torch.nn.functional.binary_cross_entropy_with_logits(scaled, target),
    )
    scores = torch.sigmoid(signal_logits.float() / temperature).numpy()
    langs = np.array([record.lang for record in records])
    thresholds: dict[str, dict[str, float]] = {}
    for column, name in enumerate(signals):
        labelled = known[:, column]
        positive = targets[:, column] > 0.5
        if not positive.any():
            continue
        fitted = {SIGNAL_THRESHOLD_DEFAULT: best_threshold(scores[labelled, column], positive[labelled])}
        for lang in sorted({str(lang) for lang in langs[labelled]}):
            in_lang = labelled & (langs == lang)
            if positive[in_lang].sum() >= MIN_SIGNAL_POSITIVES_PER_LANGUAGE:
                fitted[lang] = best_threshold(scores[in_lang, column], positive[in_lang])
        thresholds[name] = fitted
    return temperature, thresholds


def fit_emotion_calibration(emotion_logits: torch.Tensor, labels: torch.Tensor) -> tuple[float, list[float]]:
    """The emotion temperature (cross-entropy) and the label shifts (:func:`fit_emotion_bias`) of raw emotion logits
    ``[turns, labels]`` against their exact ``labels``."""
    temperature = fit_temperature(emotion_logits, lambda scaled: torch.nn.functional.cross_entropy(scaled, labels))
    log_probabilities = torch.log_softmax(emotion_logits / temperature, dim=-1).numpy()
    return temperature, fit_emotion_bias(log_probabilities, labels.numpy())


def fit_calibration(classifier: Classifier, records: list[Record]) -> Calibration:
    """Temperatures and thresholds from ``records`` (labelled validation turns with context; agent turns, read
    for their signals only, may be among them)."""
    if not records:
        return Calibration()
    inputs = [
        TurnInput(r.text, tuple((t.speaker, t.text) for t in r.context), r.lang, speaker=r.speaker) for r in records
    ]
    with_signals = bool(classifier.signal_names)
    with progress_bar(len(inputs), "calibrating") as bar:
        outputs = classifier.raw_logits(inputs, on_batch=bar.update, with_signals=with_signals)
    emotion_logits, escalation_logits = outputs[0], outputs[1]
    exact = torch.tensor([LABEL2ID[r.emotion] if r.emotion else -1 for r in records])
    known = exact >= 0
    emotion_temperature = 1.0
    emotion_bias = [0.0] * emotion_logits.shape[1]
    if known.any():
        emotion_temperature, emotion_bias = fit_emotion_calibration(emotion_logits[known], exact[known])
    escalate = torch.tensor([-1.0 if r.escalate is None else float(r.escalate) for r in records])
    has_escalation = escalate >= 0
    escalation_temperature = 1.0
    thresholds: dict[str, float] = {}
    global_threshold = 0.5
    if has_escalation.any():
        target = escalate[has_escalation]
        escalation_temperature = fit_temperature(
            escalation_logits[has_escalation],
            lambda scaled: torch.nn.functional.binary_cross_entropy_with_logits(scaled, target),
        )
        scores = torch.sigmoid(escalation_logits / escalation_temperature).numpy()
        labels = escalate.numpy() > 0.5
        mask = has_escalation.numpy()
        global_threshold = best_threshold(scores[mask], labels[mask])
        for lang in sorted({r.lang for r in records}):
            in_lang = mask & np.array([r.lang == lang for r in records])
            if labels[in_lang].sum() >= MIN_POSITIVES_PER_LANGUAGE:
                thresholds[lang] = best_threshold(scores[in_lang], labels[in_lang])
    calibration = Calibration(
        emotion_temperature=emotion_temperature,
        emotion_bias=emotion_bias,
        escalation_temperature=escalation_temperature,
        escalation_threshold=global_threshold,
        escalation_thresholds=thresholds,
    )
    if with_signals:
        calibration.signal_temperature, calibration.signal_thresholds = fit_signal_calibration(
            outputs[2], records, classifier.signal_names
        )
    return calibration
