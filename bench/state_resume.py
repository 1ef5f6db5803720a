"""Kept kernel state (issue 15): the snapshot at teardown, its size, and the resume after reaping.

Each run gives a new thread (a real kernel: a local process, or a pod on the real cluster with
``--backend kubernetes``) a DataFrame of ``--mb`` MB, a fitted scikit-learn model, a dict and a
lambda, then measures:

- the snapshot: the backend's ``save_state`` (the kernel pickles its namespace one variable at a
  time with cloudpickle and the file goes to the thread's storage: a local file, or MinIO
  through the in-pod server), against a plain ``pickle.dump`` of the same objects (the lambda
  left out: plain pickle refuses it) to a file in the sandbox's /tmp (a local disk; in a pod,
  the pod's tmpfs), timed in the same kernel just before;
- the snapshot's size against the objects' in-memory size (pandas' deep memory usage, numpy's
  nbytes and ``sys.getsizeof`` of the rest);
- the resume: the thread is reaped (``reap_once``: variables and files saved, sandbox stopped),
  then its next turn, which reads ``len(df)``, is timed from the call to its "ready" status and
  to Done. Locally that is a cold start; on Kubernetes it waits until the warm pool has a ready
  pod first, so the resume is a claim, and checks that the pod it got is a warm one (``tbw-``).
  Its parts: the backend's ``start`` (the claim), ``ready`` (the kernel's connection) and
  ``load_state`` (the snapshot fetched from storage and unpickled by the kernel); beside them,
  in the same run, the snapshot's download from the store to the controller's host and (on
  Kubernetes) inside the pod with its credentials, and, in the resumed kernel, the same
  objects' pickles read back from a file in HOME and unpickled, as state.py's load does.

Baselines, same run, with the same kind of start (cold locally, a warm claim on Kubernetes):
a thread with no saved state that imports what unpickling the state imports (numpy, pandas,
scikit-learn) and prints, which is what a user without kept state pays before rebuilding; and
a thread with no saved state running ``print(1)``. ``--preimport`` has warm pods import those
libraries before they are claimed (THREADBOX_WARM_PREIMPORT), and is the way to see how much of
a warm resume is the imports.

Kubernetes needs the cluster (hack/cluster/up) and the image (hack/build-sandbox-image.sh).
Usage: uv run python -m bench.state_resume [--runs 5] [--mb 100] [--backend local|kubernetes]
       [--runtime-class gvisor] [--preimport numpy,pandas,sklearn.linear_model]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.common import backend_settings, goal, machine, served, summary, table, write
from bench.pod_start import started_as
from bench.start_phases import PhaseClock
from controller.events import Done, Error, Status, Stream
from controller.kernelstate import BLOB
from controller.runtime import Runtime
from controller.stores.minio import COPY_CHUNK, thread_prefix

SETUP = """
import pickle, sys, time
import numpy as np, pandas as pd
from sklearn.linear_model import LinearRegression
rows = {rows}
df = pd.DataFrame({{"a": np.random.rand(rows), "b": np.arange(rows), "c": np.random.rand(rows) * 7}})
model = LinearRegression().fit(df[["a", "c"]].head(10_000), df["b"].head(10_000))
d = {{"k%d" % i: list(range(10)) for i in range(1000)}}
f = lambda x: 2 * x
started = time.perf_counter()
with open("/tmp/baseline.pkl", "wb") as out:
    pickle.dump({{"df": df, "model": model, "d": d}}, out, protocol=pickle.HIGHEST_PROTOCOL)
baseline = time.perf_counter() - started
size = int(df.memory_usage(deep=True).sum()) + model.coef_.nbytes + sys.getsizeof(d) + sum(sys.getsizeof(v) for v in d.values())
print(baseline, size)
import os; os.unlink("/tmp/baseline.pkl")
"""
RESUME = "print(len(df), f(21))"
# In the resumed kernel, state.py's load of the same objects without the imports (done by
# now): the file read back whole from HOME, then each variable unpickled from its slice; fresh
# memory both times, as at the resume (underscored names: never saved with the state).
UNPICKLE = """
import cloudpickle as _cp, pathlib as _pl, pickle as _pk, time as _t
_blobs = [_cp.dumps(v, protocol=_pk.HIGHEST_PROTOCOL) for v in (df, model, d, f)]
_p = _pl.Path.home() / ".bench-load"
_p.write_bytes(b"".join(_blobs))
_t0 = _t.perf_counter()
_data = _p.read_bytes()
_t1 = _t.perf_counter()
_at = 0
for _b in _blobs:
    _pk.loads(_data[_at : _at + len(_b)])
    _at += len(_b)
