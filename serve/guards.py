"""What every request passes before it is routed, and what user-controlled text looks like in a log line.

- **Host.** A web page on any site can make a browser send requests to ``127.0.0.1`` under the page's own host
  name (DNS rebinding). A server without API keys therefore answers only requests addressed to a loopback name
  (``localhost``, ``127.0.0.1``, ``[::1]``, any port) or to one of ``allowed_hosts``; a server with keys answers
  any host unless ``allowed_hosts`` is set. Others get a typed 421.
- **Path encoding.** Servers decode an invalid UTF-8 path (``/x%FF``) with replacement characters, so two
  different paths would name one conversation: a path whose raw bytes are not UTF-8 gets a typed 400.
- **Log lines.** :func:`log_safe` escapes what could end a log line or disguise one (a decoded ``%0A`` or ``%00``
  in a path, a newline in a queue name).
"""

from __future__ import annotations

import ipaddress
from urllib.parse import unquote_to_bytes

from starlette.types import ASGIApp, Receive, Scope, Send

from tonewatch.serve.errors import error_response

LOOPBACK_NAMES = ("localhost",)
"""Host names that always mean this machine (loopback IP addresses are recognised as such)."""


def log_safe(value: object) -> str:
    """``value`` as text for a log line: every character that is not printable (line breaks, NUL, other control
    and format characters such as bidi overrides) and the backslash written as a Python escape (``\\n``,
    ``\\x00``, ``\\u202e``, ``\\\\``), so that a logged value can neither start a forged line nor pass for one."""
    text = str(value)
    if text.isprintable() and "\\" not in text:
        return text
    return "".join(
        char if char.isprintable() and char != "\\" else char.encode("unicode_escape").decode("ascii") for char in text
    )


def host_name(host_header: str) -> str | None:
    """The host name of a ``Host`` header, lower case, without port, brackets or trailing dot; ``None`` when it is
    not ``name[:port]`` or ``[ipv6][:port]``."""
    host = host_header.strip().lower()
    if host.startswith("["):
        name, bracket, rest = host[1:].partition("]")
        if not bracket or (rest and not (rest.startswith(":") and rest[1:].isdigit())):
            return None
        return name or None
    name, colon, port = host.rpartition(":")
    if not colon:
        name = port
    elif not port.isdigit():
        return None
    name = name.rstrip(".")
    return name if name and ":" not in name else None


def is_loopback(name: str) -> bool:
    """Whether host ``name`` (as :func:`host_name` gives it) is this machine: ``localhost`` or a loopback address."""
    if name in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


class HostAllowList:
    """Which ``Host`` headers a server answers: loopback names, and ``patterns``: exact names, ``*.example.com``
    (its subdomains) or ``*`` (any host)."""

    def __init__(self, patterns: list[str] | tuple[str, ...] = ()):
        self.any_host = "*" in patterns
        self._names = frozenset(host_name(pattern) for pattern in patterns if not pattern.startswith("*"))
        self._suffixes = tuple(pattern.lower().rstrip(".")[1:] for pattern in patterns if pattern.startswith("*."))

    def allows(self, host_header: str | None) -> bool:
        if self.any_host:
            return True
        name = host_name(host_header) if host_header is not None else None
        if name is None:
            return False
        return is_loopback(name) or name in self._names or name.endswith(self._suffixes)


def is_utf8_path(raw_path: bytes) -> bool:
    """Whether ``raw_path`` (as sent, percent-encoded) decodes to valid UTF-8."""
    try:
        unquote_to_bytes(raw_path).decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


class RequestGuardMiddleware:
    """Answers 421 to a request whose ``Host`` is not allowed (when ``hosts`` is given) and 400 to one whose raw
    path is not UTF-8, before anything else reads it."""

    def __init__(self, app: ASGIApp, hosts: HostAllowList | None):
        self.app = app
        self.hosts = hosts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.hosts is not None:
            host = next((value for name, value in scope.get("headers") or () if name == b"host"), None)
            host_text = host.decode("latin-1") if host is not None else None
            if not self.hosts.allows(host_text):
                message = (
                    f"this server does not answer requests for host {host_text!r} (only localhost, 127.0.0.1, "
                    "[::1] and its allowed_hosts)"
                    if host_text is not None
                    else "a request needs a Host header"
                )
                await error_response(421, "invalid_host", message)(scope, receive, send)
                return
        raw_path = scope.get("raw_path")
        if raw_path is not None and not is_utf8_path(raw_path):
            await error_response(400, "invalid_encoding", "the path is not valid UTF-8")(scope, receive, send)
            return
        await self.app(scope, receive, send)
