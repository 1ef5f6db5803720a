"""HTTP Events API: POST /slack/events, verified and checked before Bolt sees it.

Events and interactivity payloads (button clicks, form-encoded ``payload=``) share the
one path. Bolt verifies signatures too, but it parses the body first and a malformed one
becomes a 500. Checking here gives 401 for a bad signature or a timestamp outside
Slack's 5-minute window, then 400 for a body that is not UTF-8, or neither a JSON object
nor a form whose ``payload`` is one.
Bolt acks at once and runs listeners afterwards, which keeps the 3-second rule;
``threadbox_slack_ack_seconds`` shows how close to it we are.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from urllib.parse import parse_qs

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from slack_bolt.adapter.fastapi.async_handler import AsyncSlackRequestHandler
from slack_bolt.async_app import AsyncApp

from controller.metrics import Metrics

PATH = "/slack/events"


WINDOW_SECONDS = 5 * 60


def signed(secret: str, body: bytes, headers: dict[str, str]) -> bool:
    """Slack's v0 signature over the raw bytes: slack_sdk's verifier decodes the body first, so a
    validly signed body that is not UTF-8 would look forged (401) instead of malformed (400)."""
    stamp, signature = headers.get("x-slack-request-timestamp", ""), headers.get("x-slack-signature", "")
    if not stamp.isdigit() or abs(time.time() - int(stamp)) > WINDOW_SECONDS:
        return False
    return hmac.compare_digest(signature_of(secret, stamp, body), signature)


def signature_of(secret: str, stamp: str, body: bytes) -> str:
    return (
        "v0=" + hmac.new(secret.encode(), b"v0:" + stamp.encode() + b":" + body, hashlib.sha256).hexdigest()
    )


def is_payload(body: bytes) -> bool:
    """A JSON object (events), or a form whose ``payload`` is one (interactivity)."""
    try:
        text = body.decode()
        if not text.lstrip().startswith("{"):
            text = parse_qs(text, strict_parsing=True)["payload"][0]
        return isinstance(json.loads(text), dict)
    except (ValueError, KeyError):
        return False


def outcome(status: int, headers: dict[str, str]) -> str:
    if status >= 500:
        return "error"
    if status >= 400:
        return "rejected"
    return "retry" if "x-slack-retry-num" in headers else "ok"


def events_router(app: AsyncApp, signing_secret: str, metrics: Metrics) -> APIRouter:
    handler = AsyncSlackRequestHandler(app)
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
        if not signed(signing_secret, body, headers):
            return JSONResponse({"detail": "Invalid Slack signature or stale timestamp."}, status_code=401)
        if not is_payload(body):
            return JSONResponse({"detail": "The request body is not a Slack payload."}, status_code=400)
        return await handler.handle(request)

    return router
