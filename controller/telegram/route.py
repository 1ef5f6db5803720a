"""Webhook mode: POST /telegram/webhook on the chat port.

Telegram sends the ``secret_token`` given to setWebhook in ``X-Telegram-Bot-Api-Secret-Token``
on every request: a request without it, or with another, is answered 401 before its body
is read, and nothing runs. The body is bounded before it is read (controller/bodylimit.py,
the chat app's default limit); a body that is not an Update (a JSON object with an integer
``update_id``) is answered 400. Otherwise the update is claimed and its turn started, and
the answer is 200 at once; a 5xx (the store down) makes Telegram deliver it again.
"""

from __future__ import annotations

import hmac
import json
from typing import Any, Protocol

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from controller.metrics import Metrics

PATH = "/telegram/webhook"
SECRET_HEADER = "x-telegram-bot-api-secret-token"


class Receiver(Protocol):
    async def receive(self, update: dict[str, Any]) -> object: ...


def update_of(body: bytes) -> dict[str, Any] | None:
    try:
        update = json.loads(body)
    except ValueError:
        return None
    if not isinstance(update, dict) or type(update.get("update_id")) is not int:
        return None
    return update


def webhook_router(bot: Receiver, secret: str, metrics: Metrics) -> APIRouter:
    router = APIRouter(tags=["telegram"])

    def refuse(status: int, detail: str) -> Response:
        metrics.telegram_updates.labels("rejected").inc()
        return JSONResponse({"detail": detail}, status_code=status)

    @router.post(PATH, summary="Telegram Bot API webhook (carries the secret token).")
    async def telegram_webhook(request: Request) -> Response:
        given = request.headers.get(SECRET_HEADER, "")
        if not hmac.compare_digest(given.encode(), secret.encode()):
            return refuse(401, "Missing or wrong X-Telegram-Bot-Api-Secret-Token.")
        update = update_of(await request.body())
        if update is None:
            return refuse(400, "The request body is not a Telegram Update.")
        await bot.receive(update)
        return Response(status_code=200)

    return router
