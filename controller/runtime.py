"""Builds the controller's parts from Settings: store, backend, manager, agent, metrics."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter

from controller.agent.base import Agent
from controller.agent.select import build_agent
from controller.auth_setup import is_loopback
from controller.backends.base import Backend
from controller.backends.limits import Limits
from controller.backends.local import LocalBackend
from controller.backends.local_sandbox import Isolation, IsolationUnavailable, Launcher, decide
from controller.config import Settings, subset
from controller.k8s.sts_check import require_session_policies
from controller.loopwatch import LoopWatch
from controller.manager import ManagerConfig, SandboxManager
from controller.metrics import Metrics
from controller.profiles import ProfileBook, ProfileError, Profiles, load_profiles
from controller.quotas import Quotas
from controller.sandbox_env import ensure_sandbox_python
from controller.storage import GatedStore, StorageGate
from controller.stores.base import StoreUnavailable, ThreadStore
from controller.stores.local import LocalStore
from controller.stores.minio import MinioStore
from controller.threads import RecentRecords, index_owners
from controller.usage.accounting import Accounting, AccountingConfig


@dataclass
class Runtime:
    settings: Settings
    store: ThreadStore
    backend: Backend[Any]
    manager: SandboxManager
    agent: Agent
    metrics: Metrics
    quotas: Quotas
    # Prepares the store and says whether it can serve (/readyz); ``store`` is gated by it.
    storage: StorageGate
    # Usage per turn, thread, user and workspace, and daily budgets; the manager wraps turns in it.
    accounting: Accounting
    # The sandbox profiles, and which version each thread is pinned to (the manager's source).
    profiles: ProfileBook
    # Front-ends plug in here: chat webhook routes (served on the chat port, apart from the
    # API), and (start, stop) pairs run with the app.
    chat_routers: list[APIRouter] = field(default_factory=list)
    services: list[tuple[Callable[[], Awaitable[None]], Callable[[], Awaitable[None]]]] = field(
        default_factory=list
    )
    # Set once start() is done: the chat server waits for it before taking events.
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    # The event loop's lag watchdog (controller/loopwatch.py), running from start() to close().
    loopwatch: LoopWatch | None = None
    # Records read from the store, for this replica's live threads while storage is down.
    recent_threads: RecentRecords = field(default_factory=RecentRecords)

    async def start(self) -> None:
        self.loopwatch = LoopWatch(self.metrics.loop_lag)
        await self.loopwatch.start()
        # Never fails: an unready store is retried in the background, which also keeps the
        # threadbox_storage_up gauge fresh between readiness probes.
        await self.storage.start()
        await self.manager.start()
        for start, _ in self.services:
            await start()
        self.ready.set()

    async def close(self) -> None:
        for _, stop in reversed(self.services):
            await stop()
        await self.manager.close()
        await self.accounting.settled()  # the usage of the turns shutdown let finish
        await self.storage.close()
        if self.loopwatch is not None:
            await self.loopwatch.close()

    async def check_storage(self) -> None:
        """Raise StoreUnavailable unless the store answers; ``threadbox_storage_up`` says which."""
        try:
            await asyncio.to_thread(self.store.check)
        except StoreUnavailable:
            self.metrics.storage_up.set(0)
            raise
        self.metrics.storage_up.set(1)


class UnsafeConfiguration(Exception):
    """The settings would expose unconfined code, or name unusable profiles; the message says
    what to change."""


def quotas_from(settings: Settings) -> Quotas:
    return subset(Quotas, settings)


def connect_store(settings: Settings) -> ThreadStore:
    """The configured store, without a request to it: the runtime prepares it (storage.py)."""
    if settings.store == "local":
        return LocalStore(settings.data_dir / "store")
    assert settings.minio_endpoint and settings.minio_access_key and settings.minio_secret_key
    return MinioStore.connect(
        settings.minio_endpoint,
        settings.minio_access_key,
        settings.minio_secret_key.get_secret_value(),
        settings.minio_bucket,
        settings.minio_secure,
    )


def build_store(settings: Settings) -> ThreadStore:
    """The store, prepared now (for one-shot commands): StoreUnavailable if it cannot be."""
    store = connect_store(settings)
    preparation(settings, store, session_policies=False)()
    return store


def preparation(settings: Settings, store: ThreadStore, session_policies: bool = True) -> Callable[[], None]:
    """What makes the store ready to serve: MinIO's bucket, made if missing; with the Kubernetes
    backend, the proof that MinIO confines the credentials sandbox pods get (StsCheckFailed);
    then the owner index entries of threads older than the index (once a store)."""

    def prepare() -> None:
        if isinstance(store, MinioStore):
            store.ensure_bucket()
        else:
            store.check()
        if session_policies and settings.backend == "kubernetes":
            require_session_policies(settings)
        index_owners(store)  # after the proof: nothing is written to a store that failed it

    return prepare


def build_backend(
    settings: Settings, store: ThreadStore, quotas: Quotas, profiles: Profiles | None = None
) -> Backend[Any]:
    if settings.backend == "kubernetes":
        from controller.backends.kubernetes import KubernetesBackend  # the client loads only when used
        from controller.k8s.config import KubernetesConfig

        return KubernetesBackend(KubernetesConfig.from_settings(settings, profiles), store=store)
    python = settings.sandbox_python or ensure_sandbox_python()
    sandboxes = settings.data_dir / "sandboxes"
    try:
        isolation = decide(settings.local_isolation, python, local_limits(settings), sandboxes)
    except IsolationUnavailable as exc:
        raise UnsafeConfiguration(str(exc)) from exc
    check_local_exposure(settings, isolation)
    launcher = Launcher(python, isolation, settings.max_output_bytes)
    return LocalBackend(sandboxes, launcher, store, quotas, settings.file_ttl_days)


def local_limits(settings: Settings) -> Limits:
    return Limits(
        memory_bytes=settings.local_memory_limit,
        processes=settings.local_max_processes,
        file_bytes=settings.local_max_file_size,
        open_files=settings.local_max_open_files,
        tmp_bytes=settings.local_tmp_size,
    )


def check_local_exposure(settings: Settings, isolation: Isolation) -> None:
    """Unsandboxed kernels are only for one person on loopback, unless the operator says off."""
    if isolation.sandboxed or settings.local_isolation == "off":
        return
    exposed = [
        what
        for what, yes in (
            (f"serving on {settings.host}", not is_loopback(settings.host)),
            (f"Slack ({settings.slack_mode} mode)", settings.slack_mode != "off"),
            (f"Telegram ({settings.telegram_mode} mode)", settings.telegram_mode != "off"),
            ("Discord", settings.discord_enabled),
        )
        if yes
    ]
    if exposed:
        raise UnsafeConfiguration(
            f"Local kernels cannot be sandboxed here ({isolation.reason}), so threadbox refuses "
            f"{' and '.join(exposed)}: other people's code would run unconfined. Install bubblewrap, "
            "or serve on 127.0.0.1 without Slack, or set THREADBOX_LOCAL_ISOLATION=off to accept the risk."
        )


def freeze_heap() -> None:
    """Take everything made so far out of the garbage collector's sight, for good.

    Call it once the runtime is built, before it serves. Modules, clients and settings live as
    long as the process; a full collection that walked them (about 250,000 objects with the
    Kubernetes client, 130 ms on an idle machine) stalled the event loop for over a second
    under load. A cycle among them that turns to garbage later is never collected, so a process
    calls this for the one runtime it serves (or a benchmark measures).
    """
    gc.collect()
    gc.freeze()


def build_runtime(settings: Settings, store: ThreadStore | None = None) -> Runtime:
    metrics = Metrics()
    raw = store or connect_store(settings)
    storage = StorageGate(raw, preparation(settings, raw), observe=metrics.storage_up.set)
    store = GatedStore(raw, storage)
    quotas = quotas_from(settings)
    try:
        profiles = ProfileBook(load_profiles(settings), store)
    except ProfileError as exc:
        raise UnsafeConfiguration(f"THREADBOX_PROFILES_FILE: {exc}") from exc
    backend = build_backend(settings, store, quotas, profiles.profiles)
    accounting = Accounting(store, metrics, AccountingConfig.from_settings(settings))
    config = ManagerConfig.from_settings(settings)
    manager = SandboxManager(backend, config, metrics, profiles=profiles, accounting=accounting)
    agent = build_agent(settings, manager, store)
    runtime = Runtime(
        settings, store, backend, manager, agent, metrics, quotas, storage, accounting, profiles
    )
    if settings.slack_mode != "off":
        from controller.slack import install as install_slack  # Slack's libraries load only when used

        install_slack(runtime)
    if settings.telegram_mode != "off":
        from controller.telegram.service import install as install_telegram  # likewise python-telegram-bot

        install_telegram(runtime)
    if settings.discord_enabled:
        from controller.discord.service import install as install_discord  # hikari loads only when used

        install_discord(runtime)
    return runtime
