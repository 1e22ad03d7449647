"""The supervisor dashboard: one page and its static files (``/static``), no external resources.

The page itself is open; it asks for a read key and sends it with every call it makes.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse, HTMLResponse

from tonewatch.serve.schemas import error_responses

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
"""The dashboard's files, mounted at ``/static`` by ``create_app``."""

router = APIRouter(tags=["dashboard"])


@router.get(
    "/",
    response_class=HTMLResponse,
    responses={200: {"description": "The supervisor dashboard (an HTML page)."}, **error_responses(json_route=False)},
)
async def dashboard() -> FileResponse:
    """The supervisor dashboard: live conversations riskiest first, alerts as they happen."""
    return FileResponse(STATIC_DIR / "index.html", media_type="text/html")
