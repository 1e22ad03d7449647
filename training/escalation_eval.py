"""How a conversation's escalation is decided, compared: the learnt head, the label guide's policy, both.

``tonewatch label``, the Python API and the server decide escalation with the conversation tracker's
:class:`~tonewatch.tracking.policy.EscalationPolicy`; its ``learnt_head`` setting says what the learnt escalation
score adds to the rules. This module scores the ways of deciding on whole conversations with gold per-turn
escalation labels (callcenter_dev, callcenter_heldout and the escalation probes), so the report can say which
is best and the default can follow the figures:

- ``learnt``: the learnt escalation head alone (the model's calibrated score and per-language threshold);
- ``policy``: the guide's rules over the turn signals and emotions, without the learnt score (``learnt_head =
  "off"``); for a model without a signal head only the emotion rules can fire;
- ``policy_or_learnt``: the rules, and the learnt score beside them (``learnt_head = "or"``).

The policy is the package's own (its defaults, or the file given), so these are the decisions a user gets.
Real-text sets are not scored here: they are single turns without their conversation, where the policy's
state cannot be followed.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from pathlib import Path

import numpy as np

from tonewatch.model.types import conversation_turn_inputs
from tonewatch.tracking.policy import (
    EscalationPolicy,
    agent_turn_inputs,
    escalate_conversation,
    wants_agent_signals,
)
from tonewatch.training.metrics import first_alerts
from tonewatch.training.probes import PROBES_FILE, probe_kinds

MODES = {"learnt": None, "policy": "off", "policy_or_learnt": "or"}
"""Each way of deciding -> the policy's ``learnt_head`` (None: the learnt head's own decision)."""
PACKAGE_DATA = Path(__file__).resolve().parent.parent / "data"
CONVERSATION_SETS = {
    "callcenter_dev": PACKAGE_DATA / "callcenter_dev" / "dialogues.jsonl",
    "callcenter_heldout": PACKAGE_DATA / "callcenter_heldout" / "dialogues.jsonl",
    "probes": PROBES_FILE,
}
"""The conversation files with gold per-turn escalation that ship in the package."""


def decisions(
    classifier, conversations: list[dict], policy: EscalationPolicy | None = None, batch_size: int = 64
) -> dict[str, list[list[bool]]]:
    """For each mode of :data:`MODES`: per conversation, the escalation decision of each customer turn."""
    policy = policy or EscalationPolicy()
    inputs, spans = [], []
    for conversation in conversations:
        turns = conversation_turn_inputs(conversation)
        spans.append((len(inputs), len(inputs) + len(turns)))
        inputs += turns
    predictions = classifier.classify(inputs, batch_size) if inputs else []
    agent_signals: list[dict[int, dict[str, float]]] = [{} for _ in conversations]
    if wants_agent_signals(classifier):
        indexed = [(k, index, item) for k, c in enumerate(conversations) for index, item in agent_turn_inputs(c)]
        probabilities = classifier.agent_signals([item for _, _, item in indexed], batch_size)
        for (k, index, _), signals in zip(indexed, probabilities, strict=True):
            agent_signals[k][index] = signals
    result: dict[str, list[list[bool]]] = {mode: [] for mode in MODES}
    for conversation, (start, end), agent in zip(conversations, spans, agent_signals, strict=True):
        turn_predictions = predictions[start:end]
        for mode, learnt_head in MODES.items():
            if learnt_head is None:
                result[mode].append([p.escalate for p in turn_predictions])
                continue
            mode_policy = dataclasses.replace(policy, learnt_head=learnt_head)
            escalations = escalate_conversation(mode_policy, conversation, turn_predictions, agent)
            result[mode].append([e.escalate for e in escalations])
    return result


def _gold(conversation: dict) -> list[bool | None]:
    return [turn.get("escalate") for turn in conversation["turns"] if turn["speaker"] == "customer"]


def turn_figures(golds: list[list[bool | None]], decided: list[list[bool]]) -> dict:
    """Precision, recall and F1 of the escalation decision over customer turns with a gold label."""
    pairs = [
        (g, d) for gs, ds in zip(golds, decided, strict=True) for g, d in zip(gs, ds, strict=True) if g is not None
    ]
    truth = np.array([bool(g) for g, _ in pairs], dtype=bool)
    predicted = np.array([bool(d) for _, d in pairs], dtype=bool)
    hits = int((truth & predicted).sum())
    precision = hits / max(int(predicted.sum()), 1)
    recall = hits / max(int(truth.sum()), 1)
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"n": len(pairs), "positives": int(truth.sum()), "precision": precision, "recall": recall, "f1": f1}


def timing_figures(golds: list[list[bool | None]], decided: list[list[bool]]) -> dict:
    """First alert against the gold first escalation turn, per conversation, in customer turns
    (:func:`tonewatch.training.metrics.first_alerts`), with the share within one turn either side."""
    alerts = first_alerts(golds, decided)
    offsets = alerts["offsets"]
    with_gold = len(offsets) + alerts["missed"]
    near = sum(abs(offset) <= 1 for offset in offsets)
    return {
        "with_gold_escalation": with_gold,
        "on_time": sum(offset == 0 for offset in offsets),
        "within_one_turn": near,
        "within_one_turn_share": near / max(with_gold, 1),
        "missed": alerts["missed"],
        "false_alarm_conversations": alerts["false_alarm_conversations"],
        "correctly_quiet": alerts["correctly_quiet"],
    }


def probe_figures(conversations: list[dict], decided: list[list[bool]]) -> dict:
    """Share of trigger, held and negative probe turns escalated (see :mod:`tonewatch.training.probes`)."""
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for conversation, ds in zip(conversations, decided, strict=True):
        for kind, escalated in zip(probe_kinds(conversation), ds, strict=True):
            counts[kind][0] += 1
            counts[kind][1] += bool(escalated)
    figures: dict = {}
    for name in ("trigger", "held", "negative"):
        turns, escalated = counts[name]
        figures[f"{name}_turns"] = turns
        figures[f"{name}_escalated"] = escalated / max(turns, 1)
    return figures


def escalation_modes_report(
    classifier, sets: dict[str, list[dict]] | None = None, policy: EscalationPolicy | None = None
) -> dict:
    """``{set: {mode: {lang: figures}}}`` for each conversation set (default :data:`CONVERSATION_SETS`)."""
    if sets is None:
        from tonewatch.conversations import read_conversations

        sets = {name: read_conversations(path) for name, path in CONVERSATION_SETS.items() if path.is_file()}
    report: dict = {}
    for name, conversations in sets.items():
        by_mode = decisions(classifier, conversations, policy)
        report[name] = {}
        for mode, decided in by_mode.items():
            report[name][mode] = {}
            for lang in sorted({c.get("lang") or "unknown" for c in conversations}):
                keep = [k for k, c in enumerate(conversations) if (c.get("lang") or "unknown") == lang]
                subset = [conversations[k] for k in keep]
                decided_subset = [decided[k] for k in keep]
                if name == "probes":
                    report[name][mode][lang] = probe_figures(subset, decided_subset)
                else:
                    golds = [_gold(c) for c in subset]
                    report[name][mode][lang] = {
                        **turn_figures(golds, decided_subset),
                        "alert_timing": timing_figures(golds, decided_subset),
                    }
    return report


def escalation_mode_lines(report: dict | None) -> list[str]:
    """The report.md section: each way of deciding escalation, per set and language."""
    if not report:
        return []
    lines = [
        "",
        "## How escalation is decided: the learnt head, the policy, both",
        "",
        "`learnt`: the learnt escalation head alone; `policy`: the label guide's rules over the turn signals and "
        'emotions (`configs/escalation.toml` with `learnt_head = "off"`); `policy_or_learnt`: both '
        '(`learnt_head = "or"`). Whole conversations, per language. Timing: first alert on the gold first '
        "escalation turn or one turn either side, of the conversations that escalate; false alarms: conversations "
        "that should not escalate but do.",
        "",
        "| set | language | mode | escalation F1 | precision | recall | first alert within one turn | "
        "false-alarm conversations |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, by_mode in report.items():
        if name == "probes":
            continue
        for lang in sorted(next(iter(by_mode.values()), {})):
            for mode, by_lang in by_mode.items():
                f = by_lang[lang]
                t = f["alert_timing"]
                lines.append(
                    f"| {name} | {lang} | {mode} | {f['f1']:.3f} | {f['precision']:.3f} | {f['recall']:.3f} | "
                    f"{t['within_one_turn']} / {t['with_gold_escalation']} | {t['false_alarm_conversations']} |"
                )
    probes = report.get("probes")
    if probes:
        lines += [
            "",
            "Escalation probes: share of turns escalated (trigger and held should be 1, negative 0).",
            "",
            "| language | mode | trigger | held | negative |",
            "|---|---|---|---|---|",
        ]
        for lang in sorted(next(iter(probes.values()), {})):
            for mode, by_lang in probes.items():
                f = by_lang[lang]
                lines.append(
                    f"| {lang} | {mode} | {f['trigger_escalated']:.2f} ({f['trigger_turns']}) | "
                    f"{f['held_escalated']:.2f} ({f['held_turns']}) | {f['negative_escalated']:.2f} "
                    f"({f['negative_turns']}) |"
                )
    return lines


def suite_figures(report: dict | None) -> dict:
    """The validation-suite figures of each mode: escalation F1 on the conversation sets, probe rates."""
    figures: dict = {}
    for name, by_mode in (report or {}).items():
        for mode, by_lang in by_mode.items():
            for lang, f in by_lang.items():
                if name == "probes":
                    figures[f"escalation_modes/{mode}/probes/{lang}/trigger_escalated"] = f["trigger_escalated"]
                    figures[f"escalation_modes/{mode}/probes/{lang}/negative_escalated"] = f["negative_escalated"]
                else:
                    figures[f"escalation_modes/{mode}/{name}/{lang}/escalation_f1"] = f["f1"]
                    if name == "callcenter_dev":
                        timing = f["alert_timing"]
                        figures[f"escalation_modes/{mode}/{name}/{lang}/first_alert_within_one_turn"] = timing[
                            "within_one_turn_share"
                        ]
                        figures[f"escalation_modes/{mode}/{name}/{lang}/false_alarm_conversations"] = timing[
                            "false_alarm_conversations"
                        ]
    return figures