print(_t1 - _t0, _t.perf_counter() - _t1)
_p.unlink()
del _blobs, _data
"""
# Kubernetes, in the resumed kernel: the snapshot's download from MinIO inside the pod, with the
# pod's own scoped credentials, to a file on HOME's tmpfs, as the in-pod server fetches it.
FETCH = """
import json as _j, os as _o, shutil as _sh, time as _t
from minio import Minio as _M
_st = _j.load(open("/var/run/threadbox/storage.json"))
_s3 = _M(_st["endpoint"], _st["access_key"], _st["secret_key"], session_token=_st["session_token"],
         secure=_st["secure"], region="us-east-1")
_t0 = _t.perf_counter()
_r = _s3.get_object(_st["bucket"], {key!r})
try:
    with open(_o.path.expanduser("~/.bench-fetch"), "wb") as _out:
        _sh.copyfileobj(_r, _out, {chunk})
finally:
    _r.close()
    _r.release_conn()
print(_t.perf_counter() - _t0)
_o.unlink(_o.path.expanduser("~/.bench-fetch"))
"""
IMPORTS = "import numpy, pandas, sklearn.linear_model; print(1)"
COLUMNS = 3 * 8  # bytes per row: two float64 columns and an int64 one
GOAL_S = 1.5  # issue 15: resume of 100 MB of state after reaping, warm claim, p50
POOL_TIMEOUT = 600
# Enough for the DataFrame three times over (the frame, its pickle, the file on HOME's tmpfs)
# beside pandas and scikit-learn; few pods run at once, so the request fits the node.
PODS = {
    "sandbox_cpu_request": "100m",
    "sandbox_memory_request": "1Gi",
    "sandbox_memory_limit": "2Gi",
    "start_timeout": 120,
}


@dataclass
class Turn:
    out: str = ""
    notes: list[str] = field(default_factory=list)
    ready_s: float = 0.0  # call -> the "ready" status (sandbox started, state loaded)
    done_s: float = 0.0  # call -> Done


async def timed_turn(rt: Runtime, thread_id: str, code: str) -> Turn:
    """A turn's stdout, status messages and times; a failed turn fails the benchmark."""
    turn, out = Turn(), []
    started = time.perf_counter()
    async for event in rt.manager.run(thread_id, code, timeout=600):
        if isinstance(event, Stream):
            out.append(event.text)
        elif isinstance(event, Status):
            turn.notes.append(event.message)
            if event.phase == "ready":
                turn.ready_s = time.perf_counter() - started
        elif isinstance(event, Error):
            raise RuntimeError(f"turn failed in {thread_id}: {event.ename}: {event.evalue}")
        elif isinstance(event, Done) and event.status != "ok":
            raise RuntimeError(f"turn failed in {thread_id}: {event}")
    turn.done_s = time.perf_counter() - started
    turn.out = "".join(out)
    return turn


@dataclass
class Starts:
    """How a measured start is made: cold (local) or a warm claim (Kubernetes)."""

    rt: Runtime
    warm: bool

    async def turn(self, thread_id: str, code: str) -> Turn:
        """A turn that starts the thread's sandbox, checked to be a start of the right kind."""
        kind = "warm" if self.warm else "cold"
        if self.warm:
            await self.pool_ready()
        before = started_as(self.rt, kind)
        turn = await timed_turn(self.rt, thread_id, code)
        info = await self.rt.backend.find(thread_id)
        if started_as(self.rt, kind) != before + 1 or info is None:
            raise RuntimeError(f"{thread_id} did not get a {kind} sandbox")
        if self.warm and not info.name.startswith("tbw-"):
            raise RuntimeError(f"{thread_id} runs in {info.name}, not a claimed warm pod")
        return turn

    async def pool_ready(self) -> None:
        """Until a warm pod is ready to be claimed (the pool refills after each claim)."""
        pools = getattr(self.rt.backend, "pools", {})
        deadline = time.monotonic() + POOL_TIMEOUT
        while sum(p.ready for p in pools.values()) < 1:
            if time.monotonic() > deadline:
                raise RuntimeError(f"no warm pod became ready in {POOL_TIMEOUT} s")
            await asyncio.sleep(0.05)


