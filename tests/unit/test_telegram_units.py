"""The Telegram front-end's pure parts: which updates are messages, their text, where they
belong (reply chains in a store), page splits, webhook bodies and settings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from controller.config import Settings
from controller.identity import ThreadKey
from controller.stores.local import LocalStore
from controller.telegram.chains import Chains, segment
from controller.telegram.inbound import Me, TgMessage, parse, rebuild
from controller.telegram.reply import PAGE, pages
from controller.telegram.route import update_of

ME = Me(7000001, "threadbox_bot")


def update(text: str = "hi", entities: list[dict[str, Any]] | None = None, **message: Any) -> dict[str, Any]:
    base = {"message_id": 5, "date": 0, "chat": {"id": -100, "type": "supergroup"}, "from": {"id": 42}}
    return {"update_id": 9, "message": base | {"text": text, "entities": entities or []} | message}


def entity(kind: str, text: str, piece: str, at: int = 0, **extra: Any) -> dict[str, Any]:
    """An entity over ``piece`` (found from ``at``) in ``text``, in UTF-16 code units as
    Telegram counts them."""
    start = text.index(piece, at)
    offset = len(text[:start].encode("utf-16-le")) // 2
    return {"type": kind, "offset": offset, "length": len(piece.encode("utf-16-le")) // 2, **extra}


def test_code_comes_back_fenced_and_the_mention_and_command_go() -> None:
    text = "/new@threadbox_bot 📈 @threadbox_bot plot it\nimport this"
    entities = [
        entity("bot_command", text, "/new@threadbox_bot"),
        entity("mention", text, "@threadbox_bot", at=len("/new@threadbox_bot")),
        entity("pre", text, "import this", language="python"),
    ]
    assert rebuild(text, entities, ME) == ("📈  plot it\n```python\nimport this\n```", True, True)


def test_another_bots_command_and_mention_are_plain_text() -> None:
    text = "/new@otherbot ask @otherbot"
    entities = [entity("bot_command", text, "/new@otherbot"), entity("mention", text, "@otherbot")]
    assert rebuild(text, entities, ME) == (text, False, False)


def test_a_command_to_this_bot_loses_its_at_bot_so_chat_commands_match() -> None:
    for text in ("/fork@threadbox_bot", "/fork"):
        assert rebuild(text, [entity("bot_command", text, text)], ME) == ("/fork", False, False)


def test_a_text_mention_by_id_counts() -> None:
    text = "threadbox, run"
    assert rebuild(text, [entity("text_mention", text, "threadbox", user={"id": ME.id})], ME)[1:] == (
        True,
        False,
    )


def test_updates_threadbox_never_answers() -> None:
    from_a_bot: dict[str, Any] = {"from": {"id": 1, "is_bot": True}}
    assert parse(update(**from_a_bot), ME) is None
    assert parse({"update_id": 1, "edited_message": update()["message"]}, ME) is None
    assert parse(update(text=""), ME) is None  # a service message (a member joined...)


def test_a_photo_is_its_largest_size_and_a_topic_message_has_no_chain() -> None:
    photo = [{"file_id": "small", "file_size": 10}, {"file_id": "big", "file_size": 99}]
    replied = {"message_id": 1, "date": 0, "chat": {"id": -100, "type": "supergroup"}}
    msg = parse(update(photo=photo, message_thread_id=3, is_topic_message=True, reply_to_message=replied), ME)
    assert msg is not None and (msg.topic, msg.reply_to) == (3, None)
    assert [(f.file_id, f.name, f.size) for f in msg.files] == [("big", "photo-5.jpg", 99)]


def message(chat: int, mid: int, **kw: Any) -> TgMessage:
    fields: dict[str, Any] = {"topic": None, "reply_to": None, "mentioned": False, "new": False} | kw
    return TgMessage(
        update_id=mid, chat_id=chat, private=chat > 0, message_id=mid, user="42", text="x", **fields
    )


def key_of(chains: Chains, msg: TgMessage) -> ThreadKey:
    place = chains.place(msg)
    assert place is not None, msg
    return place.key


def test_group_chains_start_at_a_mention_and_go_on_by_replies(tmp_path: Path) -> None:
    chains = Chains(LocalStore(tmp_path), ME.id)
    assert chains.place(message(-100, 1)) is None  # not for the bot
    start = chains.place(message(-100, 2, mentioned=True))
    assert start is not None and (start.root, start.key.thread, start.rule) == (2, "msg-2", "always")
    chains.link(-100, 3, 2)  # the bot's reply
    follow = chains.place(message(-100, 4, reply_to=3))
    assert follow is not None and follow.key == start.key
    assert chains.place(message(-100, 5, reply_to=1)) is None  # a reply outside any chain
    assert key_of(chains, message(-100, 6, reply_to=4, new=True)).thread == "msg-6"


def test_a_private_chat_goes_on_in_its_current_thread_until_new(tmp_path: Path) -> None:
    chains = Chains(LocalStore(tmp_path), ME.id)
    first = chains.place(message(42, 1))
    assert first is not None and key_of(chains, message(42, 2)) == first.key
    second = chains.place(message(42, 3, new=True))
    assert second is not None and second.key != first.key
    assert key_of(chains, message(42, 4)) == second.key
    assert key_of(chains, message(42, 5, reply_to=2)) == first.key


def test_a_topic_is_the_thread_and_answers_unaddressed_messages_only_once_active(tmp_path: Path) -> None:
    chains = Chains(LocalStore(tmp_path), ME.id)
    quiet, asked = (
        chains.place(message(-100, 1, topic=7)),
        chains.place(message(-100, 2, topic=7, mentioned=True)),
    )
    assert quiet is not None and asked is not None and quiet.key == asked.key
    assert (quiet.rule, asked.rule, asked.root) == ("if_active", "always", None)
    assert segment(-100) == "n100" and segment(100) == "100"


def test_pages_cut_at_line_breaks_within_the_limit() -> None:
    text = "\n".join(f"line {i:05d}" for i in range(1000))
    parts = pages(text)
    assert len(parts) > 1 and all(len(p) <= PAGE for p in parts)
    assert "\n".join(parts) == text
    assert pages("x" * (PAGE + 1)) == ["x" * PAGE, "x"]


def test_only_an_update_object_is_a_webhook_body() -> None:
    assert update_of(b'{"update_id": 3, "message": {}}') == {"update_id": 3, "message": {}}
    for body in (b"{", b"[]", b'{"update_id": "3"}', b'{"update_id": true}', b"\xff"):
        assert update_of(body) is None, body


@pytest.mark.parametrize(
    ("settings", "error"),
    [
        ({"telegram_mode": "polling"}, "needs THREADBOX_TELEGRAM_TOKEN"),
        ({"telegram_mode": "webhook", "telegram_token": "1:a"}, "needs THREADBOX_TELEGRAM_WEBHOOK_SECRET"),
        (
            {"telegram_mode": "webhook", "telegram_token": "1:a", "telegram_webhook_secret": "no spaces"},
            "1 to 256 characters",
        ),
    ],
)
def test_settings_refuse_a_mode_without_what_it_needs(settings: dict[str, Any], error: str) -> None:
    with pytest.raises(ValidationError, match=error):
        Settings(**settings)
