"""The API's description: the OpenAPI schema ``/openapi.json`` and the Swagger UI page ``/docs`` (``api_docs``).

With API keys both need a read key: they describe every operation, and a server with keys tells nothing to
callers without one. A browser cannot send a header when it opens a page, so ``/docs?key=KEY`` works and the page
fetches the schema with the same key. Swagger UI's files (from the fastapi-offline package) are served at
:data:`DOCS_ASSETS_URL` by ``create_app``, open like the dashboard's: no CDN, nothing specific to this server.
ReDoc is not served: its bundle fetches a logo from cdn.redoc.ly.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

from fastapi import APIRouter, Depends, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse

from tonewatch.serve.auth import QUERY_KEY_PARAMETER, require_scope

OPENAPI_URL = "/openapi.json"
DOCS_URL = "/docs"
DOCS_ASSETS_URL = "/docs/assets"
"""Where the Swagger UI files are served."""

schema_router = APIRouter(include_in_schema=False, dependencies=[Depends(require_scope("read"))])
docs_router = APIRouter(include_in_schema=False, dependencies=[Depends(require_scope("read"))])


def swagger_assets_dir() -> Path:
    """The Swagger UI files of the fastapi-offline package (imported only when the docs page is served)."""
    import fastapi_offline

    return Path(fastapi_offline.__file__).resolve().parent / "static"


@schema_router.get(OPENAPI_URL)
async def openapi_schema(request: Request) -> JSONResponse:
    return JSONResponse(request.app.openapi())


@docs_router.get(DOCS_URL)
async def swagger_ui(request: Request) -> HTMLResponse:
    root = request.scope.get("root_path", "").rstrip("/")
    schema_url = root + OPENAPI_URL
    key = request.query_params.get(QUERY_KEY_PARAMETER)
    if key and request.app.state.server.auth.enabled:  # the key this page was opened with (checked above)
        schema_url += f"?{QUERY_KEY_PARAMETER}={quote(key, safe='')}"
    page = get_swagger_ui_html(
        openapi_url=schema_url,
        title=f"{request.app.title} - Swagger UI",
        swagger_js_url=f"{root}{DOCS_ASSETS_URL}/swagger-ui-bundle.js",
        swagger_css_url=f"{root}{DOCS_ASSETS_URL}/swagger-ui.css",
        swagger_favicon_url=f"{root}{DOCS_ASSETS_URL}/favicon.png",
        oauth2_redirect_url=None,
        # No validator badge: Swagger UI would fetch it from validator.swagger.io.
        swagger_ui_parameters={"validatorUrl": None},
    )
    page.headers["Cache-Control"] = "no-store"  # it may hold the key it was opened with
    return page
