"""Send Discord interactions to the real app, signed with a test Ed25519 key as Discord signs them.

After the app answers a command with a deferred response, the sender tells the fake
Discord REST API (``FakeDiscord.deferred``), as Discord would create the "thinking"
response message the app then edits.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import httpx
from nacl.signing import SigningKey

from devkit.fake_discord import APPLICATION_ID, BOT_TOKEN, GUILD_ID, FakeDiscord

# A fixed key, so a test can also sign with another one and be refused.
SIGNING_KEY = SigningKey(bytes(range(32)))
PUBLIC_KEY = SIGNING_KEY.verify_key.encode().hex()
USER = "1200000000000000001"
PATH = "/discord/interactions"


def discord_settings(fake: FakeDiscord, **overrides: Any) -> dict[str, Any]:
    """Settings overrides that point threadbox's Discord front-end at the fake."""
    return {
        "discord_application_id": APPLICATION_ID,
        "discord_public_key": PUBLIC_KEY,
        "discord_token": BOT_TOKEN,
        "discord_api_url": fake.api_url,
        "discord_update_interval": 0.3,
        **overrides,
    }


def sign(raw: bytes, stamp: str, key: SigningKey = SIGNING_KEY) -> str:
    return key.sign(stamp.encode() + raw).signature.hex()


@dataclass
class Sent:
    body: dict[str, Any]
    response: httpx.Response

    @property
    def channel(self) -> str:
        return str(self.body["channel_id"])


class DiscordSender:
    """``client`` is an API client of the ``api`` fixture; interactions go to its chat port."""

    def __init__(self, client: httpx.Client, fake: FakeDiscord, key: SigningKey = SIGNING_KEY) -> None:
        self.client = client
        self.chat: httpx.Client = client.chat  # type: ignore[attr-defined]
        self.fake = fake
        self.key = key

    def post_raw(
        self, raw: bytes, timestamp: int | None = None, signature: str | None = None
    ) -> httpx.Response:
        stamp = str(int(time.time()) if timestamp is None else timestamp)
        headers = {
            "Content-Type": "application/json",
            "X-Signature-Timestamp": stamp,
            "X-Signature-Ed25519": sign(raw, stamp, self.key) if signature is None else signature,
        }
        return self.chat.post(PATH, content=raw, headers=headers)

    def deliver(self, body: dict[str, Any]) -> httpx.Response:
        response = self.post_raw(json.dumps(body).encode())
        if response.status_code == 200 and response.json().get("type") == 5:
            self.fake.deferred(body)
        return response

    def command(
        self, name: str, text: str, channel: dict[str, Any], file: dict[str, Any] | None = None
    ) -> Sent:
        body = command_body(self.fake, name, text, channel, file)
        return Sent(body, self.deliver(body))

    def run(self, text: str, channel: dict[str, Any], file: dict[str, Any] | None = None) -> Sent:
        return self.command("run", text, channel, file)

    def ask(self, text: str, channel: dict[str, Any], file: dict[str, Any] | None = None) -> Sent:
        return self.command("ask", text, channel, file)


def command_body(
    fake: FakeDiscord, name: str, text: str, channel: dict[str, Any], file: dict[str, Any] | None = None
) -> dict[str, Any]:
    """An APPLICATION_COMMAND interaction for ``/name`` in ``channel`` (a channel object of the
    fake), with ``file`` (``FakeDiscord.add_attachment``) as its attachment option."""
    text_option = {"run": "code", "ask": "question"}.get(name)  # the chat commands take none
    options: list[dict[str, Any]] = [{"name": text_option, "type": 3, "value": text}] if text_option else []
    data: dict[str, Any] = {"id": "1400000000000000001", "name": name, "type": 1, "options": options}
    if file is not None:
        options.append({"name": "file", "type": 11, "value": file["id"]})
        data["resolved"] = {"attachments": {file["id"]: file}}
    user = {"id": USER, "username": "alice", "discriminator": "0", "avatar": None, "global_name": "Alice"}
    return {
        "id": fake.snowflake(),
        "application_id": APPLICATION_ID,
        "type": 2,
        "token": f"interaction-token-{fake.snowflake()}",
        "version": 1,
        "guild_id": GUILD_ID,
        "channel_id": channel["id"],
        "channel": channel,
        "member": {
            "user": user,
            "roles": [],
            "permissions": "2147483648",
            "joined_at": "2024-01-01T00:00:00+00:00",
        },
        "data": data,
        "app_permissions": "2147483648",
        "locale": "en-US",
        "entitlements": [],
        "authorizing_integration_owners": {"0": GUILD_ID},
        "context": 0,
    }
