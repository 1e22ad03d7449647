"""Typed configuration of the server, loadable from TOML.

Example ``serve.toml``::

    model_dir = "runs/default"
    host = "0.0.0.0"
    port = 8000
    idle_timeout_s = 900

    [[api_keys]]
    name = "telephony"
    key = "..."            # at least 16 characters
    scopes = ["write"]

    [[api_keys]]
    name = "supervisors"
    key = "..."
    scopes = ["read"]

    [[api_keys]]
    name = "prometheus"
    key = "..."
    scopes = ["metrics"]   # /metrics only, sent as 'Authorization: Bearer KEY'

    [alert]                # tonewatch.tracking.AlertPolicy
    hysteresis = 0.15
    cooldown_turns = 3
    escalation_thresholds = { zh = 0.55 }

    [escalation.external_threat]   # tonewatch.tracking.EscalationPolicy (configs/escalation.toml)
    enabled = false

Without ``api_keys`` the server listens on 127.0.0.1 only, whatever ``host`` says, and answers only requests
addressed to localhost, 127.0.0.1 or [::1] (DNS rebinding); ``allowed_hosts`` adds host names. With keys, every
endpoint but ``/healthz``, ``/readyz``, the dashboard page and static files needs one (``/metrics`` a ``read`` or
``metrics`` key, ``/openapi.json`` and ``/docs`` a ``read`` key).
A file may start from another with ``extends = "base.toml"`` (:mod:`tonewatch.configfile`: tables such as
``[alert]`` merge key by key, arrays such as ``[[api_keys]]`` replace the parent's).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tonewatch import configfile
from tonewatch.tracking import AlertPolicy, EscalationPolicy

SCOPES: tuple[str, ...] = ("read", "write", "metrics")
"""API key scopes: ``write`` posts turns and classifies; ``read`` reads alerts, conversations, the dashboard, the
metrics and the API docs; ``metrics`` reads ``/metrics`` only (a key for Prometheus that reads no transcript)."""

LOCALHOST = "127.0.0.1"
MIN_KEY_LENGTH = 16
HOST_PATTERN = re.compile(r"\*|(\*\.)?[a-z0-9-]+(\.[a-z0-9-]+)*\.?|\[[0-9a-f:.]+\]", re.IGNORECASE)
"""An ``allowed_hosts`` entry: ``*``, a host name or IPv4 address (``*.`` before it: its subdomains), ``[IPv6]``."""


@dataclass
class ApiKey:
    """One API key and what it may do."""

    key: str = field(metadata={"help": f"The secret, sent as 'Authorization: Bearer KEY' or 'X-API-Key: KEY' "
                                       f"(at least {MIN_KEY_LENGTH} characters)."})  # fmt: skip
    scopes: list[str] = field(default_factory=lambda: ["read"], metadata={"help": f"Some of {SCOPES}."})
    name: str = field(
        default="", metadata={"help": "Who holds the key, named in the access log instead of the key (#N unnamed)."}
    )

    def __post_init__(self) -> None:
        configfile.coerce_fields(self)
        if len(self.key) < MIN_KEY_LENGTH:
            raise ValueError(f"API key {self.name!r}: a key needs at least {MIN_KEY_LENGTH} characters")
        if not self.key.isascii() or not self.key.isprintable() or " " in self.key:
            raise ValueError(f"API key {self.name!r}: a key is printable ASCII without spaces")
        unknown = [scope for scope in self.scopes if scope not in SCOPES]
        if unknown or not self.scopes:
            raise ValueError(f"API key {self.name!r}: scopes must be some of {SCOPES}, got {self.scopes}")


@dataclass
class ServeConfig:
    """The HTTP server: model, network, limits, batching, live conversations, alerts, keys."""

    model_dir: str | None = field(
        default=None, metadata={"help": "Model directory, or a bundled model: default (when unset), fast."}
    )
    host: str = field(default=LOCALHOST, metadata={"help": "Address to listen on (127.0.0.1 without api_keys)."})
    port: int = field(default=8000, metadata={"help": "TCP port to listen on."})
    api_keys: list[ApiKey] = field(
        default_factory=list, metadata={"help": "API keys with scopes; none = no authentication, localhost only."}
    )
    allowed_hosts: list[str] = field(
        default_factory=list,
        metadata={
            "help": "Host names the server answers besides localhost, 127.0.0.1 and [::1] ('*.example.com': its "
            "subdomains, '*': any); empty: any host with api_keys, only those without (against DNS rebinding)."
        },
    )
    max_text_chars: int = field(default=2000, metadata={"help": "Longest accepted turn or text, in characters."})
    max_items: int = field(default=256, metadata={"help": "Most texts or conversations in one /v1/classify request."})
    max_conversation_turns: int = field(
        default=500, metadata={"help": "Most turns of one conversation in a /v1/classify request."}
    )
    max_body_bytes: int = field(default=1_048_576, metadata={"help": "Largest accepted request body, in bytes."})
    batch_max_size: int = field(
        default=32,
        metadata={
            "help": "Most turns in one model call when concurrent requests are batched (a long turn counts its "
            "windows); a /v1/classify request runs in calls of at most this many turns, after waiting live turns."
        },
    )
    batch_max_wait_ms: float = field(
        default=5.0, metadata={"help": "Longest a request waits for others to join its model call, in ms."}
    )
    torch_threads: int = field(
        default=0, metadata={"help": "CPU threads of the model runtime, PyTorch or ONNX Runtime (0 = its default)."}
    )
    backend: str = field(
        default="auto",
        metadata={"help": "Model runtime: auto (ONNX Runtime when installed, built once and cached), onnx or torch."},
    )
    idle_timeout_s: float = field(
        default=900.0, metadata={"help": "A live conversation without a new turn for this long ends (expires)."}
    )
    sweep_interval_s: float = field(default=5.0, metadata={"help": "How often idle conversations are looked for."})
    max_conversations: int = field(
        default=10_000, metadata={"help": "Most live conversations held at once; more are refused with 503."}
    )
    max_conversations_per_key: int = field(
        default=5_000,
        metadata={
            "help": "Most live conversations opened with one API key at once (0 = no limit per key; a server "
            "without keys has none), so that one client cannot take every slot."
        },
    )
    state: str = field(
        default="memory",
        metadata={
            "help": "Where live conversations and the alert stream are kept: memory (this process; a restart loses "
            "them) or a Redis URL, redis://HOST:6379/0 (shared by every server process, kept across restarts)."
        },
    )
    state_prefix: str = field(default="tonewatch", metadata={"help": "Prefix of this server's keys in Redis."})
    state_stream_length: int = field(
        default=10_000, metadata={"help": "Events kept in the Redis alert stream (about; older ones are trimmed)."}
    )
    keep_turns: int = field(default=10, metadata={"help": "Latest turns kept per live conversation for display."})
    alert: AlertPolicy = field(
        default_factory=AlertPolicy, metadata={"help": "Alert policy (thresholds default to the model's calibration)."}
    )
    escalation: EscalationPolicy = field(
        default_factory=EscalationPolicy,
        metadata={
            "help": "Escalation policy: the label guide's rules, thresholds, persistence (configs/escalation.toml)."
        },
    )
    alert_text: bool = field(
        default=True, metadata={"help": "Include the turn's text in alerts and conversation states served by the API."}
    )
    sse_queue_size: int = field(
        default=100, metadata={"help": "Events buffered per alert-stream client; older ones are dropped beyond it."}
    )
    sse_keepalive_s: float = field(default=15.0, metadata={"help": "Seconds between keep-alive comments on a stream."})
    sse_max_duration_s: float = field(
        default=3600.0,
        metadata={"help": "A stream is closed after this long; clients reconnect with Last-Event-ID and miss nothing."},
    )
    recent_events: int = field(
        default=200, metadata={"help": "Recent events kept for /v1/alerts and for stream clients that reconnect."}
    )
    log_transcripts: bool = field(
        default=False, metadata={"help": "DEBUG ONLY: write turn texts to the logs (they never are otherwise)."}
    )
    log_level: str = field(default="info", metadata={"help": "Log level: debug, info, warning or error."})
    api_docs: bool = field(
        default=True,
        metadata={
            "help": "Serve the API docs page /docs (Swagger UI) from this server's own files (no CDN); "
            "/openapi.json is served either way. With api_keys both need a read key (/docs?key=KEY in a browser)."
        },
    )

    def __post_init__(self) -> None:
        configfile.coerce_fields(self)  # types first: [[api_keys]] and [alert] tables become dataclasses here
        keys = [key.key for key in self.api_keys]
        if len(set(keys)) != len(keys):
            raise ValueError("api_keys: the same key is configured twice")
        if not self.host:
            raise ValueError("host must be a non-empty string")
        for allowed in self.allowed_hosts:
            if not HOST_PATTERN.fullmatch(allowed):
                raise ValueError(
                    f"allowed_hosts: {allowed!r} is not a host name without port, '*.example.com', '[IPv6]' or '*'"
                )
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port must be in [0, 65535], got {self.port}")
        positive = {
            "max_text_chars": self.max_text_chars,
            "max_items": self.max_items,
            "max_conversation_turns": self.max_conversation_turns,
            "max_body_bytes": self.max_body_bytes,
            "batch_max_size": self.batch_max_size,
            "max_conversations": self.max_conversations,
            "keep_turns": self.keep_turns,
            "sse_queue_size": self.sse_queue_size,
            "recent_events": self.recent_events,
            "state_stream_length": self.state_stream_length,
        }
        for name, value in positive.items():
            if value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        if not 0 <= self.batch_max_wait_ms <= 1000:
            raise ValueError(f"batch_max_wait_ms must be in [0, 1000], got {self.batch_max_wait_ms}")
        for name in ("idle_timeout_s", "sweep_interval_s", "sse_keepalive_s", "sse_max_duration_s"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.max_conversations_per_key < 0:
            raise ValueError(f"max_conversations_per_key must be >= 0, got {self.max_conversations_per_key}")
        if self.state != "memory" and not self.state.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError(f"state must be memory or a Redis URL (redis://, rediss://, unix://), not {self.state!r}")
        if not self.state_prefix or any(char.isspace() for char in self.state_prefix):
            raise ValueError(f"state_prefix must be a non-empty string without spaces, got {self.state_prefix!r}")
        if self.torch_threads < 0:
            raise ValueError(f"torch_threads must be >= 0, got {self.torch_threads}")
        if self.backend not in ("auto", "onnx", "torch"):
            raise ValueError(f"backend must be auto, onnx or torch, not {self.backend!r}")
        if self.log_level not in ("debug", "info", "warning", "error"):
            raise ValueError(f"log_level must be debug, info, warning or error, not {self.log_level!r}")

    @property
    def redis_url(self) -> str | None:
        """The Redis URL of the state store, or ``None`` when state is kept in memory."""
        return None if self.state == "memory" else self.state

    @property
    def auth_enabled(self) -> bool:
        return bool(self.api_keys)

    def bind_host(self) -> tuple[str, str | None]:
        """The address to listen on, and a notice to print when it is not the configured one."""
        if self.auth_enabled:
            return self.host, None
        names = ", ".join(["localhost", "127.0.0.1", "[::1]", *self.allowed_hosts])
        any_host = "*" in self.allowed_hosts
        addressed = "requests for any host (allowed_hosts)" if any_host else f"only requests addressed to {names}"
        if _is_loopback(self.host):
            return self.host, (
                f"no API keys configured: authentication is off; the server listens on localhost only and answers "
                f"{addressed}"
            )
        return LOCALHOST, (
            f"no API keys configured: listening on {LOCALHOST} only, not on {self.host}, and answering "
            f"{addressed}; configure api_keys to accept other hosts"
        )

    @classmethod
    def from_toml(cls, path: str | Path | None = None, **overrides: Any) -> ServeConfig:
        """Load ``path`` (TOML, its ``extends`` chain resolved; none = defaults), then apply ``overrides`` that
        are not ``None`` (command-line options); validate;
        a :class:`~tonewatch.configfile.ConfigError` names the file and key."""
        config = configfile.read_config_file(path) if path is not None else configfile.ConfigValues()
        given = {key: value for key, value in overrides.items() if value is not None}
        values = {**config.values, **given}
        origins = configfile.ConfigValues(values, {**config.origins, **dict.fromkeys(given, "command line")})
        return configfile.build(cls, values, origins=origins, source=str(path) if path is not None else None)

    def to_dict(self, redact: bool = True) -> dict[str, Any]:
        """The resolved configuration; API keys (and a password in the state URL) are redacted unless
        ``redact=False``."""
        data = dataclasses.asdict(self)
        if redact:
            for key in data["api_keys"]:
                key["key"] = "***"
            data["state"] = _redact_url(self.state)
        return data


def _redact_url(url: str) -> str:
    """``url`` without the password of its user information (``redis://:secret@host`` -> ``redis://:***@host``)."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest.split("/", 1)[0]:
        return url
    userinfo, _, host = rest.partition("@")
    user = userinfo.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}"


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
