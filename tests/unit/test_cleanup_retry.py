"""`threadbox cleanup` (the chart's pre-delete hook) and the NetworkPolicy window: its pod has just
started, and the sandboxes refuse it until the enforcer admits its address (1.7 s measured with
kube-router on kind, where every sandbox went unsaved). Connection failures are retried for a
while; an error the in-pod server answered is not."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import pytest

from controller import cli
from controller.k8s.podserver import PodServerError
from controller.workspace import PersistResult


@dataclass
class Info:
    thread_id: str
    name: str


@dataclass
class FakeKube:
    async def open(self) -> None:
        pass


@dataclass
class FakeBackend:
    failures: list[PodServerError]
    ns: str = "threadbox-sandboxes"
    kube: FakeKube = field(default_factory=FakeKube)
    persist_calls: int = 0
    stopped: list[str] = field(default_factory=list)

    async def list(self) -> list[Info]:
        return [Info("t1", "tb-t1")]

    async def persist(self, info: Info, user: str | None) -> PersistResult:
        self.persist_calls += 1
        if self.failures:
            raise self.failures.pop(0)
        return PersistResult()

    async def stop(self, info: Info) -> None:
        self.stopped.append(info.name)

    async def close(self) -> None:
        pass


def run(backend: FakeBackend, monkeypatch: pytest.MonkeyPatch) -> int:
    async def nothing_else(kube: Any) -> None:
        pass

    monkeypatch.setattr("controller.k8s.cleanup.remove_everything", nothing_else)
    return asyncio.run(cli._remove_sandboxes(backend, persist=True))  # type: ignore[arg-type]


def refused() -> PodServerError:
    return PodServerError("the in-pod server of tb-t1 did not answer: ConnectError('refused')")


def test_a_sandbox_that_refuses_the_new_pod_at_first_is_saved_once_it_answers(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    backend = FakeBackend([refused(), refused()])
    assert run(backend, monkeypatch) == 0
    out, err = capsys.readouterr()
    assert backend.persist_calls == 3
    assert "thread t1: saved 0 changed file(s)" in out and "could not save" not in err
    assert backend.stopped == ["tb-t1"]


def test_an_error_the_server_answered_is_not_retried(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    backend = FakeBackend([PodServerError("failed /persist: 502", 502, "storage refused")])
    assert run(backend, monkeypatch) == 0
    assert backend.persist_calls == 1
    assert "could not save the files of thread t1" in capsys.readouterr().err
    assert backend.stopped == ["tb-t1"]


def test_a_sandbox_that_never_answers_is_deleted_unsaved_after_the_window(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(cli, "CLEANUP_CONNECT_WINDOW", 1.0)
    backend = FakeBackend([refused() for _ in range(100)])
    assert run(backend, monkeypatch) == 0
    assert 2 <= backend.persist_calls <= 4  # retried every 0.5 s for the 1 s window, then given up
    assert "could not save the files of thread t1" in capsys.readouterr().err
    assert backend.stopped == ["tb-t1"]
