"""Pure parts of the Discord front-end: signatures, interaction parsing, layout, settings."""

from __future__ import annotations

from typing import Any

import pytest
from nacl.signing import SigningKey
from pydantic import SecretStr, ValidationError

from controller.chat.commands import command as chat_command
from controller.config import Settings
from controller.discord.config import DiscordConfig
from controller.discord.interactions import (
    Command,
    NotAnInteraction,
    echo,
    kind,
    parse_command,
    thread_name,
    turn_text,
)
from controller.discord.layout import LIMIT, OVERFLOW_NOTE, batches, layout
from controller.discord.verify import WINDOW_SECONDS, Verifier
from devkit.discord_interactions import PUBLIC_KEY, SIGNING_KEY, command_body, sign
from devkit.fake_discord import GUILD_ID, FakeDiscord

NOW = 1_800_000_000


def headers(raw: bytes, stamp: int = NOW, key: SigningKey = SIGNING_KEY) -> dict[str, str]:
    return {"x-signature-timestamp": str(stamp), "x-signature-ed25519": sign(raw, str(stamp), key)}


def test_a_signature_verifies_only_for_its_body_key_and_a_fresh_timestamp() -> None:
    verifier = Verifier(PUBLIC_KEY)
    raw = b'{"type": 1}'
    assert verifier.verified(raw, headers(raw), now=NOW)
    assert not verifier.verified(raw + b" ", headers(raw), now=NOW)  # another body
    assert not verifier.verified(raw, headers(raw, key=SigningKey(bytes(32))), now=NOW)  # another key
    assert not verifier.verified(raw, headers(raw), now=NOW + WINDOW_SECONDS + 1)  # replayed later
    assert not verifier.verified(raw, {}, now=NOW)
    assert not verifier.verified(
        raw, {"x-signature-timestamp": str(NOW), "x-signature-ed25519": "zz"}, now=NOW
    )
    assert not verifier.verified(raw, {"x-signature-timestamp": "soon", "x-signature-ed25519": "00"}, now=NOW)


def command(name: str, text: str, channel: dict[str, Any], **extra: Any) -> Command:
    fake = FakeDiscord()
    file = fake.add_attachment("data.csv", b"a,b\n1,2\n") if extra.pop("file", False) else None
    parsed = parse_command(command_body(fake, name, text, channel, file) | extra)
    assert parsed is not None
    return parsed


def test_a_command_in_a_text_channel_opens_a_thread_keyed_by_it() -> None:
    parsed = command("run", " print(1) ", {"id": "10", "type": 0}, file=True)
    assert (parsed.name, parsed.text, parsed.channel, parsed.guild) == ("run", "print(1)", "10", GUILD_ID)
    assert parsed.needs_thread and not parsed.in_thread
    assert [(a.filename, a.size) for a in parsed.attachments] == [("data.csv", 8)]
    assert parsed.key("20").thread == "20" and parsed.key("20").channel == "10"
    assert parsed.claim == f"discord-interaction/{parsed.id}"


def test_a_command_in_a_thread_continues_the_key_the_thread_was_opened_with() -> None:
    opened = command("ask", "hi", {"id": "10", "type": 0}).key("20")
    inside = command("ask", "again", {"id": "20", "type": 11, "parent_id": "10"})
    assert inside.in_thread and not inside.needs_thread
    assert inside.key(inside.channel) == opened


def test_a_dm_is_one_conversation_and_its_user_comes_from_user() -> None:
    parsed = command("ask", "hi", {"id": "30", "type": 1}, guild_id=None, member=None, user={"id": "7"})
    assert not parsed.needs_thread and parsed.user == "7"
    assert parsed.key("30").workspace == "@me"


def test_unknown_commands_are_none_and_broken_ones_are_refused() -> None:
    unknown = command_body(FakeDiscord(), "run", "x", {"id": "1", "type": 0})
    unknown["data"]["name"] = "weather"
    assert parse_command(unknown) is None
    with pytest.raises(NotAnInteraction):
        parse_command({"type": 2, "data": {"name": "run"}, "channel": {}})  # no id, token, channel_id
    with pytest.raises(NotAnInteraction):
        parse_command({"type": 2, "data": "run"})
    with pytest.raises(NotAnInteraction):
        kind({"type": "1"})


def test_run_code_is_fenced_once_and_the_echo_and_thread_name_fit_discord() -> None:
    channel = {"id": "1", "type": 0}
    assert turn_text(command("run", "print(1)", channel)) == "```python\nprint(1)\n```"
    assert turn_text(command("run", "```py\nprint(1)\n```", channel)) == "```py\nprint(1)\n```"
    assert turn_text(command("ask", "why?", channel)) == "why?"
    long = command("ask", "\n  " + "q" * 3000, channel)
    assert len(echo(long)) <= LIMIT and thread_name(long) == "q" * 100
    assert thread_name(command("run", "   ", channel)) == "/run"


def test_fork_forget_and_upgrade_take_no_text_and_are_said_as_the_chat_commands() -> None:
    inside = {"id": "20", "type": 11, "parent_id": "10"}
    for name in ("fork", "forget", "upgrade"):
        parsed = command(name, "", inside)
        assert parsed.acts_on_thread and (parsed.text, turn_text(parsed)) == ("", f"/{name}")
        assert chat_command(turn_text(parsed)) == name
        assert echo(parsed) == f"**/{name}** from <@{parsed.user}>"
    assert command("fork", "", {"id": "10", "type": 0}).needs_thread  # the front-end says where it works
    assert not command("run", "x", inside).acts_on_thread


def test_layout_keeps_messages_under_2000_with_balanced_fences_and_says_when_it_overflows() -> None:
    text = "```\n" + "\n".join(f"line {i:04d} " + "x" * 60 for i in range(60)) + "\n```"
    plan = layout(text)
    assert not plan.overflow and len(plan.messages) == 3
    assert all(len(m) <= LIMIT and m.count("```") % 2 == 0 for m in plan.messages)
    huge = layout("y" * 100 + "\n" + "z" * (LIMIT * 10))
    assert huge.overflow and huge.messages[-1] == OVERFLOW_NOTE and len(huge.messages) == 4


def test_files_are_batched_ten_per_message_within_the_upload_limit() -> None:
    small = [(f"f{i}", b"x") for i in range(12)]
    assert [len(b) for b in batches(small, 100)] == [10, 2]
    big = [("a", b"x" * 60), ("b", b"x" * 60), ("c", b"x" * 30)]
    assert [[n for n, _ in b] for b in batches(big, 100)] == [["a"], ["b", "c"]]


def test_discord_needs_all_three_credentials_or_none_and_a_real_key() -> None:
    assert not Settings().discord_enabled
    with pytest.raises(ValidationError, match="THREADBOX_DISCORD_TOKEN"):
        Settings(discord_application_id="1", discord_public_key=PUBLIC_KEY)
    with pytest.raises(ValidationError, match="64 hex digits"):
        Settings(discord_application_id="1", discord_public_key="abc", discord_token=SecretStr("t"))
    settings = Settings(
        discord_application_id="1",
        discord_public_key=PUBLIC_KEY,
        discord_token=SecretStr("t"),
        discord_api_url="http://x/v10/",
    )
    config = DiscordConfig.from_settings(settings)
    assert settings.discord_enabled and (config.token, config.api_url) == ("t", "http://x/v10")
