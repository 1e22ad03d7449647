"""``/v1/info``: the model, its labels and thresholds, the alert policy, the request limits."""

from __future__ import annotations

import dataclasses

from fastapi import APIRouter, Depends

from tonewatch import __version__
from tonewatch.labels import EMOTION_LABELS, ESCALATION_LABEL, LANGUAGES
from tonewatch.serve.auth import require_scope
from tonewatch.serve.schemas import AUTH_ERRORS, Info, error_responses
from tonewatch.serve.server import ServerDep

router = APIRouter(tags=["model"])


@router.get(
    "/v1/info",
    response_model=Info,
    dependencies=[Depends(require_scope("read", "write"))],
    responses=error_responses(*AUTH_ERRORS, 503),
)
async def info(server: ServerDep) -> dict:
    """Model name and version, labels, the model's calibrated thresholds and the alert policy's."""
    classifier = server.require_ready()
    config, policy = server.config, server.policy
    calibration = classifier.config.calibration
    return {
        "model": {
            "name": classifier.config.name,
            "version": classifier.config.version,
            "base_model": classifier.config.base_model,
            "max_context_turns": classifier.config.limits.max_context_turns,
            "backend": classifier.backend_name,
            "signals": list(classifier.signal_names),
            "signal_reader": classifier.config.signal_reader if classifier.signal_names else None,
        },
        "labels": list(EMOTION_LABELS),
        "escalation_label": ESCALATION_LABEL,
        "languages": list(LANGUAGES),
        "thresholds": {
            "escalation": {
                "default": calibration.escalation_threshold,
                "per_language": dict(calibration.escalation_thresholds),
            },
            "alert": policy.thresholds(),
        },
        "alert_policy": {
            "hysteresis": policy.hysteresis,
            "clear_turns": policy.clear_turns,
            "cooldown_turns": policy.cooldown_turns,
            "cooldown_seconds": policy.cooldown_seconds,
            "immediate_labels": list(policy.immediate_labels),
            "immediate_reasons": list(policy.immediate_reasons),
            "update_reasons": list(policy.update_reasons),
        },
        "escalation_policy": dataclasses.asdict(config.escalation),
        "limits": {
            "max_text_chars": config.max_text_chars,
            "max_items": config.max_items,
            "max_conversation_turns": config.max_conversation_turns,
            "max_body_bytes": config.max_body_bytes,
            "idle_timeout_s": config.idle_timeout_s,
            "max_conversations": config.max_conversations,
            "max_conversations_per_key": server.store.max_per_owner,
        },
        "auth": server.auth.enabled,
        "state": "redis" if server.store.shared else "memory",
        "tonewatch_version": __version__,
    }
