"""Kept kernel state (issue 15): the snapshot at teardown, its size, and the resume after reaping.

Each run gives a new thread (local backend, real kernel) a DataFrame of ``--mb`` MB, a fitted
scikit-learn model, a dict and a lambda, then measures:

- the snapshot: the backend's ``save_state`` (the kernel pickles its namespace one variable at a
  time with cloudpickle and the file goes to the thread's storage), against a plain
  ``pickle.dump`` of the same objects (the lambda left out: plain pickle refuses it) to a local
  file, timed in the same kernel just before;
- the snapshot's size against the objects' in-memory size (pandas' deep memory usage, numpy's
  nbytes and ``sys.getsizeof`` of the rest);
- the resume: the thread is reaped (``reap_once``: variables and files saved, kernel stopped),
  then its next turn, which reads ``len(df)``, is timed from the call to Done: a cold start
  with the files restored and the state loaded before the code runs. Baselines, same run: a
  thread with no saved state that imports what unpickling the state imports (numpy, pandas,
  scikit-learn) and prints, which is what a user without kept state pays before rebuilding;
  and a plain cold start of ``print(1)``.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import local_settings, machine, summary, table, write
from controller.events import Done, Error, Status, Stream
from controller.kernelstate import BLOB
from controller.runtime import Runtime, build_runtime

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
IMPORTS = "import numpy, pandas, sklearn.linear_model; print(1)"
TIMES = (
    ("Snapshot at teardown (save_state)", "snapshot_s"),
    ("Baseline: pickle.dump to local disk", "pickle_dump_s"),
    ("Resume after reaping (to Done)", "resume_s"),
    ("Baseline: cold start, no state, the same imports", "cold_imports_s"),
    ("Baseline: cold start, no state, print(1)", "cold_no_state_s"),
)
COLUMNS = 3 * 8  # bytes per row: two float64 columns and an int64 one


async def lines(rt: Runtime, thread_id: str, code: str) -> tuple[str, list[str]]:
    """A turn's stdout and its status messages; a failed turn fails the benchmark."""
    out, notes = [], []
    async for event in rt.manager.run(thread_id, code, timeout=600):
        if isinstance(event, Stream):
            out.append(event.text)
        elif isinstance(event, Status):
            notes.append(event.message)
        elif isinstance(event, Error):
            raise RuntimeError(f"turn failed in {thread_id}: {event.ename}: {event.evalue}")
        elif isinstance(event, Done) and event.status != "ok":
            raise RuntimeError(f"turn failed in {thread_id}: {event}")
    return "".join(out), notes


async def one_run(rt: Runtime, data: Path, run: int, mb: int) -> dict[str, Any]:
    thread_id = f"state-{run}"
    out, _ = await lines(rt, thread_id, SETUP.format(rows=mb * 2**20 // COLUMNS))
    baseline, in_memory = out.split()
    info = await rt.backend.find(thread_id)
    assert info is not None
    started = time.perf_counter()
    saved = await rt.backend.save_state(info, rt.settings.state_max_bytes)
    snapshot = time.perf_counter() - started
    stored = (data / "store" / "threads" / thread_id / "blobs" / BLOB).stat().st_size
    assert not saved.over_cap and saved.bytes == stored, saved
    await asyncio.sleep(rt.settings.idle_timeout)
    assert thread_id in await rt.manager.reap_once()
    started = time.perf_counter()
    out, notes = await lines(rt, thread_id, RESUME)
    resume = time.perf_counter() - started
    assert out.split() == [str(mb * 2**20 // COLUMNS), "42"] and any("restored" in n for n in notes), notes
    cold = {code: await timed_cold_start(rt, f"fresh-{run}", code) for code in (IMPORTS, "print(1)")}
    await rt.manager.stop_thread(thread_id)
    return {
        "snapshot_s": snapshot,
        "pickle_dump_s": float(baseline),
        "state_bytes": stored,
        "in_memory_bytes": int(in_memory),
        "resume_s": resume,
        "cold_imports_s": cold[IMPORTS],
        "cold_no_state_s": cold["print(1)"],
    }


async def timed_cold_start(rt: Runtime, thread_id: str, code: str) -> float:
    started = time.perf_counter()
    await lines(rt, thread_id, code)
    elapsed = time.perf_counter() - started
    await rt.manager.stop_thread(thread_id)
    return elapsed


async def measure(runs: int, mb: int) -> list[dict[str, Any]]:
    with tempfile.TemporaryDirectory(prefix="bench-state-") as tmp:
        overrides = {
            "idle_timeout": 1,
            "reap_interval": 3600,
            "thread_max_bytes": 0,
            "state_max_bytes": 2**31,
        }
        with local_settings(Path(tmp), **overrides) as settings:
            rt = build_runtime(settings)
            await rt.start()
            try:
                return [await one_run(rt, Path(tmp), i, mb) for i in range(runs)]
            finally:
                await rt.close()


def report(results: list[dict[str, Any]], mb: int) -> tuple[dict[str, Any], str]:
    stats = {key: summary([r[key] for r in results]) for key in results[0]}
    p50 = {key: s["p50"] for key, s in stats.items()}
    rows = [[label, f"{stats[key]['p50']:.2f} s", f"{stats[key]['p95']:.2f} s"] for label, key in TIMES]
    rows += [
        ["State size", f"{p50['state_bytes'] / 2**20:.1f} MiB", ""],
        ["Objects in memory", f"{p50['in_memory_bytes'] / 2**20:.1f} MiB", ""],
    ]
    body = (
        f"Local backend, {len(results)} runs, a {mb} MB DataFrame plus a fitted LinearRegression, a dict "
        "of 1000 lists and a lambda per thread.\n\n"
        + table(["Measure", "p50", "p95"], rows)
        + f"\n\n- Snapshot / pickle.dump: {p50['snapshot_s'] / p50['pickle_dump_s']:.2f}x "
        "(the snapshot also writes each variable separately and copies the file into the store)\n"
        f"- State size / in-memory size: {p50['state_bytes'] / p50['in_memory_bytes']:.2f}x\n"
        f"- Resume / cold start with the same imports: {p50['resume_s'] / p50['cold_imports_s']:.2f}x "
        f"({p50['resume_s'] - p50['cold_imports_s']:+.2f} s: fetching and loading "
        f"{p50['state_bytes'] / 2**20:.0f} MiB costs less than the noise of a machine this loaded)\n"
        "- Not measured here: the Kubernetes warm claim (issue goal p50 <= 1.5 s).\n"
    )
    return stats, body


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=5, help="threads measured, one after another")
    parser.add_argument("--mb", type=int, default=100, help="the DataFrame's size in MB")
    parser.add_argument("--no-save", action="store_true", help="print only; do not write bench/results")
    args = parser.parse_args()
    data = {"machine": machine(), "mb": args.mb, "runs": asyncio.run(measure(args.runs, args.mb))}
    data["summary"], body = report(data["runs"], args.mb)
    write("state_resume", "Kept kernel state: snapshot and resume", data, body, save=not args.no_save)


if __name__ == "__main__":
    main()
