"""POST /discord/interactions: Discord's HTTP interactions, verified before anything is read.

The body is bounded by the chat app's limit (controller/bodylimit.py) before it is read.
A missing or bad Ed25519 signature, or a stale timestamp, answers 401 and does nothing
else; a body that is not a JSON interaction answers 400. PING answers PONG (Discord checks
the endpoint with it). ``/run`` and ``/ask`` answer "deferred" at once (Discord waits three
seconds at most) and the turn runs afterwards, editing the response and posting in its thread.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from controller.discord.front import DiscordFront
from controller.discord.interactions import (
    APPLICATION_COMMAND,
    DEFERRED_CHANNEL_MESSAGE,
    PING,
    PONG,
    NotAnInteraction,
    kind,
    parse_command,
)
from controller.discord.verify import Verifier
from controller.metrics import Metrics

PATH = "/discord/interactions"
CHANNEL_MESSAGE, EPHEMERAL = 4, 1 << 6
UNKNOWN = (
    "threadbox knows `/run <code>`, `/ask <question>`, `/fork`, `/forget` and `/upgrade`;"
    " re-register its commands if you see this."
)


def interactions_router(verifier: Verifier, front: DiscordFront, metrics: Metrics) -> APIRouter:
    router = APIRouter(tags=["discord"])

    @router.post(PATH, summary="Discord interactions endpoint (signed by Discord).")
    async def discord_interactions(request: Request) -> Response:
        outcome, response = await _answer(await request.body(), request.headers)
        metrics.discord_interactions.labels(outcome).inc()
        return response

    async def _answer(body: bytes, headers: Mapping[str, str]) -> tuple[str, Response]:
        if not verifier.verified(body, headers):
            return "rejected", _refuse(401, "Invalid Discord signature or stale timestamp.")
        try:
            payload = _payload(body)
            if kind(payload) == PING:
                return "ping", JSONResponse({"type": PONG})
            if kind(payload) != APPLICATION_COMMAND:
                return "rejected", _refuse(400, "threadbox takes application commands only.")
            command = parse_command(payload)
        except NotAnInteraction as exc:
            return "rejected", _refuse(400, str(exc))
        if command is None:
            return "unknown", JSONResponse(
                {"type": CHANNEL_MESSAGE, "data": {"content": UNKNOWN, "flags": EPHEMERAL}}
            )
        taken = await front.receive(command)  # a duplicate is answered the same, and runs nothing
        return "answered" if taken else "duplicate", JSONResponse({"type": DEFERRED_CHANNEL_MESSAGE})

    return router


def _payload(body: bytes) -> dict[str, Any]:
    try:
        payload = json.loads(body)
    except ValueError as exc:  # UnicodeDecodeError included
        raise NotAnInteraction("The request body is not JSON.") from exc
    if not isinstance(payload, dict):
        raise NotAnInteraction("The request body is not a JSON object.")
    return payload


def _refuse(status: int, detail: str) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status)
