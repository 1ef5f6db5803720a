"""The app manifests in docs/slack.md: valid against Slack's manifest schema, and enough for
what threadbox does (DMs, the agent view, buttons, the events it handles)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from controller.slack.route import PATH

DOCS = Path(__file__).resolve().parents[2] / "docs" / "slack.md"

_BOOL = {"type": "boolean"}
_STRINGS = {"type": "array", "items": {"type": "string"}, "uniqueItems": True}
_PROMPTS = {
    "type": "array",
    "maxItems": 4,
    "items": {
        "type": "object",
        "required": ["title", "message"],
        "additionalProperties": False,
        "properties": {"title": {"type": "string"}, "message": {"type": "string"}},
    },
}


def _object(properties: dict[str, Any], required: tuple[str, ...] = ()) -> dict[str, Any]:
    return {
        "type": "object",
        "additionalProperties": False,
        "required": list(required),
        "properties": properties,
    }


# The part of Slack's published app manifest schema that the documented manifests use
# (https://docs.slack.dev/reference/app-manifest), closed with additionalProperties so a typo
# or a misplaced key fails as it does when Slack validates the manifest.
MANIFEST_SCHEMA = _object(
    {
        "_metadata": _object({"major_version": {"type": "integer"}, "minor_version": {"type": "integer"}}),
        "display_information": _object(
            {
                "name": {"type": "string", "minLength": 1, "maxLength": 35},
                "description": {"type": "string", "maxLength": 140},
                "long_description": {"type": "string", "minLength": 175, "maxLength": 4000},
                "background_color": {"type": "string", "pattern": "^#[0-9a-fA-F]{6}$"},
            },
            ("name",),
        ),
        "features": _object(
            {
                "app_home": _object(
                    {
                        "home_tab_enabled": _BOOL,
                        "messages_tab_enabled": _BOOL,
                        "messages_tab_read_only_enabled": _BOOL,
                    }
                ),
                "bot_user": _object(
                    {
                        "display_name": {"type": "string", "minLength": 1, "maxLength": 80},
                        "always_online": _BOOL,
                    },
                    ("display_name",),
                ),
                "agent_view": _object(
                    {"agent_description": {"type": "string", "maxLength": 300}, "suggested_prompts": _PROMPTS}
                ),
                "assistant_view": _object(
                    {"assistant_description": {"type": "string"}, "suggested_prompts": _PROMPTS},
                    ("assistant_description",),
                ),
            }
        ),
        "oauth_config": _object(
            {
                "redirect_urls": {**_STRINGS, "maxItems": 1000},
                "scopes": _object(
                    {"bot": {**_STRINGS, "maxItems": 255}, "user": {**_STRINGS, "maxItems": 255}}
                ),
                "token_management_enabled": _BOOL,
            }
        ),
        "settings": _object(
            {
                "allowed_ip_address_ranges": _STRINGS,
                "event_subscriptions": _object(
                    {
                        "request_url": {"type": "string", "pattern": "^https://"},
                        "bot_events": {**_STRINGS, "maxItems": 100},
                        "user_events": {**_STRINGS, "maxItems": 100},
                    }
                ),
                "interactivity": _object(
                    {
                        "is_enabled": _BOOL,
                        "request_url": {"type": "string", "pattern": "^https://"},
                        "message_menu_options_url": {"type": "string", "pattern": "^https://"},
                    },
                    ("is_enabled",),
                ),
                "org_deploy_enabled": _BOOL,
                "socket_mode_enabled": _BOOL,
                "token_rotation_enabled": _BOOL,
                "is_hosted": _BOOL,
            }
        ),
    },
    ("display_information",),
)

# Each event threadbox handles, and the scope Slack wants for it (None: no scope).
EVENT_SCOPES = {
    "app_home_opened": None,
    "app_mention": "app_mentions:read",
    "message.channels": "channels:history",
    "message.groups": "groups:history",
    "message.im": "im:history",
    "message.mpim": "mpim:history",
}


def manifests() -> list[dict[str, Any]]:
    blocks = re.findall(r"^```yaml\n(.*?)^```", DOCS.read_text(), re.DOTALL | re.MULTILINE)
    return [yaml.safe_load(block) for block in blocks if "display_information" in block]


def test_docs_have_both_manifests() -> None:
    modes = [m["settings"]["socket_mode_enabled"] for m in manifests()]
    assert modes == [True, False]


def test_the_schema_catches_what_slack_refuses() -> None:
    broken = {"display_information": {"name": "x" * 36}, "features": {"app_home": {"messages_tab": True}}}
    errors = list(jsonschema.Draft7Validator(MANIFEST_SCHEMA).iter_errors(broken))
    assert {e.validator for e in errors} == {"maxLength", "additionalProperties"}


@pytest.mark.parametrize("manifest", manifests(), ids=["socket", "http"])
def test_manifest_is_valid_and_complete(manifest: dict[str, Any]) -> None:
    jsonschema.validate(manifest, MANIFEST_SCHEMA)
    home, settings = manifest["features"]["app_home"], manifest["settings"]
    # Without these Slack tells a DM-ing user "Sending messages to this app has been turned off".
    assert home["messages_tab_enabled"] is True and home["messages_tab_read_only_enabled"] is False
    assert manifest["features"]["agent_view"]["suggested_prompts"]
    assert settings["interactivity"]["is_enabled"] is True  # Stop and feedback buttons
    events = settings["event_subscriptions"]["bot_events"]
    assert set(events) == set(EVENT_SCOPES)
    scopes = set(manifest["oauth_config"]["scopes"]["bot"])
    assert {s for s in EVENT_SCOPES.values() if s} | {"chat:write", "files:read", "files:write"} <= scopes
    if not settings["socket_mode_enabled"]:
        for url in (settings["event_subscriptions"]["request_url"], settings["interactivity"]["request_url"]):
            assert url.endswith(PATH)