async def one_run(starts: Starts, clock: PhaseClock, run: int, mb: int) -> dict[str, Any]:
    rt = starts.rt
    thread_id = f"state-{run}"
    baseline, in_memory = (
        await timed_turn(rt, thread_id, SETUP.format(rows=mb * 2**20 // COLUMNS))
    ).out.split()
    info = await rt.backend.find(thread_id)
    assert info is not None
    started = time.perf_counter()
    saved = await rt.backend.save_state(info, rt.settings.state_max_bytes)
    snapshot = time.perf_counter() - started
    stored = await asyncio.to_thread(rt.store.blob_size, thread_id, BLOB)
    assert not saved.over_cap and saved.bytes == stored, (saved, stored)
    await asyncio.sleep(rt.settings.idle_timeout)  # the idle time reaping asks for
    assert thread_id in await rt.manager.reap_once()
    download = await asyncio.to_thread(timed_download, rt, thread_id)
    clock.take()
    resume = await starts.turn(thread_id, RESUME)
    calls = clock.take()
    assert resume.out.split() == [str(mb * 2**20 // COLUMNS), "42"], resume.out
    assert any("restored" in n for n in resume.notes), resume.notes
    read_back, unpickle = map(float, (await timed_turn(rt, thread_id, UNPICKLE)).out.split())
    in_pod: dict[str, float] = {}
    if starts.warm:
        fetch = FETCH.format(key=f"{thread_prefix(thread_id)}blobs/{BLOB}", chunk=COPY_CHUNK)
        in_pod["pod_download_s"] = float((await timed_turn(rt, thread_id, fetch)).out)
    await rt.manager.stop_thread(thread_id)
    fresh = {
        code: await fresh_start(starts, f"fresh-{run}-{i}", code)
        for i, code in enumerate((IMPORTS, "print(1)"))
    }
    return {
        "snapshot_s": snapshot,
        "pickle_dump_s": float(baseline),
        "state_bytes": stored,
        "in_memory_bytes": int(in_memory),
        "resume_s": resume.done_s,
        "resume_ready_s": resume.ready_s,
        "start_s": calls["start"],
        "connect_s": calls["ready"],
        "load_state_s": calls["load_state"],
        "download_s": download,
        "read_back_s": read_back,
        "unpickle_s": unpickle,
        "fresh_imports_s": fresh[IMPORTS],
        "fresh_print_s": fresh["print(1)"],
        **in_pod,
    }


def timed_download(rt: Runtime, thread_id: str) -> float:
    """The snapshot read from the store into memory on the controller's host."""
    started = time.perf_counter()
    rt.store.download_blob(thread_id, BLOB, io.BytesIO())
    return time.perf_counter() - started


async def fresh_start(starts: Starts, thread_id: str, code: str) -> float:
    took = (await starts.turn(thread_id, code)).done_s
    await starts.rt.manager.stop_thread(thread_id)
    return took


async def measure(settings: Any, runs: int, mb: int) -> list[dict[str, Any]]:
    rt = served(settings)
    await rt.start()
    try:
        starts = Starts(rt, warm=settings.backend == "kubernetes")
        clock = PhaseClock(rt.backend)
        return [await one_run(starts, clock, i, mb) for i in range(runs)]
    finally:
        await rt.close()


def run_all(backend: str, runs: int, mb: int, pods: dict[str, Any]) -> list[dict[str, Any]]:
    """``pods``: Kubernetes settings beside PODS (the runtime class, warm_preimport)."""
    overrides: dict[str, Any] = {
        "idle_timeout": 1,
        "reap_interval": 3600,  # reaped by the benchmark's own reap_once, when it chooses
        "thread_max_bytes": 0,
        "state_max_bytes": 2**31,
    }
    if backend == "kubernetes":
        overrides |= {**PODS, "warm_pool_size": 1, **pods}
    with (
        tempfile.TemporaryDirectory(prefix="bench-state-") as tmp,
        backend_settings(backend, "state", Path(tmp), **overrides) as settings,
    ):
        return asyncio.run(measure(settings, runs, mb))


def rows_for(stats: dict[str, dict[str, float]], warm: bool) -> list[list[str]]:
    start = "warm claim" if warm else "cold start"
    times = (
        ("Snapshot at teardown (save_state)", "snapshot_s"),
        ("Baseline: pickle.dump to the sandbox's /tmp", "pickle_dump_s"),
        (f"Resume after reaping, {start}: call -> Done", "resume_s"),
        ("  call -> ready (sandbox up, state loaded)", "resume_ready_s"),
        (f"  backend start ({'the claim and bind' if warm else 'the kernel process'})", "start_s"),
        ("  backend ready (kernel connection)", "connect_s"),
        ("  load_state (fetch the snapshot, unpickle in the kernel)", "load_state_s"),
        ("  beside it: the snapshot's download from the store to the controller's host", "download_s"),
        ("  beside it: the snapshot's download inside the pod, with its credentials", "pod_download_s"),
        ("  beside it, in the resumed kernel: the same pickles read back from HOME", "read_back_s"),
        ("  beside it, in the resumed kernel: pickle.loads of them, one slice each", "unpickle_s"),
        (f"Baseline: {start}, no state, the same imports: call -> Done", "fresh_imports_s"),
        (f"Baseline: {start}, no state, print(1): call -> Done", "fresh_print_s"),
    )
    return [
        [label, f"{stats[key]['p50']:.2f} s", f"{stats[key]['p95']:.2f} s"]
        for label, key in times
        if key in stats
    ]


def report(results: list[dict[str, Any]], mb: int, where: str, warm: bool) -> tuple[dict[str, Any], str]:
    stats = {key: summary([r[key] for r in results]) for key in results[0]}
    p50 = {key: s["p50"] for key, s in stats.items()}
    rows = [
        *rows_for(stats, warm),
        ["State size", f"{p50['state_bytes'] / 2**20:.1f} MiB", ""],
        ["Objects in memory", f"{p50['in_memory_bytes'] / 2**20:.1f} MiB", ""],
    ]
    lines = [
        f"- Snapshot / pickle.dump: {p50['snapshot_s'] / p50['pickle_dump_s']:.2f}x",
        f"- State size / in-memory size: {p50['state_bytes'] / p50['in_memory_bytes']:.2f}x",
        f"- Resume / fresh start with the same imports: {p50['resume_s'] / p50['fresh_imports_s']:.2f}x "
        f"({p50['resume_s'] - p50['fresh_imports_s']:+.2f} s)",
    ]
    if warm:
        imports = p50["fresh_imports_s"] - p50["fresh_print_s"]
        parts = ("pod_download_s", "read_back_s", "unpickle_s")
        rest = p50["load_state_s"] - imports - sum(p50[k] for k in parts)
        lines.append(
            f"- Of load_state's {p50['load_state_s']:.2f} s (p50s, so roughly): the imports that "
            f"unpickling triggers (numpy, pandas, scikit-learn) {imports:.2f} s (the same-imports "
            f"baseline less print(1)), the download in the pod {p50['pod_download_s']:.2f} s, "
            f"reading the file back {p50['read_back_s']:.2f} s, pickle.loads {p50['unpickle_s']:.2f} s; "
            f"the rest {rest:.2f} s (not timed apart: the in-pod server's request and the kernel's "
            "answer, and how much more the imports cost when they happen inside the unpickling)"
        )
        lines.append(goal(f"resume with {mb} MB of state, warm claim: p50", p50["resume_s"], GOAL_S, " s"))
    body = (
        f"{where}, {len(results)} runs, a {mb} MB DataFrame plus a fitted LinearRegression, a dict "
        "of 1000 lists and a lambda per thread. p95 is nearest-rank.\n\n"
        + table(["Measure", "p50", "p95"], rows)
        + "\n\n"
        + "\n".join(lines)
        + "\n"
    )
    return stats, body


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=5, help="threads measured, one after another")
    parser.add_argument("--mb", type=int, default=100, help="the DataFrame's size in MB")
    parser.add_argument("--backend", choices=("local", "kubernetes"), default="local")
    parser.add_argument(
        "--runtime-class", help="Kubernetes: the pods' RuntimeClass (e.g. gvisor); unset: runc"
    )
    parser.add_argument(
        "--preimport",
        help="Kubernetes: modules warm pods import before a claim (THREADBOX_WARM_PREIMPORT), "
        "e.g. numpy,pandas,sklearn.linear_model",
    )
    parser.add_argument("--no-save", action="store_true", help="print only; do not write bench/results")
    args = parser.parse_args()
    data: dict[str, Any] = {"machine": machine(), "backend": args.backend, "mb": args.mb}
    name, where, pods = "state_resume", "Local backend", {}
    if args.backend == "kubernetes":
        from bench.cluster import describe

        data["cluster"], data["runtime_class"] = describe(), args.runtime_class or "runc"
        data["preimport"] = args.preimport or ""
        pods = {"runtime_class_name": args.runtime_class, "warm_preimport": args.preimport or ""}
        name = "state_resume_kubernetes" + "".join(
            f"_{suffix}"
            for suffix, on in ((args.runtime_class, args.runtime_class), ("preimport", args.preimport))
            if on
        )
        where = f"Cluster: {data['cluster']}; {data['runtime_class']} pods, a warm pool of 1"
        if args.preimport:
            where += f" whose kernels import {args.preimport} before a claim"
    data["runs"] = run_all(args.backend, args.runs, args.mb, pods)
    data["summary"], body = report(data["runs"], args.mb, where, args.backend == "kubernetes")
    write(name, "Kept kernel state: snapshot and resume", data, body, save=not args.no_save)


if __name__ == "__main__":
    main()
