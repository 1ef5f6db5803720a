"""The sandbox pod's entrypoint, run as a local process exactly as the image runs it.

``python -m threadbox_sandbox`` from the lean sandbox env, with PYTHONPATH holding only
the entrypoint package and the controller modules the image ships, a secrets directory
like the pod's Secret mount, and storage credentials obtained for real: MinIO STS
AssumeRole, called by a dedicated MinIO user, with the per-thread session policy.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import json
import os
import platform
import queue
import secrets
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
from jupyter_client.asynchronous.client import AsyncKernelClient
from jupyter_client.connect import KernelConnectionInfo
from minio import Minio
from minio.error import S3Error

from controller.k8s.connection import SERVER_PORT
from controller.k8s.podserver import PodRef, PodServer
from controller.k8s.sts import scoped_credentials, session_policy
from controller.quotas import UserQuota, user_usage
from controller.stores.minio import MinioStore
from devkit.ports import free_address, free_port
from tests.support.owners import owned_thread

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "sandbox-image" / "threadbox_sandbox"
KERNEL_PORTS = ("shell_port", "iopub_port", "stdin_port", "control_port", "hb_port")


def shipped_modules() -> list[str]:
    lines = (PACKAGE / "controller-modules.txt").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


@pytest.fixture(scope="module")
def image_pythonpath(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Like the image's /opt/threadbox: the package plus only the shipped controller modules,
    so an import of any other controller module fails here as it would in the pod."""
    dest = tmp_path_factory.mktemp("opt-threadbox")
    for rel in shipped_modules():
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, dest / rel)
    shutil.copytree(PACKAGE, dest / "threadbox_sandbox", ignore=shutil.ignore_patterns("__pycache__"))
    return str(dest)


@dataclass(frozen=True)
class StsUser:
    """A regular MinIO user limited to the bucket, as a deployment's controller would use for STS."""

    endpoint: str
    bucket: str
    access_key: str
    secret_key: str

    def credentials(self, thread_id: str) -> dict[str, Any]:
        return scoped_credentials(self.endpoint, self.access_key, self.secret_key, self.bucket, thread_id)


@pytest.fixture(scope="module")
def sts_user(minio: Any, tmp_path_factory: pytest.TempPathFactory) -> StsUser:
    bucket = f"sbx-{secrets.token_hex(4)}"
    minio.store(bucket)  # creates the bucket as root
    user, password = minio.bucket_user(bucket, tmp_path_factory.mktemp("mc"))
    return StsUser(minio.endpoint, bucket, user, password)


def scoped_store(creds: dict[str, Any]) -> MinioStore:
    """A store on scoped credentials, built as the entrypoint builds it (region given: the
    session policy does not allow GetBucketLocation, which minio-py would call otherwise)."""
    client = Minio(
        creds["endpoint"],
        creds["access_key"],
        creds["secret_key"],
        creds["session_token"],
        secure=False,
        region="us-east-1",
    )
    return MinioStore(client, creds["bucket"])


@pytest.fixture(scope="module")
def root_store(minio: Any, sts_user: StsUser) -> MinioStore:
    """The controller's view (root credentials), used to seed and to check the bucket."""
    return minio.store(sts_user.bucket)  # type: ignore[no-any-return]


