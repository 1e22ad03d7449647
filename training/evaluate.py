"""``tonewatch evaluate MODEL_DIR``: the evaluation report (JSON, Markdown, PNG plots).

What is measured, and on what:

- ``callcenter_dev`` (in-domain conversations, never trained on): emotion
  macro-F1 and per-class precision/recall per language, confusion matrices,
  calibration (ECE and a reliability diagram), escalation precision/recall/F1
  and PR-AUC, and how early or late the first escalation alert fires against
  the gold first escalation turn of each conversation.
- Public held-out splits (the same split rules as training, so nothing here
  was trained on) and the eval-tier sources: per source, exact-label metrics
  where the source has exact labels, the share of predictions inside the
  allowed set where it only has partial evidence, and abusive-vs-rest
  macro-F1 where it separates abusive from non-abusive text (COLD dev).
- A model with turn signals: precision, recall and F1 of each signal per
  language on the held-out sets with signal labels
  (:mod:`tonewatch.training.signals_eval`).
- A baseline trained in the same run on the same training records:
  character n-gram TF-IDF + logistic regression (scikit-learn), one model for
  emotion (turn text) and one for escalation (turn + preceding turns), so
  every in-domain figure has a comparison.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import random
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tonewatch.data.records import Record, Turn
from tonewatch.data.sources import SOURCES, load_source
from tonewatch.labels import EMOTION_LABELS, LABEL2ID
from tonewatch.model.classifier import Classifier
from tonewatch.model.types import Prediction, TurnInput, conversation_turn_inputs
from tonewatch.tracking.policy import load_policy
from tonewatch.training import metrics
from tonewatch.training.config import TrainConfig
from tonewatch.training.dataset import EVALUATION_SOURCE, build_training_data, is_labelled, split_source
from tonewatch.training.escalation_eval import escalation_modes_report, suite_figures
from tonewatch.training.functional import FUNCTIONAL_DIR, functional_report
from tonewatch.training.probes import PROBES_FILE, probe_report
from tonewatch.training.progress import progress_bar
from tonewatch.training.report import get_path
from tonewatch.training.signals_eval import signals_report

logger = logging.getLogger(__name__)

ABUSIVE = LABEL2ID["abusive"]


@dataclass
class EvalConfig:
    """What ``tonewatch evaluate`` measures."""

    data_root: str | None = field(
        default=None,
        metadata={"help": "Folder of the third-party datasets (cold/, cedr/, ...); default $TONEWATCH_DATA."},
    )
    output_dir: str | None = field(default=None, metadata={"help": "Report folder (default: MODEL_DIR)."})
    max_records_per_source: int = field(
        default=2000, metadata={"help": "Cap per public source (seeded subset); COLD dev is always read whole."}
    )
    baseline: bool = field(default=True, metadata={"help": "Train and report the TF-IDF baseline."})
    public_sources: bool = field(default=True, metadata={"help": "Also evaluate the public held-out splits."})
    seed: int | None = field(
        default=None,
        metadata={
            "help": "Seed of the public subsets and the baseline; unset: the run's seed (training_config.json), "
            "so that the report train writes and a later evaluate agree."
        },
    )
    onnx: bool = field(
        default=True, metadata={"help": "Also report the ONNX Runtime path's metrics and its agreement with PyTorch."}
    )
    probes: bool = field(
        default=True,
        metadata={"help": "Also report the escalation-trigger probes (data/probes, evaluation only)."},
    )
    functional: bool = field(
        default=True,
        metadata={"help": "Also report the functional test suite (data/functional, evaluation only)."},
    )
    signals: bool = field(
        default=True,
        metadata={
            "help": "For a model with turn signals, also report each signal's figures on the held-out sets with "
            "signal labels (data/signals)."
        },
    )

    escalation_modes: bool = field(
        default=True,
        metadata={
            "help": "Also compare the ways of deciding escalation (the learnt head, the escalation policy, both) "
            "on callcenter_dev, callcenter_heldout and the probes."
        },
    )
    policy: str | None = field(
        default=None,
        metadata={"help": "Escalation policy TOML for that comparison (default: the label guide's rules)."},
    )

    def __post_init__(self) -> None:
        if self.max_records_per_source < 1:
            raise ValueError("max_records_per_source must be >= 1")


@dataclass
class Predictions:
    """Per-record predicted probabilities of one model on one record list."""

    emotion: np.ndarray  # [n, 4]
    escalation: np.ndarray  # [n]
    escalate: np.ndarray  # [n] bool decisions


def turn_input(record: Record) -> TurnInput:
    return TurnInput(record.text, tuple((turn.speaker, turn.text) for turn in record.context), record.lang)


class RememberingClassifier:
    """``classifier`` whose :meth:`classify` remembers each turn's prediction (keyed by the whole
    :class:`TurnInput`), so the report's later sections (the probes, the ways of deciding escalation) do not
    classify again the customer turns of callcenter_dev and callcenter_heldout that the sets already did.
    Everything else is the classifier's own."""

    def __init__(self, classifier: Classifier):
        self.classifier = classifier
        self._seen: dict[TurnInput, object] = {}

    def __getattr__(self, name: str):
        return getattr(self.classifier, name)

    def classify(self, items, batch_size: int = 64, on_batch=None) -> list:
        turns = [item if isinstance(item, TurnInput) else TurnInput(item) for item in items]
        missing = list(dict.fromkeys(turn for turn in turns if turn not in self._seen))
        if missing:
            predictions = self.classifier.classify(missing, batch_size, on_batch=on_batch)
            self._seen.update(zip(missing, predictions, strict=True))
        if on_batch is not None and len(turns) > len(missing):
            on_batch(len(turns) - len(missing))
        return [self._seen[turn] for turn in turns]

    def classify_conversation(self, conversation: dict, batch_size: int = 64) -> list:
        turns = conversation_turn_inputs(conversation)
        return self.classify(turns, batch_size) if turns else []


