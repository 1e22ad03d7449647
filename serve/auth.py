"""API keys with scopes: 401 without a (valid) key, 403 with a key that lacks the scope.

A key is sent as ``Authorization: Bearer KEY`` or ``X-API-Key: KEY``. A
browser's EventSource cannot set headers, so read-only GET requests may also
pass it as ``?key=KEY`` (the server's own access log never shows query strings).
"""

from __future__ import annotations

import hmac

from fastapi import Request

from tonewatch.serve.config import ApiKey
from tonewatch.serve.errors import ApiError

QUERY_KEY_PARAMETER = "key"


class Authenticator:
    """Checks a request's key against the configured ones; everything is allowed when none are configured."""

    def __init__(self, keys: list[ApiKey]):
        self._keys = [(key.key.encode(), frozenset(key.scopes), key.name) for key in keys]

    @property
    def enabled(self) -> bool:
        return bool(self._keys)

    def require(self, request: Request, *scopes: str) -> str | None:
        """The name of the key of ``request`` when it has one of ``scopes``; else a 401 or 403 :class:`ApiError`."""
        if not self._keys:
            return None
        read_only = set(scopes) == {"read"} and request.method in ("GET", "HEAD")
        presented = self._presented_key(request, allow_query=read_only)
        if presented is None:
            raise ApiError(
                401,
                "unauthorized",
                "an API key is required: 'Authorization: Bearer KEY' or 'X-API-Key: KEY'",
                headers={"WWW-Authenticate": "Bearer"},
            )
        matched = None
        for key, key_scopes, name in self._keys:
            # Compare with every key in constant time: no early exit that times which key matched.
            if hmac.compare_digest(key, presented):
                matched = (key_scopes, name)
        if matched is None:
            raise ApiError(401, "unauthorized", "invalid API key", headers={"WWW-Authenticate": "Bearer"})
        granted, name = matched
        if not granted & set(scopes):
            wanted = " or ".join(f"'{scope}'" for scope in scopes)
            raise ApiError(403, "forbidden", f"this API key lacks the {wanted} scope")
        return name

    @staticmethod
    def _presented_key(request: Request, allow_query: bool) -> bytes | None:
        authorization = request.headers.get("authorization")
        if authorization:
            kind, _, value = authorization.partition(" ")
            if kind.lower() == "bearer" and value.strip():
                return value.strip().encode("utf-8", "surrogateescape")
        header = request.headers.get("x-api-key")
        if header:
            return header.strip().encode("utf-8", "surrogateescape")
        if allow_query:
            value = request.query_params.get(QUERY_KEY_PARAMETER)
            if value:
                return value.encode("utf-8", "surrogateescape")
        return None