@dataclass
class Sandbox:
    proc: subprocess.Popen[bytes]
    url: str
    connection: dict[str, Any]
    workspace: Path
    secrets_dir: Path
    run_dir: Path
    log: Path

    @property
    def token(self) -> str:
        return str(self.connection["key"])

    def auth(self, token: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {token or self.token}"}

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def _write_secrets(secrets_dir: Path, connection: dict[str, Any], storage: dict[str, Any]) -> None:
    secrets_dir.mkdir(parents=True)
    (secrets_dir / "connection.json").write_text(json.dumps(connection))
    (secrets_dir / "storage.json").write_text(json.dumps(storage))


def launch(
    tmp: Path,
    python: Path,
    pythonpath: str,
    thread_id: str,
    storage: dict[str, Any],
    wrap: tuple[str, ...] = (),
    **env: str,
) -> Sandbox:
    """Start the entrypoint with an environment like the pod's (nothing inherited from us).

    ``wrap`` prefixes the command line (e.g. unshare, to run it as PID 1)."""
    connection: dict[str, Any] = {
        "ip": "127.0.0.1",  # the pod's Secret says 0.0.0.0; loopback keeps the test off the network
        "transport": "tcp",
        "signature_scheme": "hmac-sha256",
        "key": secrets.token_hex(32),
        "kernel_name": "",
        **{name: free_port() for name in KERNEL_PORTS},
    }
    secrets_dir, home, tmpdir = tmp / "secrets", tmp / "home", tmp / "tmp"
    _write_secrets(secrets_dir, connection, storage)
    home.mkdir()
    tmpdir.mkdir()
    port = free_port()
    full_env = {
        "PATH": f"{python.parent}:/usr/bin:/bin",
        "PYTHONPATH": pythonpath,
        "HOME": str(home),
        "TMPDIR": str(tmpdir),
        "LANG": "C.UTF-8",
        "THREADBOX_THREAD_ID": thread_id,
        "THREADBOX_SECRETS_DIR": str(secrets_dir),
        "THREADBOX_WORKSPACE": str(tmp / "workspace"),
        "THREADBOX_SERVER_HOST": "127.0.0.1",
        "THREADBOX_SERVER_PORT": str(port),
        **env,
    }
    log = tmp / "entrypoint.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [*wrap, str(python), "-m", "threadbox_sandbox"],
            cwd=tmp,
            env=full_env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    return Sandbox(
        proc,
        f"http://{full_env['THREADBOX_SERVER_HOST']}:{full_env['THREADBOX_SERVER_PORT']}",
        connection,
        tmp / "workspace",
        secrets_dir,
        tmpdir / "threadbox",
        log,
    )


@pytest.fixture
def sandboxes() -> Iterator[list[Sandbox]]:
    started: list[Sandbox] = []
    yield started
    for sb in started:  # a failed test must not leave an entrypoint (and its kernel) behind
        if sb.proc.poll() is None:
            sb.proc.kill()
            sb.proc.wait(timeout=10)


async def wait_healthy(sb: Sandbox, http: httpx.AsyncClient, launches: int = 1, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert sb.proc.poll() is None, f"entrypoint exited with {sb.proc.returncode}:\n{sb.output()}"
        try:
            resp = await http.get(f"{sb.url}/healthz")
            if resp.status_code == 200 and resp.json()["launches"] >= launches:
                return
        except httpx.TransportError:
            pass
        await asyncio.sleep(0.1)
    raise AssertionError(f"no healthy entrypoint within {timeout}s:\n{sb.output()}")


async def kernel_client(connection: dict[str, Any]) -> AsyncKernelClient:
    kc = AsyncKernelClient()
    kc.load_connection_info(cast(KernelConnectionInfo, connection))  # a kernel's connection file
    kc.start_channels(hb=False)
    try:
        await wait_ready(kc)
    except BaseException:
        # Open sockets left to the garbage collector made pytest hang at exit in zmq's
        # Context.term (seen after this wait timed out in a loaded CI run).
        kc.stop_channels()
        raise
    return kc


async def wait_ready(kc: AsyncKernelClient, timeout: float = 90) -> None:
    """kernel_info answered and IOPub connected, as controller/kernel.py waits.

    Not ``wait_for_ready``: it judges liveness by heartbeat, which misses beats while a
    cold kernel imports on a busy machine and then calls a healthy kernel dead.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        kc.kernel_info()
        try:
            reply = await kc.get_shell_msg(timeout=1)
            if reply["msg_type"] == "kernel_info_reply":
                await kc.get_iopub_msg(timeout=0.2)  # proves the SUB socket is connected
                break
        except queue.Empty:
            continue
    else:
        raise AssertionError(f"the kernel did not answer kernel_info within {timeout}s")
    with contextlib.suppress(queue.Empty):
        while True:  # drop the startup chatter
            await kc.get_iopub_msg(timeout=0.1)


async def run(kc: AsyncKernelClient, code: str) -> str:
    """Execute ``code``; returns its stdout, fails the test on an error."""
    out: list[str] = []
    errors: list[str] = []

    def hook(msg: dict[str, Any]) -> None:
        if msg["msg_type"] == "stream":
            out.append(msg["content"]["text"])
        elif msg["msg_type"] == "error":
            errors.append(f"{msg['content']['ename']}: {msg['content']['evalue']}")

    reply = await kc.execute_interactive(code, output_hook=hook, timeout=90)
    assert reply["content"]["status"] == "ok", errors
    return "".join(out)


async def wait_exit(proc: subprocess.Popen[bytes], timeout: float = 40) -> int:
    return await asyncio.to_thread(proc.wait, timeout)


async def test_entrypoint_restores_serves_persists_and_exits_cleanly(
    tmp_path: Path,
    sandbox_python: Path,
    image_pythonpath: str,
    sts_user: StsUser,
    root_store: MinioStore,
    sandboxes: list[Sandbox],
) -> None:
    tid, other = f"t-{secrets.token_hex(4)}", f"t-{secrets.token_hex(4)}"
    for name, data in (("seed.csv", b"a,b\n1,2\n"), ("dir/nested.txt", b"nested")):
        src = tmp_path / "seed"
        src.write_bytes(data)
        root_store.put_file(tid, name, src, hashlib.sha256(data).hexdigest())
    (tmp_path / "seed").write_bytes(b"other thread's secret")
    root_store.put_file(other, "secret.txt", tmp_path / "seed", "x")

    sb = launch(tmp_path / "pod", sandbox_python, image_pythonpath, tid, sts_user.credentials(tid))
    sandboxes.append(sb)
    async with httpx.AsyncClient(timeout=60) as http:
        await wait_healthy(sb, http)
        # Restored from MinIO before the kernel started.
        assert (sb.workspace / "seed.csv").read_bytes() == b"a,b\n1,2\n"
        assert (sb.workspace / "dir" / "nested.txt").read_bytes() == b"nested"

        kc = await kernel_client(sb.connection)
        try:
            listing = await run(kc, "import os; print(sorted(os.listdir('.')), os.getpid())")
            assert "['dir', 'seed.csv']" in listing  # the kernel's cwd is the restored workspace
            first_pid = int(listing.split()[-1])
            # User code sees no THREADBOX_* variable (the environment is built from scratch).
            assert await run(kc, "print([k for k in os.environ if 'THREADBOX' in k])") == "[]\n"
            # The launcher loads the output cap (threadbox_sandbox/outputcap.py): 8 MB printed, 4 MiB sent.
            capped = await run(kc, "print('x' * (8 << 20))")
            assert capped.count("[output limit]") == 1 and len(capped) < 4 << 20

            # Code writes files (one big enough for a multipart upload) and deletes one.
            await run(
                kc,
                "open('out.txt','w').write('from code'); open('big.bin','wb').write(b'x' * (6 << 20)); "
                "os.remove('dir/nested.txt')",
            )
            resp = await http.post(f"{sb.url}/persist", headers=sb.auth())
            assert resp.status_code == 200, resp.text
            body = resp.json()
            assert body["changed"] == ["big.bin", "out.txt"] and body["deleted"] == ["dir/nested.txt"]
            assert body["bytes"] == (6 << 20) + len("from code") and body["refused"] == {}
            assert root_store.read_file(tid, "out.txt") == b"from code"
            assert sorted(f.name for f in root_store.list_files(tid)) == ["big.bin", "out.txt", "seed.csv"]

            # An upload lands in the workspace, visible to the kernel, and counts as synced.
            resp = await http.put(f"{sb.url}/files/up%20load.txt", content=b"uploaded", headers=sb.auth())
            assert resp.status_code == 200 and resp.json() == {"name": "up load.txt", "size": 8}
            assert await run(kc, "print(open('up load.txt').read())") == "uploaded\n"
            assert (await http.post(f"{sb.url}/persist", headers=sb.auth())).json()["changed"] == []
            bad = await http.put(f"{sb.url}/files/..%2Fescape.txt", content=b"x", headers=sb.auth())
            assert bad.status_code == 400 and "traversal" in bad.json()["error"]
            assert not (sb.workspace.parent / "escape.txt").exists()
            # A link that code plants is never written through: 409, which the backend maps to NameConflict.
            outside = tmp_path / "outside.txt"
            outside.write_text("host file")
            await run(kc, f"os.symlink({str(outside)!r}, 'lnk')")
            resp = await http.put(f"{sb.url}/files/lnk", content=b"x", headers=sb.auth())
            assert resp.status_code == 409 and "symbolic link" in resp.json()["error"], resp.text
            assert outside.read_text() == "host file"

            # Every route but /healthz needs the kernel key as bearer token.
            for token in (None, "wrong-" + sb.token):
                headers = sb.auth(token) if token else {}
                for method, path in (("POST", "/persist"), ("POST", "/restore"), ("PUT", "/files/x.txt")):
                    resp = await http.request(method, f"{sb.url}{path}", content=b"x", headers=headers)
                    assert resp.status_code == 401, (method, path, token, resp.text)
            assert not (sb.workspace / "x.txt").exists()

            # User code holds the pod's storage credentials, and they reach this thread only.
            probe = await run(
                kc,
                "import json\n"
                "from minio import Minio\n"
                f"s = json.load(open({str(sb.secrets_dir / 'storage.json')!r}))\n"
                "c = Minio(s['endpoint'], s['access_key'], s['secret_key'], s['session_token'],\n"
                "          secure=False, region='us-east-1')\n"
                f"print(len(c.get_object(s['bucket'], s['prefix'] + 'files/seed.csv').read()))\n"
                "try:\n"
                f"    c.get_object(s['bucket'], 'threads/{other}/files/secret.txt')\n"
                "except Exception as exc:\n"
                "    print(getattr(exc, 'code', exc))\n",
            )
            assert probe.split() == ["8", "AccessDenied"]

            # Restart: the kernel exits on shutdown_request(restart=True); the supervisor relaunches
            # it with the same connection file, and the same client keeps working.
            kc.control_channel.send(kc.session.msg("shutdown_request", {"restart": True}))
            reply = await kc.get_control_msg(timeout=30)
            assert reply["content"] == {"status": "ok", "restart": True}
            await wait_healthy(sb, http, launches=2)
            assert json.loads((sb.run_dir / "kernel.json").read_text()) == sb.connection
            await wait_ready(kc)
            after = await run(kc, "import os; print(os.getpid(), 'x' in globals())")
            assert int(after.split()[0]) != first_pid and after.split()[1] == "False"  # a fresh process
            health = (await http.get(f"{sb.url}/healthz")).json()
            assert health == {"kernel": "running", "launches": 2}

            # SIGTERM: the last writes are persisted, the kernel stops, the entrypoint exits 0.
            await run(kc, "open('final.txt','w').write('last words'); os.remove('out.txt')")
            kernel_pid = int((await run(kc, "print(os.getpid())")).strip())
        finally:
            kc.stop_channels()
        sb.proc.send_signal(signal.SIGTERM)
        assert await wait_exit(sb.proc) == 0, sb.output()
    assert root_store.read_file(tid, "final.txt") == b"last words"
    assert sorted(f.name for f in root_store.list_files(tid)) == ["big.bin", "final.txt", "seed.csv"]
    with pytest.raises(ProcessLookupError):
        os.kill(kernel_pid, 0)  # stopped and reaped
    assert root_store.read_file(other, "secret.txt") == b"other thread's secret"
    assert "final persist: 1 changed, 1 deleted" in sb.output()


def test_scoped_credentials_reach_only_their_own_thread(
    tmp_path: Path, sts_user: StsUser, root_store: MinioStore
) -> None:
    tid, other = f"t-{secrets.token_hex(4)}", f"t-{secrets.token_hex(4)}"
    src = tmp_path / "f.txt"
    src.write_text("other")
    root_store.put_file(other, "f.txt", src, "sha")

    creds = sts_user.credentials(tid)
    assert creds["access_key"] != sts_user.access_key and creds["session_token"]
    assert creds["prefix"] == f"threads/{tid}/" and creds["bucket"] == sts_user.bucket
    assert 3000 < creds["expires"] - time.time() <= 3600 + 60
    scoped = scoped_store(creds)
    # Its own prefix: everything the entrypoint needs.
    src.write_text("mine")
    scoped.put_file(tid, "f.txt", src, "sha")
    assert [f.name for f in scoped.list_files(tid)] == ["f.txt"]
    assert scoped.read_file(tid, "f.txt") == b"mine"
    scoped.put_json(tid, "meta", {"ok": True})
    scoped.delete_file(tid, "f.txt")

    # Another thread's prefix, or the bucket as a whole: AccessDenied for every operation.
    attempts: dict[str, Callable[[], object]] = {
        "read": lambda: scoped.read_file(other, "f.txt"),
        "list": lambda: scoped.list_files(other),
        "write": lambda: scoped.put_file(other, "evil.txt", src, "sha"),
        "delete": lambda: scoped.delete_file(other, "f.txt"),
        "list threads": scoped.list_threads,
        "claims": lambda: scoped.claim("slack-event/x"),
    }
    for what, attempt in attempts.items():
        with pytest.raises(S3Error) as err:
            attempt()
        assert err.value.code == "AccessDenied", what
    assert [f.name for f in root_store.list_files(other)] == ["f.txt"]
    assert root_store.read_file(other, "f.txt") == b"other"


def test_scoped_credentials_exclude_a_sibling_prefix(sts_user: StsUser) -> None:
    # A thread id that extends this one ("t-ab" -> "t-ab0") must stay out of reach.
    tid = f"t-{secrets.token_hex(4)}"
    policy = session_policy(sts_user.bucket, tid)
    assert policy["Statement"][0]["Resource"] == [f"arn:aws:s3:::{sts_user.bucket}/threads/{tid}/*"]
    scoped = scoped_store(sts_user.credentials(tid))
    assert scoped.list_files(tid) == []
    with pytest.raises(S3Error) as err:
        scoped.list_files(tid + "0")  # "threads/<tid>0/" is not under "threads/<tid>/"
    assert err.value.code == "AccessDenied"


def unreachable_storage(tid: str) -> dict[str, Any]:
    return {
        "endpoint": f"127.0.0.1:{free_port()}",  # nothing listens
        "secure": False,
        "bucket": "no-such-bucket",
        "prefix": f"threads/{tid}/",
        "access_key": "a",
        "secret_key": "s",
        "session_token": "t",
        "expires": time.time() + 3600,
    }


async def start_offline(
    tmp_path: Path,
    sandbox_python: Path,
    image_pythonpath: str,
    sandboxes: list[Sandbox],
    http: httpx.AsyncClient,
) -> Sandbox:
    """An entrypoint whose storage is unreachable, healthy (its kernel runs) and cleaned up after."""
    tid = f"t-{secrets.token_hex(4)}"
    sb = launch(tmp_path / "pod", sandbox_python, image_pythonpath, tid, unreachable_storage(tid))
    sandboxes.append(sb)
    await wait_healthy(sb, http)
    return sb


async def test_a_killed_entrypoint_takes_its_kernel_with_it(
    tmp_path: Path, sandbox_python: Path, image_pythonpath: str, sandboxes: list[Sandbox]
) -> None:
    async with httpx.AsyncClient(timeout=60) as http:
        sb = await start_offline(tmp_path, sandbox_python, image_pythonpath, sandboxes, http)
        kc = await kernel_client(sb.connection)
        try:
            kernel_pid = int((await run(kc, "import os; print(os.getpid())")).strip())
        finally:
            kc.stop_channels()
    sb.proc.kill()  # no chance to clean up, as after an OOM kill
    sb.proc.wait(timeout=10)
    deadline = time.monotonic() + 10
    while _alive(kernel_pid) and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    assert not _alive(kernel_pid), "the kernel outlived its supervisor"


# /proc/<pid>/syscall of a process blocked in read(0, ...): the syscall's number, then fd 0.
READ_SYSCALL = {"x86_64": "0", "aarch64": "63"}[platform.machine()]


def _gated_kernel(pid: int) -> int | None:
    """The pid of ``pid``'s kernel if it has imported ipykernel and waits at its gate (blocked
    reading its stdin); the kernel is a child of the supervisor's thread, so every task counts."""
    children = [c for f in Path(f"/proc/{pid}/task").glob("*/children") for c in f.read_text().split()]
    for child in children:
        with contextlib.suppress(OSError):  # gone meanwhile
            at_gate = Path(f"/proc/{child}/syscall").read_text().split()[:2] == [READ_SYSCALL, "0x0"]
            if at_gate and b"kernelapp" in Path(f"/proc/{child}/cmdline").read_bytes():
                return int(child)
    return None


async def _kernel_at_gate(sb: Sandbox, timeout: float = 90) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert sb.proc.poll() is None, f"entrypoint exited with {sb.proc.returncode}:\n{sb.output()}"
        if (kernel := _gated_kernel(sb.proc.pid)) is not None:
            return kernel
        await asyncio.sleep(0.05)
    raise AssertionError(f"no kernel waiting at its gate within {timeout}s:\n{sb.output()}")


def _refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    except ConnectionRefusedError:
        return True
    return False


async def test_the_kernel_imports_but_binds_no_port_until_the_policy_is_proven(
    tmp_path: Path, sandbox_python: Path, image_pythonpath: str, sandboxes: list[Sandbox]
) -> None:
    # Plays the API server's Service, which the pod's policy denies once it is in force: while
    # this answers, the policy is not proven.
    service = await asyncio.start_server(lambda _r, w: w.close(), "127.0.0.1", 0)
    tid = f"t-{secrets.token_hex(4)}"
    env = {
        "THREADBOX_POLICY_CHECK_SECONDS": "120",
        "KUBERNETES_SERVICE_HOST": "127.0.0.1",
        "KUBERNETES_SERVICE_PORT": str(service.sockets[0].getsockname()[1]),
    }
    sb = launch(tmp_path / "pod", sandbox_python, image_pythonpath, tid, unreachable_storage(tid), (), **env)
    sandboxes.append(sb)
    try:
        kernel = await _kernel_at_gate(sb)
        assert all([_refused(sb.connection[name]) for name in KERNEL_PORTS]), sb.output()
        assert "network policy in force" not in sb.output()
    finally:
        service.close()  # the policy comes into force
        await service.wait_closed()
    async with httpx.AsyncClient(timeout=60) as http:
        await wait_healthy(sb, http)
    kc = await kernel_client(sb.connection)  # the positive control: the same ports now answer
    try:
        assert await run(kc, "import os; print(os.getpid())") == f"{kernel}\n"
        # The workspace is on the kernel's path for user code, as with ipykernel_launcher.
        helper = "open('helper.py', 'w').write('X = 7'); import helper; print(helper.X)"
        assert await run(kc, helper) == "7\n"
    finally:
        kc.stop_channels()
    assert "network policy in force" in sb.output()


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


async def test_unreachable_storage_runs_code_but_never_persists_an_unrestored_workspace(
    tmp_path: Path, sandbox_python: Path, image_pythonpath: str, sandboxes: list[Sandbox]
) -> None:
    async with httpx.AsyncClient(timeout=60) as http:
        sb = await start_offline(tmp_path, sandbox_python, image_pythonpath, sandboxes, http)
        kc = await kernel_client(sb.connection)
        try:
            assert await run(kc, "print(6 * 7)") == "42\n"
        finally:
            kc.stop_channels()
        resp = await http.post(f"{sb.url}/persist", headers=sb.auth())
        assert resp.status_code == 409 and "never restored" in resp.json()["error"]
        resp = await http.post(f"{sb.url}/restore", headers=sb.auth())
        assert resp.status_code == 503 and "unavailable" in resp.json()["error"]
    sb.proc.send_signal(signal.SIGTERM)
    assert await wait_exit(sb.proc) == 1  # the final persist was refused, and the exit says so
    assert "final persist failed" in sb.output()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"THREADBOX_THREAD_ID": ""}, "THREADBOX_THREAD_ID is not set"),
        ({"prefix": "threads/someone-else/"}, "but this pod serves"),
        ({"THREADBOX_MAX_FILE_BYTES": "ten"}, "must be an integer"),
    ],
)
def test_a_misconfigured_pod_fails_fast_and_says_why(
    tmp_path: Path, sandbox_python: Path, image_pythonpath: str, change: dict[str, str], message: str
) -> None:
    tid = "t-misconfigured"
    env = dict(change)
    storage = {"endpoint": "127.0.0.1:1", "bucket": "no-such-bucket", "access_key": "a", "secret_key": "s"}
    storage["prefix"] = env.pop("prefix", f"threads/{tid}/")
    sb = launch(tmp_path / "pod", sandbox_python, image_pythonpath, tid, storage, wrap=(), **env)
    assert sb.proc.wait(timeout=60) == 2
    assert message in sb.output()