def predict(classifier: Classifier, records: list[Record], description: str = "predicting") -> Predictions:
    with progress_bar(len(records), description) as bar:
        results = classifier.classify([turn_input(record) for record in records], on_batch=bar.update)
    return Predictions(
        emotion=np.array([[result.scores[label] for label in EMOTION_LABELS] for result in results]).reshape(-1, 4),
        escalation=np.array([result.escalate_score for result in results]),
        escalate=np.array([result.escalate for result in results], dtype=bool),
    )


# ----------------------------------------------------------------------------- metrics of one record set


def emotion_report(records: list[Record], predictions: Predictions) -> dict:
    """Exact-label metrics (macro-F1, per class, confusion, ECE) and partial-label consistency."""
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    report: dict = {"n": len(records)}
    predicted = predictions.emotion.argmax(-1) if len(records) else np.array([], dtype=int)
    exact = np.array([LABEL2ID[r.emotion] if r.emotion else -1 for r in records], dtype=int)
    known = exact >= 0
    if known.any():
        y_true, y_pred = exact[known], predicted[known]
        precision, recall, f1, support = precision_recall_fscore_support(
            y_true, y_pred, labels=range(len(EMOTION_LABELS)), zero_division=0
        )
        confidence = predictions.emotion[known].max(-1)
        report["exact"] = {
            "n": int(known.sum()),
            "macro_f1": metrics.macro_f1(y_true, y_pred, len(EMOTION_LABELS)),
            "accuracy": float((y_true == y_pred).mean()),
            "per_class": {
                label: {
                    "precision": float(precision[i]),
                    "recall": float(recall[i]),
                    "f1": float(f1[i]),
                    "support": int(support[i]),
                }
                for i, label in enumerate(EMOTION_LABELS)
            },
            "confusion": confusion_matrix(y_true, y_pred, labels=range(len(EMOTION_LABELS))).tolist(),
            "ece": metrics.expected_calibration_error(confidence, y_true == y_pred),
            "reliability": metrics.reliability_bins(confidence, y_true == y_pred),
        }
    partial = np.array([bool(r.emotion_among) for r in records], dtype=bool)
    if partial.any():
        inside = [
            EMOTION_LABELS[p] in r.emotion_among
            for r, p, is_partial in zip(records, predicted, partial, strict=True)
            if is_partial
        ]
        report["partial"] = {"n": int(partial.sum()), "prediction_in_allowed_set": float(np.mean(inside))}
    abusive_true, abusive_pred = abusive_vs_rest(records, predicted)
    if len(abusive_true) and abusive_true.any() and (~abusive_true).any():
        from sklearn.metrics import f1_score, precision_score, recall_score

        report["abusive_vs_rest"] = {
            "n": len(abusive_true),
            "macro_f1": float(f1_score(abusive_true, abusive_pred, average="macro")),
            "precision": float(precision_score(abusive_true, abusive_pred, zero_division=0)),
            "recall": float(recall_score(abusive_true, abusive_pred, zero_division=0)),
        }
    return report


