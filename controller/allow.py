"""A 405's ``Allow`` header names every method of its path.

Starlette answers a method no route of the path takes from the first route that matched the
path alone, so ``OPTIONS /threads`` said ``Allow: GET`` although ``POST /threads`` exists."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.routing import Match


def install(app: FastAPI) -> None:
    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        if exc.status_code == 405:
            exc.headers = {**(exc.headers or {}), "Allow": ", ".join(sorted(_methods(app, request)))}
        return await http_exception_handler(request, exc)


def _methods(app: FastAPI, request: Request) -> set[str]:
    found: set[str] = set()
    for route in app.router.routes:
        match, _ = route.matches(request.scope)
        found |= (getattr(route, "methods", None) or set()) if match != Match.NONE else set()
    return found