def test_as_pid_1_without_tini_the_entrypoint_reaps_orphans(
    tmp_path: Path, sandbox_python: Path, image_pythonpath: str, sts_user: StsUser, sandboxes: list[Sandbox]
) -> None:
    """In a fresh PID namespace (like a container on a base without tini) orphans become ours."""
    if shutil.which("tini") or not shutil.which("unshare"):
        pytest.skip("needs unshare and no tini on PATH (with tini the entrypoint hands PID 1 to it)")
    probe = subprocess.run(["unshare", "-fp", "--mount-proc", "true"], capture_output=True)
    if probe.returncode:
        pytest.skip(f"cannot create a PID namespace here: {probe.stderr.decode().strip()}")
    tid = f"t-{secrets.token_hex(4)}"
    wrap = ("unshare", "-fp", "--mount-proc")
    sb = launch(tmp_path / "pod", sandbox_python, image_pythonpath, tid, sts_user.credentials(tid), wrap)
    sandboxes.append(sb)
    try:
        asyncio.run(_orphans_are_reaped(sb))
    finally:
        # unshare forwards no signal: send SIGTERM to the namespace's PID 1 (its only child).
        for child in _children(sb.proc.pid):
            os.kill(child, signal.SIGTERM)
        code = sb.proc.wait(timeout=40)
    assert code == 0, sb.output()


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


