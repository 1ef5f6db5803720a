"""A real MinIO server on loopback, built by hack/install-minio.sh (cached)."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from controller.stores.minio import MinioStore
from devkit.ports import free_port
from devkit.ready import wait_answering

ROOT = Path(__file__).resolve().parents[1]


class MinioUnavailable(Exception):
    """This machine cannot provide MinIO (the message starts with SKIPPED:)."""


def minio_bin() -> Path:
    proc = subprocess.run([str(ROOT / "hack" / "install-minio.sh")], capture_output=True, text=True)
    if proc.returncode == 3:
        raise MinioUnavailable(proc.stderr.strip().splitlines()[-1])
    if proc.returncode:
        raise RuntimeError(f"hack/install-minio.sh failed:\n{proc.stderr[-3000:]}")
    return Path(proc.stdout.strip())


@dataclass
class MinioServer:
    endpoint: str
    access_key: str
    secret_key: str
    bin_dir: Path
    process: subprocess.Popen[bytes]

    def store(self, bucket: str | None = None) -> MinioStore:
        store = MinioStore.connect(
            self.endpoint, self.access_key, self.secret_key, bucket or f"t-{secrets.token_hex(4)}"
        )
        store.ensure_bucket()
        return store

    def mc(self, config_dir: Path, *args: str) -> None:
        """Run ``mc`` against this server as root (alias ``tb``)."""
        mc = [str(self.bin_dir / "mc"), "--config-dir", str(config_dir), "--quiet"]
        alias = ["alias", "set", "tb", f"http://{self.endpoint}", self.access_key, self.secret_key]
        for command in (alias, list(args)):
            proc = subprocess.run([*mc, *command], capture_output=True, text=True, timeout=60)
            if proc.returncode:
                raise RuntimeError(f"mc {' '.join(command[:3])} failed: {proc.stdout}{proc.stderr}")

    def bucket_user(self, bucket: str, config_dir: Path) -> tuple[str, str]:
        """A regular user limited to the bucket's threads, as a deployment's controller would use
        for STS: (access key, secret key)."""
        user, password = f"sandboxer-{secrets.token_hex(3)}", secrets.token_hex(16)
        policy = config_dir / f"policy-{bucket}.json"
        policy.write_text(
            json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Effect": "Allow",
                            "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
                            "Resource": [f"arn:aws:s3:::{bucket}/threads/*"],
                        },
                        {
                            "Effect": "Allow",
                            "Action": ["s3:ListBucket"],
                            "Resource": [f"arn:aws:s3:::{bucket}"],
                        },
                    ],
                }
            )
        )
        self.mc(config_dir, "admin", "user", "add", "tb", user, password)
        self.mc(config_dir, "admin", "policy", "create", "tb", f"sandboxes-{bucket}", str(policy))
        self.mc(config_dir, "admin", "policy", "attach", "tb", f"sandboxes-{bucket}", "--user", user)
        return user, password


@contextmanager
def running_minio(
    data_dir: Path, port: int | None = None, host: str = "127.0.0.1", password: str | None = None
) -> Iterator[MinioServer]:
    """``host``: the address to bind, e.g. one that sandbox pods can reach (the node IP).
    ``port`` and ``password`` of a server stopped before: the same MinIO, started again."""
    bin_dir = minio_bin()
    port = port or free_port()
    endpoint = f"{host}:{port}"
    user, password = "threadbox-root", password or secrets.token_hex(16)
    env = {**os.environ, "MINIO_ROOT_USER": user, "MINIO_ROOT_PASSWORD": password, "MINIO_BROWSER": "off"}
    data_dir.mkdir(parents=True, exist_ok=True)
    log = data_dir.parent / f"minio-{port}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(bin_dir / "minio"), "server", str(data_dir), "--address", endpoint, "--quiet"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_answering("minio", f"http://{endpoint}/minio/health/ready", proc, log, timeout=30)
        yield MinioServer(endpoint, user, password, bin_dir, proc)
    finally:
        proc.terminate()
        proc.wait(timeout=20)
