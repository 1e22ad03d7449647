"""Typed HTTP errors: every error body is ``{"error": "...", "error_type": "..."}``; bad input is never a 500."""

from __future__ import annotations

import json
import logging
import math

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

logger = logging.getLogger(__name__)

STATUS_ERROR_TYPES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    413: "body_too_large",
    415: "unsupported_media_type",
    421: "invalid_host",
    422: "validation_error",
    429: "too_many_requests",
    503: "unavailable",
}


class ApiError(Exception):
    """An error answered as ``{"error": message, "error_type": error_type}`` with ``status``."""

    def __init__(self, status: int, error_type: str, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.error_type = error_type
        self.message = message
        self.headers = headers


class SafeJSONResponse(JSONResponse):
    """JSON that never fails to encode: text that is not valid Unicode (lone surrogates echoed from a request,
    e.g. in an error message) is written as ASCII escapes instead of raising."""

    def render(self, content) -> bytes:
        try:
            return super().render(content)
        except UnicodeEncodeError:
            return json.dumps(content, ensure_ascii=True, allow_nan=False, separators=(",", ":")).encode("ascii")


def error_response(status: int, error_type: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return SafeJSONResponse({"error": message, "error_type": error_type}, status_code=status, headers=headers)


def is_clean_json(value, depth: int = 0) -> bool:
    """Whether ``value`` (parsed JSON) holds only text encodable as UTF-8 and finite numbers.

    Python's JSON parser accepts lone surrogate escapes and NaN/Infinity; echoing either back would fail.
    """
    if depth > 64:
        return False
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return False
        return True
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(is_clean_json(key, depth + 1) and is_clean_json(item, depth + 1) for key, item in value.items())
    if isinstance(value, list):
        return all(is_clean_json(item, depth + 1) for item in value)
    return True


def _location(loc) -> str:
    parts = [str(part) for part in loc if part not in ("body",)]
    return ".".join(parts) or "body"


def validation_error_response(errors: list[dict], json_content: bool = True) -> JSONResponse:
    """One typed 4xx for FastAPI's request validation errors, with the first problem spelled out."""
    first = errors[0] if errors else {"type": "", "loc": (), "msg": "invalid request"}
    kind, loc = first.get("type", ""), tuple(first.get("loc", ()))
    where = _location(loc)
    if kind == "json_invalid":
        detail = (first.get("ctx") or {}).get("error", "")
        return error_response(400, "invalid_json", f"the body is not valid JSON: {detail}".rstrip(": "))
    if kind == "missing" and loc == ("body",):
        return error_response(422, "missing_body", "the request needs a JSON body")
    if kind == "model_attributes_type" and loc == ("body",) and not json_content:
        return error_response(
            415, "unsupported_media_type", "send the body as JSON with 'Content-Type: application/json'"
        )
    if loc[-1:] == ("speaker",) and kind in ("literal_error", "enum"):
        return error_response(422, "unknown_speaker", f"{where}: speaker must be 'customer' or 'agent'")
    if loc[-1:] == ("lang",) and kind in ("literal_error", "enum"):
        return error_response(422, "unknown_lang", f"{where}: lang must be 'zh' or 'ru'")
    if loc[-1:] in (("queue",), ("team",)) and kind == "value_error" and loc[:1] == ("body",):
        reason = (first.get("ctx") or {}).get("error") or first.get("msg", "invalid text")
        return error_response(422, "invalid_text", f"{where}: {reason}")
    if kind == "extra_forbidden":
        return error_response(422, "unknown_field", f"{where}: unknown field")
    message = first.get("msg", "invalid request")
    more = f" (and {len(errors) - 1} more problems)" if len(errors) > 1 else ""
    return error_response(422, "validation_error", f"{where}: {message}{more}")


def install_error_handlers(app: FastAPI) -> None:
    """Replace FastAPI's default error bodies with typed ones."""

    @app.exception_handler(ApiError)
    async def api_error(request: Request, error: ApiError) -> JSONResponse:
        return error_response(error.status, error.error_type, error.message, error.headers)

    @app.exception_handler(RequestValidationError)
    async def request_validation_error(request: Request, error: RequestValidationError) -> JSONResponse:
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        json_content = content_type == "application/json" or content_type.endswith("+json")
        return validation_error_response(list(error.errors()), json_content)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        # FastAPI turns any failure to read the body into a bare 400; say which one it was.
        cause = error.__cause__
        if isinstance(cause, _BodyTooLargeError):
            return error_response(413, "body_too_large", str(cause))
        if isinstance(cause, UnicodeDecodeError):
            return error_response(400, "invalid_encoding", "the body is not valid UTF-8")
        if isinstance(cause, RecursionError):
            return error_response(400, "invalid_json", "the body is nested too deeply")
        if error.status_code == 400 and cause is not None:
            return error_response(400, "invalid_body", "the body could not be read as JSON")
        message = error.detail if isinstance(error.detail, str) else "request failed"
        error_type = STATUS_ERROR_TYPES.get(error.status_code, "http_error")
        if error.status_code == 404 and message == "Not Found":
            message = f"no such endpoint: {request.method} {request.url.path}"
        return error_response(error.status_code, error_type, message, getattr(error, "headers", None))

    @app.exception_handler(UnicodeDecodeError)
    async def unicode_error(request: Request, error: UnicodeDecodeError) -> JSONResponse:
        return error_response(400, "invalid_encoding", "the body is not valid UTF-8")

    @app.exception_handler(json.JSONDecodeError)
    async def json_error(request: Request, error: json.JSONDecodeError) -> JSONResponse:
        return error_response(400, "invalid_json", f"the body is not valid JSON: {error.msg}")

    @app.exception_handler(Exception)
    async def unexpected_error(request: Request, error: Exception) -> JSONResponse:
        # A bug, not bad input: logged with its traceback (no request body, so no transcript), answered typed.
        logger.exception("unhandled error on %s %r", request.method, request.url.path)  # %r: no forged lines
        return error_response(500, "internal_error", "internal server error")


class BodyLimitMiddleware:
    """Answers 413 to a request body over ``max_bytes`` (by Content-Length, or while it streams in)."""

    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None:
            try:
                too_large = int(length) > self.max_bytes
            except ValueError:
                await self._reject(scope, receive, send, 400, "bad_request", "invalid Content-Length header")
                return
            if too_large:
                await self._reject(scope, receive, send, 413, "body_too_large", self._message())
                return
        received = 0
        started = {"response": False}

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise _BodyTooLargeError(self._message())
            return message

        async def tracking_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                started["response"] = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _BodyTooLargeError:  # read outside FastAPI's body parsing (which answers 413 itself, above)
            if not started["response"]:
                await error_response(413, "body_too_large", self._message())(scope, receive, send)

    def _message(self) -> str:
        return f"the request body is over {self.max_bytes} bytes"

    async def _reject(self, scope: Scope, receive: Receive, send: Send, status: int, error_type: str, message: str):
        await error_response(status, error_type, message)(scope, receive, send)


class _BodyTooLargeError(Exception):
    pass