async def _orphans_are_reaped(sb: Sandbox) -> None:
    async with httpx.AsyncClient(timeout=60) as http:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                if (await http.get(f"{sb.url}/healthz")).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
        else:
            raise AssertionError(f"entrypoint not healthy as PID 1:\n{sb.output()}")
    kc = await kernel_client(sb.connection)
    try:
        # sh exits at once, orphaning its background children to PID 1; they exit in 0.2 s.
        code = (
            "import os, subprocess, time\n"
            "subprocess.run(['sh', '-c', 'for i in 1 2 3 4 5; do sleep 0.2 & done; exit 0'])\n"
            "time.sleep(2)\n"
            "states = [open(f'/proc/{p}/stat').read().rsplit(')', 1)[1].split()[0]\n"
            "          for p in os.listdir('/proc') if p.isdigit()]\n"
            "print(os.getppid(), states.count('Z'))\n"
        )
        parent, zombies = (await run(kc, code)).split()
        assert parent == "1" and zombies == "0"  # the kernel's parent is the entrypoint, as PID 1
    finally:
        kc.stop_channels()


# -- per-user quotas: the controller counts the user's other threads, the pod applies them ------


def pod_address() -> str:
    """A loopback address whose port 8888 is free: the controller's PodServer dials only that port."""
    loopbacks = [f"127.0.0.{n}" for n in range(100, 140)]
    return free_address(SERVER_PORT, loopbacks) or pytest.fail(f"port {SERVER_PORT} is taken on {loopbacks}")


