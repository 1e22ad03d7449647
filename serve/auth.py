"""API keys with scopes: 401 without a (valid) key, 403 with a key that lacks the scope.

A key is sent as ``Authorization: Bearer KEY`` or ``X-API-Key: KEY``. A
browser's EventSource cannot set headers, so read-only GET requests may also
pass it as ``?key=KEY`` (the server's own access log never shows query strings).

Routes declare what they need with ``dependencies=[Depends(require_scope("write"))]``;
the dependency reads the key through FastAPI's security schemes, so the
OpenAPI schema shows them (``bearer``, ``apiKey``, and ``apiKeyQuery`` on
read-only GET operations). With no keys configured everything is allowed.
The access log names the key a request presented (:data:`KEY_STATE`), never the key itself.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Request, Security
from fastapi.security import APIKeyHeader, APIKeyQuery, HTTPAuthorizationCredentials, HTTPBearer

from tonewatch.serve.config import SCOPES, ApiKey
from tonewatch.serve.errors import ApiError

QUERY_KEY_PARAMETER = "key"

# auto_error=False: a missing key is not an error of the scheme; the Authenticator decides (401 only when keys are
# configured, and with the project's typed error body).
BEARER = HTTPBearer(
    scheme_name="bearer", auto_error=False, description="An API key sent as `Authorization: Bearer KEY`."
)
API_KEY_HEADER = APIKeyHeader(
    name="X-API-Key", scheme_name="apiKey", auto_error=False, description="An API key sent as `X-API-Key: KEY`."
)
API_KEY_QUERY = APIKeyQuery(
    name=QUERY_KEY_PARAMETER,
    scheme_name="apiKeyQuery",
    auto_error=False,
    description="A read key as `?key=KEY`, for read-only GET requests only (a browser's EventSource cannot set "
    "headers).",
)

BearerKey = Annotated[HTTPAuthorizationCredentials | None, Security(BEARER)]
HeaderKey = Annotated[str | None, Security(API_KEY_HEADER)]
QueryKey = Annotated[str | None, Security(API_KEY_QUERY)]


@dataclass(frozen=True)
class KeyHolder:
    """Who a configured key belongs to: its ``name``, the ``label`` the access log shows (the name, or ``#N`` for
    the N-th key of ``api_keys`` when it has none) and its ``scopes``."""

    name: str
    label: str
    scopes: frozenset[str]


class Authenticator:
    """Checks a presented key against the configured ones; everything is allowed when none are configured."""

    def __init__(self, keys: list[ApiKey]):
        self._keys = [
            (key.key.encode(), KeyHolder(key.name, key.name or f"#{number}", frozenset(key.scopes)))
            for number, key in enumerate(keys, start=1)
        ]

    @property
    def enabled(self) -> bool:
        return bool(self._keys)

    def identify(self, presented: str | None) -> KeyHolder | None:
        """The holder of the key ``presented``; ``None`` when no keys are configured; else a 401 :class:`ApiError`."""
        if not self._keys:
            return None
        if not presented:
            raise ApiError(
                401,
                "unauthorized",
                "an API key is required: 'Authorization: Bearer KEY' or 'X-API-Key: KEY'",
                headers={"WWW-Authenticate": "Bearer"},
            )
        presented_bytes = presented.encode("utf-8", "surrogateescape")
        matched = None
        for key, holder in self._keys:
            # Compare with every key in constant time: no early exit that times which key matched.
            if hmac.compare_digest(key, presented_bytes):
                matched = holder
        if matched is None:
            raise ApiError(401, "unauthorized", "invalid API key", headers={"WWW-Authenticate": "Bearer"})
        return matched

    @staticmethod
    def authorize(holder: KeyHolder | None, scopes: tuple[str, ...]) -> str | None:
        """The name of ``holder``'s key when it has one of ``scopes`` (``None`` without keys); else a 403."""
        if holder is None:
            return None
        if not holder.scopes & set(scopes):
            wanted = " or ".join(f"'{scope}'" for scope in scopes)
            raise ApiError(403, "forbidden", f"this API key lacks the {wanted} scope")
        return holder.name

    def check(self, presented: str | None, scopes: tuple[str, ...]) -> str | None:
        """The name of the key ``presented`` when it has one of ``scopes``; else a 401 or 403 :class:`ApiError`."""
        return self.authorize(self.identify(presented), scopes)


def presented_key(bearer: HTTPAuthorizationCredentials | None, header: str | None, query: str | None) -> str | None:
    """The key a request presents: the bearer token, else ``X-API-Key``, else ``?key=`` (when allowed)."""
    for value in (bearer.credentials if bearer else None, header):
        if value and value.strip():
            return value.strip()
    return query or None


def require_scope(*scopes: str) -> Callable[..., Awaitable[str | None]]:
    """A dependency that lets a request through when its key has one of ``scopes``; 401/403 otherwise.

    Its value is the name of the key (``None`` without keys). Only ``require_scope("read")`` accepts the key in
    the query string, and only on GET and HEAD requests.
    """
    unknown = [scope for scope in scopes if scope not in SCOPES]
    if not scopes or unknown:
        raise ValueError(f"scopes must be some of {SCOPES}, got {scopes}")

    if set(scopes) == {"read"}:

        async def read_key(request: Request, bearer: BearerKey, header: HeaderKey, query: QueryKey) -> str | None:
            query = query if request.method in ("GET", "HEAD") else None
            return _check(request, presented_key(bearer, header, query), scopes)

        return read_key

    async def api_key(request: Request, bearer: BearerKey, header: HeaderKey) -> str | None:
        return _check(request, presented_key(bearer, header, None), scopes)

    return api_key


KEY_STATE = "api_key"
"""Where a request's state keeps the label of the key it presented (the access log names it)."""


def _check(request: Request, presented: str | None, scopes: tuple[str, ...]) -> str | None:
    authenticator: Authenticator = request.app.state.server.auth
    holder = authenticator.identify(presented)
    if holder is not None:  # named in the access log, also when the scope is missing (403)
        setattr(request.state, KEY_STATE, holder.label)
    return authenticator.authorize(holder, scopes)
