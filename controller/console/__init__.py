"""The web console: plain HTML, CSS and JS served by the controller, with no build step.

Assets come from an allow-list read at startup rather than a path joined from the
URL, so no request can reach a file outside ``static/``.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse

STATIC = Path(__file__).resolve().parent / "static"

# Kernel HTML is shown in sandboxed iframes; inline styles are allowed because pandas
# tables carry them, while scripts may only come from this server.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    # Revalidate every load so an upgraded threadbox never runs a stale console.
    "Cache-Control": "no-cache",
}
TYPES = {".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml", ".html": "text/html"}


def _asset(path: Path) -> FileResponse:
    return FileResponse(path, media_type=TYPES.get(path.suffix), headers=HEADERS)


def router() -> APIRouter:
    assets = {p.name: p for p in STATIC.iterdir() if p.is_file() and p.name != "index.html"}
    r = APIRouter(include_in_schema=False)

    @r.get("/")
    async def index() -> FileResponse:
        return _asset(STATIC / "index.html")

    @r.get("/console/{name}")
    async def asset(name: str) -> FileResponse:
        if name not in assets:
            raise HTTPException(404, f"No console asset {name!r}.")
        return _asset(assets[name])

    return r