def stored(store: MinioStore, tid: str) -> list[str]:
    return sorted(f.name for f in store.list_files(tid))


@pytest.mark.parametrize("quota", [UserQuota(max_files=4), None], ids=["user-quota", "no-quota-sent"])
async def test_persist_holds_what_code_writes_to_the_per_user_quota(
    tmp_path: Path,
    sandbox_python: Path,
    image_pythonpath: str,
    sts_user: StsUser,
    root_store: MinioStore,
    sandboxes: list[Sandbox],
    quota: UserQuota | None,
) -> None:
    """The user holds 2 files in another thread and may hold 4: of 3 new files, the third is
    refused, with the local backend's sentence, and the final persist on SIGTERM keeps to the
    same quota. A pod never sent a quota (an older controller) stores them all."""
    user, tid, elsewhere = (f"{p}-{secrets.token_hex(4)}" for p in ("u", "t", "t"))
    owned_thread(root_store, elsewhere, user)
    (tmp_path / "seed").write_bytes(b"old")
    for name in ("x.txt", "y.txt"):
        root_store.put_file(elsewhere, name, tmp_path / "seed", hashlib.sha256(b"old").hexdigest())
    ip, storage = pod_address(), sts_user.credentials(tid)
    sb = launch(
        tmp_path / "pod",
        sandbox_python,
        image_pythonpath,
        tid,
        storage,
        THREADBOX_SERVER_HOST=ip,
        THREADBOX_SERVER_PORT=str(SERVER_PORT),
    )
    sandboxes.append(sb)
    pod, server = PodRef("pod", "uid", ip, sb.token), PodServer(quota)
    try:
        async with httpx.AsyncClient(timeout=60) as http:
            await wait_healthy(sb, http)
            for name in ("a.txt", "b.txt", "c.txt"):
                (sb.workspace / name).write_text(name)  # as code in the kernel writes them
            if quota is not None:
                await refuses_bad_or_uncounted_quotas(sb, http)
            counted = functools.partial(user_usage, root_store, user, tid) if quota else None
            result = await server.persist(pod, counted)
    finally:
        await server.close()
    (sb.workspace / "d.txt").write_text("written after the last persist")
    sb.proc.send_signal(signal.SIGTERM)
    assert await wait_exit(sb.proc) == 0, sb.output()
    if quota is None:
        assert result.changed == ["a.txt", "b.txt", "c.txt"] and result.refused == {}
        assert stored(root_store, tid) == ["a.txt", "b.txt", "c.txt", "d.txt"]
        return
    assert result.changed == ["a.txt", "b.txt"]
    assert result.refused == {"c.txt": "c.txt: you already have your limit of 4 files"}
    assert stored(root_store, tid) == ["a.txt", "b.txt"]
    assert "final persist: 0 changed, 0 deleted, 2 refused" in sb.output()


