"""The ``threadbox`` command line."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import sys
import time
from collections.abc import Callable, Sequence
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
from pydantic import ValidationError

from controller.client import EXIT_CODES, UNREACHABLE, run_client
from controller.config import Settings

if TYPE_CHECKING:
    from controller.backends.base import Backend
    from controller.backends.kubernetes import KubernetesBackend
    from controller.backends.pod_sandbox import PodSandbox
    from controller.stores.base import ThreadStore
    from controller.workspace import PersistResult

DEFAULT_SERVER = os.environ.get("THREADBOX_SERVER", "http://127.0.0.1:8600")

EPILOG = (
    """\
examples:
  threadbox dev                                  # API + web console on http://127.0.0.1:8600
  threadbox run -t demo 'print(6 * 7)'           # run code in thread "demo" of a running server
  threadbox run -t demo -f analysis.py
  threadbox upload -t demo data.csv
  threadbox threads --json
  threadbox token create --user alice            # an API token for alice (shown once)

A thread (-t) is named by its name or its id. The client commands (run, upload, threads) talk
to --server, default $THREADBOX_SERVER, else http://127.0.0.1:8600, with --token, default
$THREADBOX_TOKEN. Every setting is also an environment variable THREADBOX_<NAME> (see the
README's table).

"""
    + EXIT_CODES
)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="threadbox",
        description="A Jupyter-kernel sandbox for every chat thread.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--version", action="version", version=f"threadbox {version('threadbox')}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    for name, help_ in (
        ("dev", "run on the embedded default: local kernels, local store, no cluster, MinIO or Slack"),
        ("serve", "run the controller with configuration from THREADBOX_* environment variables"),
    ):
        s = sub.add_parser(name, help=help_, description=help_)
        s.add_argument("--host", help="address to listen on (default 127.0.0.1)")
        s.add_argument("--port", type=int, help="port of the API and web console (default 8600)")
        s.add_argument(
            "--chat-port", type=int, help="port of the chat webhooks, /slack/events (default 8601)"
        )
        s.add_argument("--data-dir", type=Path, help="where the local store and workspaces live")
        s.add_argument("--idle-timeout", type=float, help="seconds without a turn before a sandbox is reaped")
        s.add_argument(
            "--max-sandboxes", type=int, help="cap on live sandboxes; more threads wait in a queue"
        )

    run = sub.add_parser("run", help="run code in a thread of a running server and print its output")
    run.add_argument("code", nargs="?", help="Python code (or use -f)")
    run.add_argument("-f", "--file", type=Path, help="run this Python file")
    _client_args(run)
    run.add_argument("--timeout", type=float, help="seconds before the execution is interrupted")

    up = sub.add_parser("upload", help="upload a file into a thread's workspace")
    up.add_argument("path", type=Path)
    up.add_argument("--name", help="name in the workspace (default: the file's name)")
    _client_args(up)

    th = sub.add_parser("threads", help="list the threads of a running server")
    _server_args(th)
    _token_parser(sub)
    discord = sub.add_parser("discord", help="set up the Discord application (THREADBOX_DISCORD_*)")
    discord.add_subparsers(dest="action", required=True, metavar="ACTION").add_parser(
        "register-commands",
        help="register /run, /ask, /fork, /forget and /upgrade as the application's global commands",
    )

    sub.add_parser("sandbox-env", help="build the lean sandbox environment and print its python")

    clean = sub.add_parser(
        "cleanup",
        help="save and delete every sandbox of the namespace (Kubernetes backend; run before uninstalling)",
        description=CLEANUP_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    clean.add_argument("--no-persist", action="store_true", help="delete without saving the workspaces first")
    return p


CLEANUP_HELP = """\
Save and delete every sandbox in THREADBOX_SANDBOX_NAMESPACE (backend=kubernetes).

A controller leaves its sandbox pods running when it stops, so a restarted or upgraded
controller adopts them. Before uninstalling, run this (the Helm chart's pre-delete hook
does) so nothing is left behind:

  1. each live sandbox saves its workspace to MinIO (best effort: a failure is reported
     and the sandbox is deleted anyway; the pod also saves on SIGTERM);
  2. its pod and Secret are deleted;
  3. what is left with the sandbox label (warm, ended or half-started pods, their Secrets
     and Leases) and the sandbox NetworkPolicy are deleted.

Configuration comes from the same THREADBOX_* variables as `threadbox serve`; Slack is
not contacted. Exits 1 if something could not be deleted.
"""


TOKEN_HELP = """\
API tokens for the HTTP API, the web console and the CLI client.

A token is shown once, when it is created; the store keeps only its sha256, so a lost
token cannot be recovered: revoke it and create another. A user token sees and acts on
that user's own API threads only; an admin token (--admin) on every thread, Slack's too.

These commands act on the store configured by the same THREADBOX_* variables as
`threadbox serve` (THREADBOX_STORE, THREADBOX_DATA_DIR, THREADBOX_MINIO_*); in a
Kubernetes install, run them in the controller pod:
  kubectl -n threadbox exec deploy/threadbox -- threadbox token create --user alice
"""


def _token_parser(sub: Any) -> None:
    tok = sub.add_parser(
        "token",
        help="create, list or revoke API tokens",
        description=TOKEN_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = tok.add_subparsers(dest="action", required=True, metavar="ACTION")
    create = actions.add_parser("create", help="create a token and print it (only this once)")
    create.add_argument(
        "--user", required=True, type=_user, help="the user the token acts as; owns the threads it creates"
    )
    create.add_argument(
        "--admin", action="store_true", help="see and act on every thread, any user's or Slack's"
    )
    create.add_argument("--label", help="a note shown by `token list`, e.g. where the token is used")
    actions.add_parser("list", help="list tokens: id, user, admin, created, label (never the tokens)")
    revoke = actions.add_parser("revoke", help="revoke a token by the id `token list` shows")
    revoke.add_argument("id", help="the token's id")


def _server_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--server", default=DEFAULT_SERVER, help=f"server URL (default {DEFAULT_SERVER})")
    p.add_argument(
        "--token",
        help="API token (default: $THREADBOX_TOKEN, else the dev token of `threadbox dev` for a loopback server)",
    )
    p.add_argument("--json", action="store_true", help="print JSON (for run, each event as a line of NDJSON)")


def _client_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "-t", "--thread", default="cli", help="thread name or id (default: cli); a new name is created"
    )
    _server_args(p)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command in ("dev", "serve"):
            return _serve(args)
        if args.command == "cleanup":
            return _cleanup(args)
        if args.command == "token":
            return _token(args)
        if args.command == "discord":
            return _register_discord_commands()
        if args.command == "sandbox-env":
            from controller.sandbox_env import ensure_sandbox_python

            print(ensure_sandbox_python())
            return 0
        return run_client(args)
    except httpx.ConnectError:
        print(
            f"threadbox: cannot reach the server at {args.server}; is `threadbox dev` running?",
            file=sys.stderr,
        )
        return UNREACHABLE
    except KeyboardInterrupt:
        return 130


def _settings(args: argparse.Namespace) -> Settings:
    overrides: dict[str, Any] = {
        k: v
        for k, v in {
            "host": args.host,
            "port": args.port,
            "chat_port": args.chat_port,
            "data_dir": args.data_dir,
            "idle_timeout": args.idle_timeout,
            "max_sandboxes": args.max_sandboxes,
        }.items()
        if v is not None
    }
    if args.command == "dev":
        overrides.update(backend="local", store="local")
    return Settings(**overrides)


def _load(make: Callable[[], Settings]) -> Settings | None:
    """Settings, or None after printing each invalid one by name."""
    try:
        return make()
    except ValidationError as exc:
        for err in exc.errors():
            field = ".".join(str(p) for p in err["loc"]) or "settings"
            print(f"threadbox: invalid configuration: {field}: {err['msg']}", file=sys.stderr)
        return None


def _serve(args: argparse.Namespace) -> int:
    settings = _load(lambda: _settings(args))
    if settings is None:
        return 2
    from controller.logsetup import configure as configure_logging

    configure_logging(settings, "text" if args.command == "dev" else "json")
    from controller.auth_setup import NO_AUTH, ensure_dev_token, is_loopback
    from controller.runtime import UnsafeConfiguration, build_runtime, connect_store, freeze_heap
    from controller.serving import StartFailed, build_servers, serve_both

    store = connect_store(settings)  # not prepared here: the runtime waits for it, never exits
    url = f"http://{settings.host}:{settings.port}"
    if args.command == "dev":
        token = ensure_dev_token(store, settings.data_dir, getpass.getuser())
        print(
            f"threadbox: admin token for {getpass.getuser()}: {token}\n"
            f"  (in {settings.data_dir}/dev-token, where the CLI finds it)\n"
            f"  web console: {url}/#token={token}",
            file=sys.stderr,
        )
    elif not is_loopback(settings.host) and not _can_authenticate(settings, store):
        print(NO_AUTH.format(host=settings.host), file=sys.stderr)
        return 2
    try:
        runtime = build_runtime(settings, store)
    except UnsafeConfiguration as exc:
        print(f"threadbox: {exc}", file=sys.stderr)
        return 2
    _say_isolation(runtime.backend)
    api, chat = build_servers(runtime, settings.log_level)
    print(
        f"threadbox: API and console on {url} (docs at /docs); "
        f"chat webhooks on http://{settings.host}:{settings.chat_port}",
        file=sys.stderr,
    )
    freeze_heap()
    try:
        asyncio.run(serve_both(api, chat, runtime))
    except StartFailed as exc:
        print(f"threadbox: {exc} (see the error above); stopped", file=sys.stderr)
        return 1
    return 0


def _can_authenticate(settings: Settings, store: ThreadStore) -> bool:
    """False only when nobody can be let in; a store it cannot ask yet gives the benefit of the
    doubt, since every request still needs a token."""
    from controller.auth_setup import can_authenticate
    from controller.stores.base import StoreUnavailable

    try:
        return can_authenticate(settings, store)
    except StoreUnavailable as exc:
        print(f"threadbox: cannot look for API tokens yet ({exc}); serving anyway", file=sys.stderr)
        return True


def _say_isolation(backend: Backend[Any]) -> None:
    print(f"threadbox: sandboxes: {backend.isolation}", file=sys.stderr)
    if not backend.isolated:
        print(
            "threadbox: WARNING: code in one thread can read every other thread's files and this "
            "controller's secrets; serve only yourself, on loopback",
            file=sys.stderr,
        )


def _register_discord_commands() -> int:
    settings = _load(Settings)
    if settings is None:
        return 2
    if not settings.discord_enabled:
        print(
            "threadbox discord: set THREADBOX_DISCORD_APPLICATION_ID, _PUBLIC_KEY and _TOKEN", file=sys.stderr
        )
        return 2
    from controller.discord.commands import register
    from controller.discord.config import DiscordConfig

    names = asyncio.run(register(DiscordConfig.from_settings(settings)))
    print(f"threadbox: registered {', '.join('/' + n for n in names)}; Discord shows them within a minute")
    return 0


def _user(value: str) -> str:
    name = value.strip()
    if not 0 < len(name) <= 200 or not name.isprintable():
        raise argparse.ArgumentTypeError("a user name is 1 to 200 printable characters")
    return name


def _token(args: argparse.Namespace) -> int:
    settings = _load(lambda: Settings(slack_mode="off"))
    if settings is None:
        return 2
    from controller.runtime import build_store
    from controller.stores.base import StoreUnavailable

    try:
        return _token_action(args, build_store(settings))
    except StoreUnavailable as exc:
        print(f"threadbox token: the store is unavailable, nothing was changed: {exc}", file=sys.stderr)
        return 1


def _token_action(args: argparse.Namespace, store: ThreadStore) -> int:
    from controller.auth import create_token, list_tokens, revoke_token

    if args.action == "create":
        token, record = create_token(store, args.user, args.admin, args.label)
        kind = "admin token" if record.admin else "token"
        print(token)
        print(
            f"threadbox: {kind} {record.id} for {record.user} created; it is shown only this once.\n"
            "  HTTP: Authorization: Bearer <token>\n"
            "  CLI: THREADBOX_TOKEN=<token> threadbox run --server URL ...\n"
            "  web console: open URL/#token=<token>",
            file=sys.stderr,
        )
        return 0
    if args.action == "list":
        for r in list_tokens(store):
            created = time.strftime("%Y-%m-%d %H:%M", time.gmtime(r.created))
            print(f"{r.id}  {r.user}  {'admin' if r.admin else 'user'}  {created}  {r.label or ''}".rstrip())
        return 0
    revoked = revoke_token(store, args.id)
    if revoked is None:
        print(
            f"threadbox token revoke: no token with id {args.id!r} (see `threadbox token list`)",
            file=sys.stderr,
        )
        return 1
    print(f"revoked token {revoked.id} of {revoked.user}")
    return 0


def _cleanup(args: argparse.Namespace) -> int:
    settings = _load(lambda: Settings(slack_mode="off"))
    if settings is None:
        return 2
    if settings.backend != "kubernetes":
        print(
            "threadbox cleanup: only for backend=kubernetes (local kernels stop with the controller)",
            file=sys.stderr,
        )
        return 2
    from controller.backends.kubernetes import KubernetesBackend
    from controller.k8s.config import KubernetesConfig

    return asyncio.run(
        _remove_sandboxes(
            KubernetesBackend(KubernetesConfig.from_settings(settings)), persist=not args.no_persist
        )
    )


# How long `threadbox cleanup` keeps retrying a sandbox it cannot connect to (see save()).
CLEANUP_CONNECT_WINDOW = 20.0


async def _remove_sandboxes(backend: KubernetesBackend, persist: bool) -> int:
    from controller.k8s.api import API_ERRORS, api_message
    from controller.k8s.cleanup import remove_everything
    from controller.k8s.podserver import PodServerError
    from controller.stores.base import StoreUnavailable

    async def save(info: PodSandbox) -> PersistResult:
        # This Job's pod has just started, and NetworkPolicy enforcers admit a new pod's address
        # asynchronously (1.7 s measured with kube-router on kind): until then the sandboxes
        # refuse it. A connection failure is retried for CLEANUP_CONNECT_WINDOW seconds; an
        # answer with an error is not.
        deadline = time.monotonic() + CLEANUP_CONNECT_WINDOW
        while True:
            try:
                return await backend.persist(info, None)
            except PodServerError as exc:
                if exc.status is not None or time.monotonic() >= deadline:
                    raise
            await asyncio.sleep(0.5)

    async def remove(info: PodSandbox) -> None:
        if persist:
            try:
                saved = await save(info)
                print(
                    f"thread {info.thread_id}: saved {len(saved.changed)} changed file(s), {saved.bytes} bytes"
                )
            except (StoreUnavailable, PodServerError) as exc:
                print(
                    f"threadbox cleanup: could not save the files of thread {info.thread_id} ({exc}); "
                    "deleting its sandbox anyway (its pod still tries to save on shutdown)",
                    file=sys.stderr,
                )
        await backend.stop(info)
        print(f"thread {info.thread_id}: deleted sandbox {info.name}")

    try:
        await backend.kube.open()  # the API client only: no pod watch, no warm pool
        sandboxes = await backend.list()
        await asyncio.gather(*(remove(info) for info in sandboxes))
        # What list() does not return: warm pods, pods without their Secret, leftovers of a crash.
        await remove_everything(backend.kube)
    except API_ERRORS as exc:
        print(
            f"threadbox cleanup: Kubernetes API error in namespace {backend.ns}: {api_message(exc)}",
            file=sys.stderr,
        )
        return 1
    finally:
        await backend.close()
    print(f"threadbox cleanup: {len(sandboxes)} sandbox(es) removed from namespace {backend.ns}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
