"""Refit only the escalation head of a trained ``joint`` model over its frozen features, and score it.

    python scripts/refit_escalation_head.py [--model default] [--C 0.01 0.03 0.1 0.3 1 3]

The experiment behind ``docs/design.md``, "A new escalation head over version 4, not shipped". The
encoder and the emotion head stay as they are; for each L2 strength ``C`` a logistic regression is fitted
on the pooled features of the callcenter_train customer turns of the training split (the pipeline's split:
``validation_fraction`` and ``seed`` of ``configs/default.toml``), its temperature and per-language
thresholds on the held-out split as ``tonewatch train`` calibrates, and then it is scored on the held-out
split, on callcenter_dev and on the escalation probes. Nothing is written; the model directory is unchanged.
Held-out figures are the ones to choose by; callcenter_dev is for the comparison only.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
from pathlib import Path

import numpy as np
import torch


def features(classifier, records) -> np.ndarray:
    """The network's pooled features (what the heads read) of every record, without dropout."""
    from tonewatch.training.evaluate import turn_input

    encoded = [classifier.encode(turn_input(record)) for record in records]
    order = sorted(range(len(encoded)), key=lambda index: len(encoded[index].input_ids))
    out = np.zeros((len(encoded), classifier.network.escalation_head.in_features), dtype=np.float32)
    classifier.network.eval()
    with torch.inference_mode():
        for start in range(0, len(order), 64):
            chunk = order[start : start + 64]
            arrays = [torch.from_numpy(array) for array in classifier.pad([encoded[index] for index in chunk])]
            out[chunk] = classifier.network.features(*arrays).numpy()
    return out


def summary(report: dict) -> str:
    parts = []
    for lang, figures in report["by_language"].items():
        escalation = figures["escalation"]
        parts.append(f"{lang} F1 {escalation['f1']:.3f} PR-AUC {escalation['pr_auc']:.3f}")
    timing = report["alert_timing"]
    parts.append(f"all F1 {report['escalation']['f1']:.3f}")
    parts.append(
        f"alerts on time/early/late/missed {timing['on_time']}/{timing['early']}/{timing['late']}/{timing['missed']}"
        f", false-alarm conversations {timing['false_alarm_conversations']}"
    )
    return "; ".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default", help="A model directory or bundled name (architecture joint).")
    parser.add_argument("--C", type=float, nargs="+", default=[0.01, 0.03, 0.1, 0.3, 1.0, 3.0])
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import average_precision_score, log_loss

    from tonewatch.data.sources.callcenter import PACKAGE_DATA, load_dev, load_train
    from tonewatch.data.splits import split_by_conversation
    from tonewatch.model.classifier import Classifier
    from tonewatch.training.calibration import fit_calibration
    from tonewatch.training.config import TrainConfig
    from tonewatch.training.evaluate import predict, set_report
    from tonewatch.training.probes import probe_report

    recipe = TrainConfig.from_file(Path(__file__).resolve().parent.parent / "configs" / "default.toml")
    classifier = Classifier.from_pretrained(args.model, backend="torch")
    if classifier.config.architecture != "joint":
        raise SystemExit("only the joint architecture has one pooled feature vector per turn")
    labelled = [record for record in load_train(PACKAGE_DATA / "callcenter_train") if record.escalate is not None]
    train, held_out = split_by_conversation(labelled, recipe.validation_fraction, recipe.seed)
    dev = load_dev(PACKAGE_DATA / "callcenter_dev")
    x_train = features(classifier, train)
    y_train = np.array([record.escalate for record in train])
    y_held = np.array([record.escalate for record in held_out])
    print(f"training split {len(train)} turns ({y_train.sum()} escalate), held out {len(held_out)} ({y_held.sum()})")

    head = classifier.network.escalation_head
    original = (head.weight.detach().clone(), head.bias.detach().clone(), classifier.config)
    candidates = [("as shipped", None)] + [(f"C={c}", c) for c in args.C]
    for name, strength in candidates:
        head.weight.data, head.bias.data, classifier.config = original[0].clone(), original[1].clone(), original[2]
        if strength is not None:
            fitted = LogisticRegression(C=strength, max_iter=5000).fit(x_train, y_train)
            head.weight.data = torch.tensor(fitted.coef_, dtype=torch.float32)
            head.bias.data = torch.tensor(fitted.intercept_, dtype=torch.float32)
            # the escalation temperature and thresholds are refitted; the emotion calibration is kept
            refit = fit_calibration(classifier, held_out)
            calibration = dataclasses.replace(
                original[2].calibration,
                escalation_temperature=refit.escalation_temperature,
                escalation_threshold=refit.escalation_threshold,
                escalation_thresholds=refit.escalation_thresholds,
            )
            classifier.config = dataclasses.replace(original[2], calibration=calibration)
        held = predict(classifier, held_out)
        print(
            f"{name}: held out log loss {log_loss(y_held, held.escalation):.4f}, "
            f"PR-AUC {average_precision_score(y_held, held.escalation):.4f}; "
            f"thresholds {classifier.config.calibration.escalation_thresholds}"
        )
        print(f"  callcenter_dev: {summary(set_report(dev, predict(classifier, dev), conversations=True))}")
        probes = probe_report(classifier)
        shown = ", ".join(
            f"{lang} trigger {f['trigger_escalated']:.2f} held {f['held_escalated']:.2f} "
            f"negative {f['negative_escalated']:.2f}"
            for lang, f in probes.items()
        )
        print(f"  probes: {shown}")


if __name__ == "__main__":
    main()