async def refuses_bad_or_uncounted_quotas(sb: Sandbox, http: httpx.AsyncClient) -> None:
    """A malformed quota is 400; one whose limits need the uncounted other threads is 428."""
    bad = {"user_quota": {"max_files": -1}}
    resp = await http.post(f"{sb.url}/persist", json=bad, headers=sb.auth())
    assert resp.status_code == 400 and "max_files must be a whole number" in resp.json()["error"]
    uncounted = {"user_quota": {"max_files": 4, "max_bytes": 0}}
    resp = await http.post(f"{sb.url}/persist", json=uncounted, headers=sb.auth())
    assert resp.status_code == 428 and "other threads" in resp.json()["error"], resp.text


# -- the built image, under the cluster's containerd ------------------------------------------

CLUSTER_STATE = Path(os.environ.get("THREADBOX_CLUSTER_STATE", "/var/lib/threadbox-cluster"))
CTR = [str(CLUSTER_STATE / "bin" / "ctr"), "--address", "/run/containerd/containerd.sock", "-n", "k8s.io"]


@pytest.fixture(scope="module")
def sandbox_image() -> str:
    """The image for the current sources (built and imported by the script, or its cached tag)."""
    running = Path(CTR[0]).exists() and subprocess.run([*CTR, "version"], capture_output=True).returncode == 0
    if not running:
        pytest.skip("SKIPPED: sandbox-image: the cluster's containerd is not running (hack/cluster/up)")
    proc = subprocess.run(
        [str(ROOT / "hack" / "build-sandbox-image.sh")], capture_output=True, text=True, timeout=3600
    )
    if proc.returncode == 3:
        pytest.skip(proc.stderr.strip().splitlines()[-1])
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc.stdout.strip().splitlines()[-1]


