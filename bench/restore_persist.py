"""Restore and persist of a 1 / 10 / 100 MiB workspace through threadbox, beside `mc mirror`.

The workspace is a realistic mix of random (incompressible) bytes: one big file of 45% of the
total and eleven small ones of 5% each. Per run, to and from one real MinIO on loopback:
- persist: WorkspaceSync.persist of the fresh workspace into an empty thread (hashes every
  file, one LIST, uploads through MinioStore), beside `mc mirror <dir> <prefix>`;
- restore: WorkspaceSync.restore of that thread into an empty directory (LIST with metadata,
  then each file through MinioStore), beside `mc mirror <prefix> <dir>` of the same objects.
The order of the two tools alternates run by run. `mc` pays its process start in every run;
`mc mirror` of an empty directory, measured in the same run, shows how much that is.
This is the local backend's path; in a pod, the in-pod server runs the same WorkspaceSync.

Usage: uv run python -m bench.restore_persist [--sizes 1 10 100] [--runs 20]
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.common import arguments, goal, machine, summary, table, write
from controller.config import Settings
from controller.runtime import quotas_from
from controller.stores.minio import MinioStore, thread_prefix
from controller.workspace import WorkspaceSync
from devkit.minio import MinioServer, running_minio

MIB = 2**20
SMALL_FILES = 11
QUOTAS = quotas_from(Settings())  # the defaults a deployment starts with


def make_workspace(root: Path, total_mib: int) -> None:
    root.mkdir(parents=True)
    total = total_mib * MIB
    small = total * 5 // 100
    (root / "big.bin").write_bytes(os.urandom(total - SMALL_FILES * small))
    for i in range(SMALL_FILES):
        (root / f"data/part-{i:02}.bin").parent.mkdir(exist_ok=True)
        (root / f"data/part-{i:02}.bin").write_bytes(os.urandom(small))


class Mc:
    """The `mc` client built beside the MinIO server, pointed at it through MC_HOST_<alias>."""

    def __init__(self, server: MinioServer, config_dir: Path, bucket: str) -> None:
        self.bin = str(server.bin_dir / "mc")
        self.bucket = f"bench/{bucket}"
        host = f"http://{server.access_key}:{server.secret_key}@{server.endpoint}"
        self.env = {**os.environ, "MC_HOST_bench": host}
        self.config = ["--config-dir", str(config_dir), "--quiet", "--no-color"]

    def mirror(self, source: str, target: str) -> None:
        subprocess.run(
            [self.bin, *self.config, "mirror", source, target],
            env=self.env,
            check=True,
            stdout=subprocess.DEVNULL,
        )

    def prefix(self, thread_id: str) -> str:
        return f"{self.bucket}/{thread_prefix(thread_id)}files/"


def timed(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def one_run(store: MinioStore, mc: Mc, src: Path, tmp: Path, tag: str, mc_first: bool) -> dict[str, float]:
    tb_thread, mc_thread = f"tb-{tag}", f"mc-{tag}"
    persist = {
        "threadbox_persist": lambda: WorkspaceSync(store, tb_thread, src, QUOTAS).persist(),
        "mc_mirror_upload": lambda: mc.mirror(str(src), mc.prefix(mc_thread)),
    }
    restore = {
        "threadbox_restore": lambda: WorkspaceSync(store, tb_thread, tmp / "tb", QUOTAS).restore(),
        "mc_mirror_download": lambda: mc.mirror(mc.prefix(tb_thread), str(tmp / "mc")),
    }
    times: dict[str, float] = {}
    for step in (persist, restore):
        order = list(step.items())
        for name, fn in reversed(order) if mc_first else order:
            times[name] = timed(fn)
    assert sorted(p.name for p in (tmp / "tb").rglob("*")) == sorted(p.name for p in src.rglob("*"))
    assert sorted(p.name for p in (tmp / "mc").rglob("*")) == sorted(p.name for p in src.rglob("*"))
    for thread in (tb_thread, mc_thread):
        store.delete_thread(thread)
    for d in ("tb", "mc"):
        shutil.rmtree(tmp / d)
    return times


def measure(sizes: list[int], runs: int) -> dict[str, Any]:
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp_dir, running_minio(Path(tmp_dir) / "minio") as server:
        tmp = Path(tmp_dir)
        store = server.store("bench")
        mc = Mc(server, tmp / "mc-config", "bench")
        (tmp / "empty").mkdir()
        for size in sizes:
            src = tmp / f"ws-{size}"
            make_workspace(src, size)
            samples: dict[str, list[float]] = {}
            for i in range(runs):
                times = one_run(store, mc, src, tmp / "run", f"{size}-{i}", mc_first=i % 2 == 1)
                times["mc_start_floor"] = timed(lambda: mc.mirror(str(tmp / "empty"), mc.prefix("empty")))
                for name, seconds in times.items():
                    samples.setdefault(name, []).append(seconds)
            shutil.rmtree(src)
            results[str(size)] = {name: summary(values) for name, values in samples.items()}
            print(
                f"  {size} MiB: " + ", ".join(f"{k} {v['p50']:.3f}s" for k, v in results[str(size)].items())
            )
    return results


def report(data: dict[str, Any]) -> str:
    rows = []
    for size, r in data["results"].items():
        for ours, theirs in (
            ("threadbox_restore", "mc_mirror_download"),
            ("threadbox_persist", "mc_mirror_upload"),
        ):
            for name in (ours, theirs):
                s = r[name]
                ratio = s["p50"] / r[theirs]["p50"]
                rows.append(
                    [
                        f"{size} MiB: {name.replace('_', ' ')}",
                        s["n"],
                        f"{s['p50'] * 1000:.0f}",
                        f"{s['p95'] * 1000:.0f}",
                        f"{int(size) / s['p50']:.0f}",
                        f"{ratio:.2f}",
                    ]
                )
        floor = r["mc_start_floor"]
        rows.append(
            [
                f"{size} MiB: mc mirror of an empty dir",
                floor["n"],
                f"{floor['p50'] * 1000:.0f}",
                f"{floor['p95'] * 1000:.0f}",
                "",
                "",
            ]
        )
    goals = [
        goal(
            f"{size} MiB: restore p50 / mc mirror p50",
            r["threadbox_restore"]["p50"] / r["mc_mirror_download"]["p50"],
            1.2,
            "x",
        )
        for size, r in data["results"].items()
    ]
    return "\n".join(
        [
            table(["size: what", "n", "p50 (ms)", "p95 (ms)", "MiB/s at p50", "p50 / mc mirror"], rows),
            "",
            *goals,
        ]
    )


def main() -> None:
    parser = arguments(__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 10, 100], help="MiB")
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    data: dict[str, Any] = {
        "machine": machine(),
        "runs": args.runs,
        "results": measure(args.sizes, args.runs),
    }
    write(
        "restore_persist",
        "Workspace restore and persist against `mc mirror`",
        data,
        report(data),
        save=not args.no_save,
    )


if __name__ == "__main__":
    main()
