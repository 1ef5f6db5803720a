"""A real Prometheus for tests: the binaries from hack/install-prometheus.sh (Debian's package),
a server on a free port with a given config, and queries of its HTTP API."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from devkit.ports import free_port
from tests.support.poll import wait_until

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "threadbox"
ALERTS = CHART / "prometheus" / "alerts.yaml"
SCRAPE = CHART / "prometheus" / "scrape.yaml"


def binaries() -> Path:
    """The directory with ``prometheus`` and ``promtool``; a loud skip where there are none."""
    proc = subprocess.run(
        [str(ROOT / "hack" / "install-prometheus.sh")], capture_output=True, text=True, timeout=600
    )
    if proc.returncode == 3:
        lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("SKIPPED:")]
        line = lines[-1] if lines else "SKIPPED: prometheus: hack/install-prometheus.sh cannot run here"
        print(f"\n{line}", file=sys.stderr)  # loud in the run log even without -rs
        pytest.skip(line)
    assert proc.returncode == 0, proc.stderr
    return Path(proc.stdout.strip().splitlines()[-1])


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(binaries() / "promtool"), *args], capture_output=True, text=True, timeout=120, cwd=ROOT
    )


@dataclass
class Prometheus:
    url: str

    def query(self, expr: str) -> list[dict[str, Any]]:
        resp = httpx.get(f"{self.url}/api/v1/query", params={"query": expr}, timeout=10)
        assert resp.status_code == 200, f"{expr}: {resp.text}"
        return list(resp.json()["data"]["result"])

    def firing(self) -> set[str]:
        alerts = httpx.get(f"{self.url}/api/v1/alerts", timeout=10).json()["data"]["alerts"]
        return {a["labels"]["alertname"] for a in alerts if a["state"] == "firing"}


@contextmanager
def running(config: dict[str, Any], workdir: Path) -> Iterator[Prometheus]:
    """A Prometheus server with ``config`` (its rule_files relative to ``workdir``) until the block ends."""
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    args = [
        str(binaries() / "prometheus"),
        f"--config.file={workdir / 'prometheus.yml'}",
        f"--storage.tsdb.path={workdir / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
    ]
    log = (workdir / "prometheus.log").open("w")
    proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, cwd=workdir)
    server = Prometheus(f"http://127.0.0.1:{port}")
    try:
        ready = wait_until(lambda: _ready(server) or proc.poll() is not None, 30, interval=0.2)
        assert ready and proc.poll() is None, (workdir / "prometheus.log").read_text()[-3000:]
        yield server
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


def _ready(server: Prometheus) -> bool:
    try:
        return httpx.get(f"{server.url}/-/ready", timeout=2).status_code == 200
    except httpx.TransportError:
        return False