def _kill_container(name: str, proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:  # a failed test must not leave the container running
        subprocess.run([*CTR, "task", "kill", "-s", "SIGKILL", name], capture_output=True)
        proc.wait(timeout=30)


@pytest.mark.cluster
async def test_the_image_serves_a_thread_as_its_pod_would(
    tmp_path: Path, sandbox_image: str, sts_user: StsUser, root_store: MinioStore
) -> None:
    """Read-only root, uid 1000, secrets mounted read-only, writable tmpfs like the pod's emptyDirs."""
    tid = f"t-{secrets.token_hex(4)}"
    (tmp_path / "seed").write_bytes(b"seeded")
    root_store.put_file(tid, "seed.txt", tmp_path / "seed", hashlib.sha256(b"seeded").hexdigest())
    connection: dict[str, Any] = {
        "ip": "0.0.0.0",  # exactly as the pod's Secret has it
        "transport": "tcp",
        "signature_scheme": "hmac-sha256",
        "key": secrets.token_hex(32),
        **{name: free_port() for name in KERNEL_PORTS},
    }
    secrets_dir = tmp_path / "secrets"
    _write_secrets(secrets_dir, connection, sts_user.credentials(tid))
    secrets_dir.chmod(0o755)
    for f in secrets_dir.iterdir():
        f.chmod(0o444)
    port, name = free_port(), f"tb-smoke-{secrets.token_hex(3)}"
    tmpfs = "type=tmpfs,src=tmpfs,dst={},options=nosuid:nodev:mode=1777"
    cmd = [
        *CTR,
        "run",
        "--rm",
        "--net-host",  # the test reaches the agent and kernel on loopback, MinIO too
        "--read-only",
        "--user",
        "1000:1000",
        "--mount",
        f"type=bind,src={secrets_dir},dst=/var/run/threadbox,options=rbind:ro",
        *("--mount", tmpfs.format("/workspace"), "--mount", tmpfs.format("/tmp")),
        *("--mount", tmpfs.format("/home/sandbox")),
        *("--env", f"THREADBOX_THREAD_ID={tid}", "--env", "THREADBOX_SECRETS_DIR=/var/run/threadbox"),
        *("--env", "THREADBOX_WORKSPACE=/workspace", "--env", f"THREADBOX_SERVER_PORT={port}"),
        sandbox_image,
        name,
    ]
    log = tmp_path / "ctr.log"
    with log.open("wb") as out:
        # Attached: ctr forwards our SIGTERM to the container's PID 1 and exits with its status.
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    sb = Sandbox(proc, f"http://127.0.0.1:{port}", connection, Path("/workspace"), secrets_dir, Path(), log)
    try:
        async with httpx.AsyncClient(timeout=60) as http:
            await wait_healthy(sb, http, timeout=180)
            kc = await kernel_client({**connection, "ip": "127.0.0.1"})
            try:
                facts = await run(
                    kc,
                    "import os, pandas, ipykernel, matplotlib.pyplot as plt\n"
                    "print(os.getuid(), os.getcwd(), open('seed.txt').read())\n"
                    "print(open('/proc/1/cmdline').read().split('\\0')[0])\n"
                    "print('pandas==' in open('/opt/sandbox/PREINSTALLED').read())\n"
                    "try:\n"
                    "    open('/opt/sandbox/evil', 'w')\n"
                    "except OSError as exc:\n"
                    "    print(exc.errno)\n"
                    "plt.plot([1, 2]); plt.savefig('plot.png'); print(os.path.getsize('plot.png') > 0)\n",
                )
                assert facts.split() == [
                    "1000",
                    "/workspace",
                    "seeded",
                    "/usr/bin/tini",
                    "True",
                    "30",
                    "True",
                ]
            finally:
                kc.stop_channels()
            resp = await http.post(f"{sb.url}/persist", headers=sb.auth())
            assert resp.status_code == 200 and resp.json()["changed"] == ["plot.png"], resp.text
        proc.send_signal(signal.SIGTERM)
        assert await wait_exit(proc, timeout=60) == 0, sb.output()
    finally:
        await asyncio.to_thread(_kill_container, name, proc)
    assert sorted(f.name for f in root_store.list_files(tid)) == ["plot.png", "seed.txt"]
    assert "final persist: 0 changed" in sb.output()


async def state_load(sb: Sandbox, http: httpx.AsyncClient) -> Any:
    """What POST /state/load answers (the controller's cap for kept state, 1 MB, comes with it)."""
    resp = await http.post(f"{sb.url}/state/load", json={"max_bytes": 10**6}, headers=sb.auth())
    assert resp.status_code == 200, resp.text
    return resp.json()


async def test_a_pod_deleted_with_a_grace_period_saves_its_variables_for_the_next_pod(
    tmp_path: Path,
    sandbox_python: Path,
    image_pythonpath: str,
    sts_user: StsUser,
    sandboxes: list[Sandbox],
) -> None:
    """On SIGTERM the kernel saves its variables before it stops, once the controller has said
    it keeps state: by THREADBOX_STATE_MAX_BYTES in the env of a new thread's pod (no load is
    asked), or by the cap sent with /state/load; the thread's next pod loads them."""
    tid = f"t-{secrets.token_hex(4)}"
    for pod, code, env, expected in (
        ("pod", "x = 41\nf = lambda: x + 1", {"THREADBOX_STATE_MAX_BYTES": str(10**6)}, None),
        ("again", "print(f())", {}, {"note": "Kernel state: restored f, x."}),
    ):
        sb = launch(
            tmp_path / pod, sandbox_python, image_pythonpath, tid, sts_user.credentials(tid), wrap=(), **env
        )
        sandboxes.append(sb)
        async with httpx.AsyncClient(timeout=120) as http:
            await wait_healthy(sb, http)
            if expected is not None:
                assert await state_load(sb, http) == expected
        kc = await kernel_client(sb.connection)
        try:
            out = await run(kc, code)
        finally:
            kc.stop_channels()
        sb.proc.send_signal(signal.SIGTERM)
        assert await wait_exit(sb.proc) == 0, sb.output()
    assert out == "42\n"
    assert "kernel state: saved 2 variable(s)" in sb.output()  # the second pod saved again
