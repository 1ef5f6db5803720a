"""Fixtures shared by the Slack integration tests."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from devkit.fake_slack import FakeSlack, serve_fake_slack
from devkit.slack_events import SlackSender, slack_settings


@pytest.fixture
def fake() -> Iterator[FakeSlack]:
    """The stand-in Slack Web API, recording every call."""
    with serve_fake_slack() as server:
        yield server


@pytest.fixture
def slack(api: Any, fake: FakeSlack) -> SlackSender:
    """A real app wired to the fake Slack, and a sender of signed events into it."""
    return SlackSender(api(**slack_settings(fake)))