def abusive_vs_rest(records: list[Record], predicted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Gold and predicted "abusive?" over records whose evidence decides it (exact, or a set without abusive)."""
    truth, guess = [], []
    for record, label in zip(records, predicted, strict=True):
        if record.emotion is not None:
            truth.append(record.emotion == "abusive")
        elif record.emotion_among and "abusive" not in record.emotion_among:
            truth.append(False)
        else:
            continue
        guess.append(int(label) == ABUSIVE)
    return np.array(truth, dtype=bool), np.array(guess, dtype=bool)


def escalation_report(records: list[Record], predictions: Predictions) -> dict | None:
    known = np.array([r.escalate is not None for r in records], dtype=bool)
    if not known.any():
        return None
    from sklearn.metrics import average_precision_score, precision_recall_fscore_support

    truth = np.array([bool(r.escalate) for r in records])[known]
    decided = predictions.escalate[known]
    precision, recall, f1, _ = precision_recall_fscore_support(truth, decided, average="binary", zero_division=0)
    scores = predictions.escalation[known]
    return {
        "n": int(known.sum()),
        "positives": int(truth.sum()),
        "precision": float(precision),
        "recall": float(recall),
        "f1": float(f1),
        "pr_auc": float(average_precision_score(truth, scores)) if truth.any() and (~truth).any() else None,
        "ece": metrics.expected_calibration_error(scores, truth),
    }


def alert_timing(records: list[Record], predictions: Predictions) -> dict:
    """First predicted vs gold escalation turn per conversation, counted in customer turns."""
    by_conversation: dict[str, list[int]] = defaultdict(list)
    for index, record in enumerate(records):
        by_conversation[record.conversation_id].append(index)
    alerts = metrics.first_alerts(
        [[records[index].escalate for index in indices] for indices in by_conversation.values()],
        [[predictions.escalate[index] for index in indices] for indices in by_conversation.values()],
    )
    offsets, missed = alerts["offsets"], alerts["missed"]
    false_alarms, quiet = alerts["false_alarm_conversations"], alerts["correctly_quiet"]
    offsets_array = np.array(offsets)
    return {
        "conversations": len(by_conversation),
        "with_gold_escalation": len(offsets) + missed,
        "on_time": int((offsets_array == 0).sum()),
        "early": int((offsets_array < 0).sum()),
        "late": int((offsets_array > 0).sum()),
        "missed": missed,
        "false_alarm_conversations": false_alarms,
        "correctly_quiet": quiet,
        "mean_offset_turns": float(offsets_array.mean()) if len(offsets) else None,
        "offset_histogram": {
            str(k): int(v) for k, v in zip(*np.unique(offsets_array, return_counts=True), strict=True)
        },
    }


def _parts(records: list[Record], predictions: Predictions, key) -> dict[str, tuple[list[Record], Predictions]]:
    """The records and their predictions grouped by ``key(record)``, in sorted key order."""
    groups = defaultdict(list)
    for index, record in enumerate(records):
        groups[key(record)].append(index)
    return {
        name: (
            [records[i] for i in indices],
            Predictions(predictions.emotion[indices], predictions.escalation[indices], predictions.escalate[indices]),
        )
        for name, indices in sorted(groups.items())
    }


def set_report(records: list[Record], predictions: Predictions, conversations: bool = False) -> dict:
    report = {"emotion": emotion_report(records, predictions), "escalation": escalation_report(records, predictions)}
    by_lang = _parts(records, predictions, lambda record: record.lang)
    if len(by_lang) > 1 or conversations:
        report["by_language"] = {}
        for lang, (subset, sub_predictions) in by_lang.items():
            report["by_language"][lang] = {
                "emotion": emotion_report(subset, sub_predictions),
                "escalation": escalation_report(subset, sub_predictions),
            }
            if conversations:
                report["by_language"][lang]["alert_timing"] = alert_timing(subset, sub_predictions)
    if conversations:
        report["alert_timing"] = alert_timing(records, predictions)
    by_source = _parts(records, predictions, lambda record: record.source)
    if len(by_source) > 1:  # the real-text sets pool several sources: each is its own kind of text
        report["by_source"] = {
            source: {
                "emotion": emotion_report(subset, sub_predictions),
                "escalation": escalation_report(subset, sub_predictions),
            }
            for source, (subset, sub_predictions) in by_source.items()
        }
    return report


# ----------------------------------------------------------------------------- the baseline


class TfidfBaseline:
    """Character n-gram TF-IDF + logistic regression: one model per head."""

    def __init__(self, seed: int):
        self.seed = seed

    @staticmethod
    def _with_context(record: Record) -> str:
        previous = " ".join(f"{turn.speaker}: {turn.text}" for turn in record.context[-2:])
        return f"{record.text} || {previous}"

    def fit(self, records: list[Record]) -> TfidfBaseline:
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline

        emotion_records = [r for r in records if r.emotion is not None]
        self.emotion_model = make_pipeline(
            TfidfVectorizer(analyzer="char_wb", ngram_range=(1, 4), min_df=2, sublinear_tf=True, max_features=200000),
            LogisticRegression(max_iter=2000, C=4.0, class_weight="balanced", random_state=self.seed),
        ).fit([r.text for r in emotion_records], [LABEL2ID[r.emotion] for r in emotion_records])
        escalation_records = [r for r in records if r.escalate is not None]
        self.escalation_model = make_pipeline(
            TfidfVectorizer(analyzer="char_wb", ngram_range=(1, 4), min_df=2, sublinear_tf=True, max_features=200000),
            LogisticRegression(max_iter=2000, C=4.0, class_weight="balanced", random_state=self.seed),
        ).fit([self._with_context(r) for r in escalation_records], [bool(r.escalate) for r in escalation_records])
        return self

    def predict(self, records: list[Record]) -> Predictions:
        probabilities = np.zeros((len(records), len(EMOTION_LABELS)))
        if records:
            raw = self.emotion_model.predict_proba([r.text for r in records])
            probabilities[:, self.emotion_model.classes_] = raw
            escalation = self.escalation_model.predict_proba([self._with_context(r) for r in records])[:, 1]
        else:
            escalation = np.zeros(0)
        return Predictions(probabilities, escalation, escalation >= 0.5)

    def classify(self, items: list[TurnInput]) -> list[Prediction]:
        """Predictions in the model's shape, for the suites that score a classifier (functional, probes)."""
        records = [
            Record(
                id=str(index), text=item.text, lang=item.lang or "zh", source="baseline", tier="train",
                context=tuple(Turn(speaker, text) for speaker, text in item.context),
            )
            for index, item in enumerate(items)
        ]  # fmt: skip
        predicted = self.predict(records)
        return [
            Prediction(
                emotion=EMOTION_LABELS[int(row.argmax())],
                scores={label: float(row[index]) for index, label in enumerate(EMOTION_LABELS)},
                escalate=bool(decision),
                escalate_score=float(score),
            )
            for row, score, decision in zip(predicted.emotion, predicted.escalation, predicted.escalate, strict=True)
        ]

    def classify_conversation(self, conversation: dict) -> list[Prediction]:
        from tonewatch.model.types import conversation_turn_inputs

        return self.classify(conversation_turn_inputs(conversation))


def onnx_report(directory: Path, torch_classifier: Classifier, records: list[Record]) -> dict | None:
    """The ONNX Runtime path on the in-domain set: its metrics and how often it agrees with the PyTorch path."""
    from tonewatch.model.classifier import package_calibration_turns
    from tonewatch.model.export import export_onnx, onnx_available, pick_recipe

    if not onnx_available():
        logger.warning("onnx/onnxruntime not installed: no ONNX section in the report")
        return None
    logger.info("building/loading the ONNX model and evaluating it on %s", EVALUATION_SOURCE)
    # The loader's calibration turns, so the export is the one that the loader would build and cache.
    recipe = pick_recipe(None)  # the loader's recipe: the export below is the one it opens, built once
    onnx_dir = export_onnx(torch_classifier, calibration_turns=package_calibration_turns(), recipe=recipe)
    fast = Classifier.from_pretrained(directory, backend="onnx", recipe=recipe.name)
    reference = predict(torch_classifier, records, f"{EVALUATION_SOURCE} (PyTorch)")
    candidate = predict(fast, records, f"{EVALUATION_SOURCE} (ONNX)")
    return {
        "recipe": fast.backend.meta["recipe"],
        "weight_bits": fast.backend.meta.get("weight_bits"),
        "onnx_mb": round(fast.backend.meta["onnx_bytes"] / 1e6, 1),
        "path": str(onnx_dir),
        "set": EVALUATION_SOURCE,
        "emotion_agreement": float(np.mean(reference.emotion.argmax(1) == candidate.emotion.argmax(1))),
        "escalation_agreement": float(np.mean(reference.escalate == candidate.escalate)),
        "max_abs_probability_difference": float(np.abs(reference.emotion - candidate.emotion).max()),
        "model": set_report(records, candidate, conversations=True),
    }


# ----------------------------------------------------------------------------- the report


HELDOUT_SOURCE = "callcenter_heldout"
"""A fifth of the conversations written from varied briefs, never trained on (shipped beside callcenter_dev)."""
REAL_TEXT_SETS = {"real_text_zh": "zh", "real_text_ru": "ru"}
"""The held-out fifth of the project's exact labels on third-party text (``data/annotations``), per language."""


def evaluation_sets(config: EvalConfig, train_config: TrainConfig) -> dict[str, list[Record]]:
    """callcenter_dev first, then the real-text held-out sets, then the held-out part of every other source (capped).

    Annotated records never count in their source's set: their training part was trained on, their held-out
    part is the real-text set (whole, uncapped: it is what the model is chosen on).
    """
    sets = {EVALUATION_SOURCE: load_source(EVALUATION_SOURCE, config.data_root)}
    sets[HELDOUT_SOURCE] = load_source(HELDOUT_SOURCE)
    if not config.public_sources:
        return sets
    real_text: dict[str, list[Record]] = {name: [] for name in REAL_TEXT_SETS}
    public: dict[str, list[Record]] = {}
    for name, source in SOURCES.items():
        if source.in_repo:
            continue
        records = [record for record in load_source(name, config.data_root) if is_labelled(record)]
        for set_name, lang in REAL_TEXT_SETS.items():
            real_text[set_name] += [r for r in records if r.meta.get("annotated") == "heldout" and r.lang == lang]
        records = [record for record in records if "annotated" not in record.meta]
        if source.tier == "train":
            _, records = split_source(records, name, train_config.seed, train_config.validation_fraction)
        if name != "cold":
            records = _subset(records, config.max_records_per_source, config.seed)
        if records:
            public[name] = records
    sets.update({name: records for name, records in real_text.items() if records})
    sets.update(public)
    return sets


def _subset(records: list[Record], cap: int, seed: int) -> list[Record]:
    if len(records) <= cap:
        return records
    return sorted(random.Random(seed).sample(records, cap), key=records.index)


def validation_suite(report: dict) -> dict:
    """The figures models are chosen on, each split beside the TF-IDF baseline trained on the same data:
    callcenter_dev, the real-text held-out sets, COLD dev, the functional suite and the escalation probes. No
    single split decides; compare the mean of several seeds."""
    suite: dict = {}
    for who in ("model", "baseline"):
        figures: dict = {}
        dev = get_path(report, "sets", EVALUATION_SOURCE, who)
        heldout = get_path(report, "sets", HELDOUT_SOURCE, who)
        for lang in ("zh", "ru"):
            figures[f"{HELDOUT_SOURCE}/{lang}/emotion_macro_f1"] = get_path(
                heldout, "by_language", lang, "emotion", "exact", "macro_f1"
            )
            figures[f"{HELDOUT_SOURCE}/{lang}/escalation_f1"] = get_path(
                heldout, "by_language", lang, "escalation", "f1"
            )
        for lang in ("zh", "ru"):
            figures[f"callcenter_dev/{lang}/emotion_macro_f1"] = get_path(
                dev, "by_language", lang, "emotion", "exact", "macro_f1"
            )
            figures[f"callcenter_dev/{lang}/escalation_f1"] = get_path(dev, "by_language", lang, "escalation", "f1")
        for name in REAL_TEXT_SETS:
            real = get_path(report, "sets", name, who)
            exact = get_path(real, "emotion", "exact")
            figures[f"{name}/emotion_macro_f1"] = get_path(exact, "macro_f1")
            figures[f"{name}/abusive_precision"] = get_path(exact, "per_class", "abusive", "precision")
            figures[f"{name}/abusive_recall"] = get_path(exact, "per_class", "abusive", "recall")
            figures[f"{name}/emotion_ece"] = get_path(exact, "ece")
            figures[f"{name}/escalation_f1"] = get_path(real, "escalation", "f1")
            for source, part in (get_path(real, "by_source") or {}).items():
                figures[f"{name}/{source}/emotion_macro_f1"] = get_path(part, "emotion", "exact", "macro_f1")
        figures["cold/abusive_vs_rest_macro_f1"] = get_path(
            report, "sets", "cold", who, "emotion", "abusive_vs_rest", "macro_f1"
        )
        functional = report.get("functional" if who == "model" else "functional_baseline") or {}
        for lang, functionalities in functional.items():
            figures[f"functional/{lang}/functionalities_meeting_target"] = sum(
                f["meets_target"] for f in functionalities.values()
            ) / max(len(functionalities), 1)
        probes = report.get("probes" if who == "model" else "probes_baseline") or {}
        for lang, f in probes.items():
            figures[f"probes/{lang}/trigger_escalated"] = f.get("trigger_escalated")
            figures[f"probes/{lang}/negative_escalated"] = f.get("negative_escalated")
        if who == "model":  # the baseline has no signals (and so no policy beyond its emotions)
            figures.update(suite_figures(report.get("escalation_modes")))
            for lang, by_signal in (get_path(report, "signals", "all") or {}).items():
                for name, f in by_signal.items():
                    figures[f"signals/{lang}/{name}/f1"] = f.get("f1")
        suite[who] = {key: value for key, value in figures.items() if value is not None}
    return suite


def evaluate(model_dir: str | Path, config: EvalConfig) -> dict:
    """Evaluate the model in ``model_dir``; write report.json, report.md and plots; return the report.

    The same model, data root and config give the same report.json, byte for byte: the public subsets and
    the baseline are drawn with the run's seed (unless ``config.seed`` says otherwise), and the time taken
    is logged and written to report.md only.
    """
    started = time.perf_counter()
    directory = Path(model_dir)
    output = Path(config.output_dir) if config.output_dir else directory
    output.mkdir(parents=True, exist_ok=True)
    reference = Classifier.from_pretrained(directory, backend="torch")  # the reference (fp32) figures
    classifier = RememberingClassifier(reference)
    train_config_path = directory / "training_config.json"
    train_config = TrainConfig.from_file(train_config_path) if train_config_path.exists() else TrainConfig()
    # The root the model was trained on may be another machine's: only --data-root or $TONEWATCH_DATA count.
    train_config.data_root = config.data_root
    seed = train_config.seed if config.seed is None else config.seed
    logger.info("evaluating %s (seed %d of the public subsets and the baseline)", directory, seed)
    sets = evaluation_sets(dataclasses.replace(config, seed=seed), train_config)

    baseline = None
    if config.baseline:
        logger.info("training the TF-IDF baseline")
        training = build_training_data(train_config)
        baseline = TfidfBaseline(seed).fit([r for records in training.train.values() for r in records])

    report: dict = {"model": str(directory), "model_name": classifier.config.name, "seed": seed, "sets": {}}
    for name, records in sets.items():
        logger.info("evaluating %s (%d records)", name, len(records))
        is_conversations = name in (EVALUATION_SOURCE, HELDOUT_SOURCE)
        entry = {
            "source": "annotations" if name in REAL_TEXT_SETS else name,
            "tier": "train" if name in REAL_TEXT_SETS else SOURCES[name].tier,
            "model": set_report(records, predict(classifier, records, name), conversations=is_conversations),
        }
        if baseline is not None:
            entry["baseline"] = set_report(records, baseline.predict(records), conversations=is_conversations)
        report["sets"][name] = entry
    if config.probes and PROBES_FILE.is_file():
        logger.info("evaluating the escalation probes (%s)", PROBES_FILE.name)
        report["probes"] = probe_report(classifier)
        if baseline is not None:
            report["probes_baseline"] = probe_report(baseline)
    if config.functional and FUNCTIONAL_DIR.is_dir():
        logger.info("evaluating the functional test suite (%s)", FUNCTIONAL_DIR.name)
        report["functional"] = functional_report(classifier)
        if baseline is not None:
            report["functional_baseline"] = functional_report(baseline)
    if config.signals and classifier.signal_names:
        logger.info("evaluating the turn signals on the held-out sets with signal labels")
        report["signals"] = signals_report(classifier, train_config.signal_labels_dir)
    if config.escalation_modes:
        logger.info("comparing the ways of deciding escalation (learnt head, policy, both)")
        policy = load_policy(config.policy) if config.policy else None
        report["escalation_modes"] = escalation_modes_report(classifier, policy=policy)
    report["validation_suite"] = validation_suite(report)
    if config.onnx:
        report["onnx"] = onnx_report(directory, reference, sets[EVALUATION_SOURCE])
    report["calibration"] = classifier.config.calibration.__dict__
    seconds = round(time.perf_counter() - started, 1)
    replaced = [name for name in ("report.json", "report.md") if (output / name).exists()]
    logger.info(
        "%s report.json, report.md and plots in %s",
        f"overwriting the existing {' and '.join(replaced)}: writing" if replaced else "writing",
        output,
    )
    (output / "report.json").write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    from tonewatch.training.report import write_markdown, write_plots

    plots = write_plots(report, output)
    (output / "report.md").write_text(write_markdown({**report, "seconds": seconds}, plots))
    logger.info("evaluation took %.1f s", seconds)
    return report
