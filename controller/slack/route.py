"""HTTP Events API: POST /slack/events, verified and checked before Bolt sees it.

Bolt verifies signatures too, but it parses the body first and a malformed one
becomes a 500. Checking here gives 401 for a bad signature or a timestamp
outside Slack's 5-minute window, then 400 for a body that is not a JSON object.
Bolt acks at once and runs listeners afterwards, which keeps the 3-second rule;
``threadbox_slack_ack_seconds`` shows how close to it we are.
"""

from __future__ import annotations

import json
import time

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from slack_bolt.adapter.fastapi.async_handler import AsyncSlackRequestHandler
from slack_bolt.async_app import AsyncApp
from slack_sdk.signature import SignatureVerifier

from controller.metrics import Metrics

PATH = "/slack/events"


def signed(verifier: SignatureVerifier, body: bytes, headers: dict[str, str]) -> bool:
    try:
        return verifier.is_valid_request(body, headers)
    except ValueError:  # a timestamp that is not a number
        return False


def is_json_object(body: bytes) -> bool:
    try:
        return isinstance(json.loads(body), dict)
    except ValueError:
        return False


def outcome(status: int, headers: dict[str, str]) -> str:
    if status >= 500:
        return "error"
    if status >= 400:
        return "rejected"
    return "retry" if "x-slack-retry-num" in headers else "ok"


def events_router(app: AsyncApp, signing_secret: str, metrics: Metrics) -> APIRouter:
    handler = AsyncSlackRequestHandler(app)
    verifier = SignatureVerifier(signing_secret)
    router = APIRouter(tags=["slack"])

    @router.post(PATH, summary="Slack Events API endpoint (signed by Slack).")
    async def slack_events(request: Request) -> Response:
        started = time.perf_counter()
        headers = dict(request.headers)
        response = await _answer(request, headers)
        metrics.slack_acks.labels(outcome(response.status_code, headers)).inc()
        metrics.slack_ack_seconds.observe(time.perf_counter() - started)
        return response

    async def _answer(request: Request, headers: dict[str, str]) -> Response:
        body = await request.body()
        if not signed(verifier, body, headers):
            return JSONResponse({"detail": "Invalid Slack signature or stale timestamp."}, status_code=401)
        if not is_json_object(body):
            return JSONResponse({"detail": "The request body is not a JSON object."}, status_code=400)
        return await handler.handle(request)

    return router
