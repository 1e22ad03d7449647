"""Render an evaluation report (the dict of ``training.evaluate``) as Markdown and PNG plots."""

from __future__ import annotations

from pathlib import Path

from tonewatch.labels import EMOTION_LABELS
from tonewatch.training.escalation_eval import escalation_mode_lines
from tonewatch.training.functional import functional_lines
from tonewatch.training.probes import probe_lines
from tonewatch.training.signals_eval import signal_lines

IN_DOMAIN = "callcenter_dev"


def _fmt(value, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def get_path(tree: dict | None, *path):
    """``tree[path[0]][path[1]]...``, or None where a key is missing (report.json sections are optional)."""
    for key in path:
        if not isinstance(tree, dict) or key not in tree:
            return None
        tree = tree[key]
    return tree


HEADLINE_FIGURES = [
    ("emotion macro-F1", ["emotion", "exact", "macro_f1"]),
    ("abusive precision", ["emotion", "exact", "per_class", "abusive", "precision"]),
    ("abusive recall", ["emotion", "exact", "per_class", "abusive", "recall"]),
    ("escalation F1", ["escalation", "f1"]),
    ("escalation PR-AUC", ["escalation", "pr_auc"]),
    ("emotion ECE", ["emotion", "exact", "ece"]),
]


def _figure_rows(left: dict, right: dict | None) -> list[tuple[str, str, str, str]]:
    scopes = [("all", [])] + [(lang, ["by_language", lang]) for lang in sorted(left.get("by_language", {}))]
    return [
        (figure, scope, _fmt(get_path(left, *prefix, *path)), _fmt(get_path(right, *prefix, *path)))
        for figure, path in HEADLINE_FIGURES
        for scope, prefix in scopes
    ]


def headline_rows(report: dict) -> list[tuple[str, str, str, str]]:
    """(figure, scope, model, baseline) rows of the in-domain summary."""
    entry = report["sets"].get(IN_DOMAIN)
    if entry is None:
        return []
    return _figure_rows(entry["model"], entry.get("baseline"))


def onnx_lines(report: dict) -> list[str]:
    """The ONNX Runtime section: the fast path's figures beside the PyTorch (fp32) ones, and their agreement."""
    onnx, entry = report.get("onnx"), report["sets"].get(IN_DOMAIN)
    if not onnx or entry is None:
        return []
    recipe = onnx["recipe"]
    quantized = ", ".join(recipe.get("quantize", [])) or "none (fp32)"
    lines = [
        "",
        "## ONNX Runtime path (what `tonewatch label` and the server use)",
        "",
        f"Recipe `{recipe.get('name')}`{' (chose `' + recipe['chosen'] + '`)' if recipe.get('chosen') else ''}: "
        f"int8 (dynamic, smoothed, per-channel={recipe.get('per_channel')}, "
        f"{onnx.get('weight_bits') or '-'}-bit weights) on the MatMul groups {quantized}; the rest fp32, fused. "
        f"{onnx.get('onnx_mb')} MB. On {onnx['set']}: emotion labels agree with PyTorch on "
        f"{100 * onnx['emotion_agreement']:.2f} % of turns, escalation decisions on "
        f"{100 * onnx['escalation_agreement']:.2f} %; largest probability difference "
        f"{onnx['max_abs_probability_difference']:.3f}.",
        "",
        "| figure | scope | PyTorch (fp32) | ONNX |",
        "|---|---|---|---|",
    ]
    return lines + [f"| {f} | {s} | {a} | {b} |" for f, s, a, b in _figure_rows(entry["model"], onnx["model"])]


def suite_lines(suite: dict | None) -> list[str]:
    """The validation suite: every figure models are chosen on, beside the baseline."""
    if not suite:
        return []
    model, baseline = suite.get("model", {}), suite.get("baseline", {})
    lines = [
        "## Validation suite",
        "",
        "The figures a model is chosen on: no split alone decides, and recipes are compared on the mean of at "
        "least three seeds. `real_text_*`: the held-out fifth of the project's exact labels on real third-party "
        "text (`data/annotations`); `functional`: the share of functionalities of `data/functional` that meet "
        "their target.",
        "",
        "| figure | model | baseline |",
        "|---|---|---|",
    ]
    for key in model:
        lines.append(f"| {key} | {_fmt(model.get(key))} | {_fmt(baseline.get(key))} |")
    return [*lines, ""]


def write_markdown(report: dict, plots: list[str]) -> str:
    lines = [f"# Evaluation report: {report['model_name']}", ""]
    lines += [
        "In-domain figures are on `callcenter_dev` (200 conversations, never trained on). Public figures are on",
        "held-out splits that training did not see. The baseline (char n-gram TF-IDF + logistic regression) was",
        "trained in the same run on the same training records.",
        "",
    ]
    lines += suite_lines(report.get("validation_suite"))
    lines += [
        "## In-domain summary (callcenter_dev)",
        "",
        "| figure | scope | model | baseline |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| {figure} | {scope} | {model} | {baseline} |" for figure, scope, model, baseline in headline_rows(report)
    ]
    entry = report["sets"].get(IN_DOMAIN)
    if entry:
        lines += [
            "",
            "### Per class (model, all languages)",
            "",
            "| label | precision | recall | F1 | support |",
            "|---|---|---|---|---|",
        ]
        per_class = get_path(entry["model"], "emotion", "exact", "per_class") or {}
        for label in EMOTION_LABELS:
            row = per_class.get(label, {})
            lines.append(
                f"| {label} | {_fmt(row.get('precision'))} | {_fmt(row.get('recall'))} | "
                f"{_fmt(row.get('f1'))} | {row.get('support', '-')} |"
            )
        confusion = get_path(entry["model"], "emotion", "exact", "confusion")
        if confusion:
            lines += [
                "",
                "### Confusion matrix (rows: gold, columns: predicted)",
                "",
                "| gold \\ predicted | " + " | ".join(EMOTION_LABELS) + " |",
                "|---" * (len(EMOTION_LABELS) + 1) + "|",
            ]
            lines += [
                f"| {EMOTION_LABELS[i]} | " + " | ".join(str(v) for v in row) + " |" for i, row in enumerate(confusion)
            ]
        timing = entry["model"].get("alert_timing")
        if timing:
            lines += [
                "",
                "### First escalation alert vs gold first escalation turn (customer turns)",
                "",
                "| | model | baseline |",
                "|---|---|---|",
            ]
            base_timing = get_path(entry.get("baseline"), "alert_timing") or {}
            for key in (
                "with_gold_escalation",
                "on_time",
                "early",
                "late",
                "missed",
                "false_alarm_conversations",
                "correctly_quiet",
                "mean_offset_turns",
            ):
                lines.append(f"| {key} | {_fmt(timing.get(key))} | {_fmt(base_timing.get(key))} |")
    lines += [
        "",
        "## Public held-out sets",
        "",
        "| source | tier | n | exact macro-F1 (model / baseline) | in allowed set (model / baseline) | "
        "abusive-vs-rest macro-F1 (model / baseline) | escalation F1 (model / baseline) |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, entry in report["sets"].items():
        if name == IN_DOMAIN:
            continue

        def pair(*path, entry=entry):
            return f"{_fmt(get_path(entry['model'], *path))} / {_fmt(get_path(entry.get('baseline'), *path))}"

        lines.append(
            f"| {name} | {entry['tier']} | {get_path(entry['model'], 'emotion', 'n')} | "
            f"{pair('emotion', 'exact', 'macro_f1')} | {pair('emotion', 'partial', 'prediction_in_allowed_set')} | "
            f"{pair('emotion', 'abusive_vs_rest', 'macro_f1')} | {pair('escalation', 'f1')} |"
        )
    lines += onnx_lines(report)
    lines += probe_lines(report.get("probes"))
    lines += signal_lines(report.get("signals"))
    lines += escalation_mode_lines(report.get("escalation_modes"))
    lines += functional_lines(report.get("functional"))
    calibration = report.get("calibration", {})
    lines += [
        "",
        "## Calibration",
        "",
        f"Temperatures fitted on held-out callcenter_train conversations: emotion "
        f"{_fmt(calibration.get('emotion_temperature'))}, escalation "
        f"{_fmt(calibration.get('escalation_temperature'))}; escalation threshold "
        f"{_fmt(calibration.get('escalation_threshold'), 2)}, per language "
        f"{calibration.get('escalation_thresholds') or '-'}.",
        "",
    ]
    if plots:
        lines += ["## Plots", ""] + [f"![{Path(plot).stem}]({plot})" for plot in plots] + [""]
    lines.append(f"Evaluation took {report.get('seconds', '-')} s.")
    return "\n".join(lines) + "\n"


def write_plots(report: dict, output: Path) -> list[str]:
    """Confusion matrices and a reliability diagram for callcenter_dev; returns the file names."""
    entry = report["sets"].get(IN_DOMAIN)
    if entry is None:
        return []
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    by_language = entry["model"].get("by_language", {})
    scopes = [("all", entry["model"])] + [(lang, value) for lang, value in sorted(by_language.items())]
    figure, axes = plt.subplots(1, len(scopes), figsize=(4.2 * len(scopes), 4))
    for axis, (scope, value) in zip(list(getattr(axes, "flat", [axes])), scopes, strict=True):
        confusion = get_path(value, "emotion", "exact", "confusion")
        if confusion is None:
            axis.axis("off")
            continue
        axis.imshow(confusion, cmap="Blues")
        axis.set_xticks(range(len(EMOTION_LABELS)), EMOTION_LABELS, rotation=45, ha="right")
        axis.set_yticks(range(len(EMOTION_LABELS)), EMOTION_LABELS)
        for i, row in enumerate(confusion):
            for j, count in enumerate(row):
                axis.text(j, i, str(count), ha="center", va="center", fontsize=9)
        axis.set_title(f"callcenter_dev: {scope}")
        axis.set_xlabel("predicted")
        axis.set_ylabel("gold")
    figure.tight_layout()
    figure.savefig(output / "confusion.png", dpi=110)
    plt.close(figure)
    written.append("confusion.png")

    bins = get_path(entry["model"], "emotion", "exact", "reliability")
    if bins:
        figure, axis = plt.subplots(figsize=(4.5, 4.5))
        points = [(b["confidence"], b["accuracy"], b["count"]) for b in bins if b["count"]]
        axis.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfect calibration")
        axis.plot([p[0] for p in points], [p[1] for p in points], marker="o", label="model")
        for confidence, accuracy, count in points:
            axis.annotate(str(count), (confidence, accuracy), textcoords="offset points", xytext=(4, -10), fontsize=7)
        ece = get_path(entry["model"], "emotion", "exact", "ece")
        axis.set_title(f"Reliability, emotion (ECE {_fmt(ece)})")
        axis.set_xlabel("confidence (max probability)")
        axis.set_ylabel("accuracy")
        axis.legend(loc="upper left")
        figure.tight_layout()
        figure.savefig(output / "reliability.png", dpi=110)
        plt.close(figure)
        written.append("reliability.png")
    return written
