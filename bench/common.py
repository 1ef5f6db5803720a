"""What every benchmark shares: percentiles, the machine description, turns, writing results.

Each benchmark prints JSON and a markdown table and writes ``bench/results/<name>.json`` and
``.md``. Figures are only comparable with the baseline measured in the same run: this is a
2-core VM that other workloads share, so the load average is recorded too.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

from controller.config import Settings
from controller.events import Done, Error
from controller.runtime import Runtime, build_runtime, freeze_heap
from controller.stores.base import ThreadStore

RESULTS = Path(__file__).parent / "results"
SHARED = "2-core VM, other workloads running"
BACKENDS = ("local", "kubernetes")
# Benchmarks never want a sandbox reaped mid-run, and 50 sandboxes starting at once on 2 cores are slow.
LIFECYCLE = {"idle_timeout": 3600, "start_timeout": 300}


def served(settings: Settings, store: ThreadStore | None = None) -> Runtime:
    """A runtime as ``threadbox serve`` has it: built, then its start-up heap frozen."""
    rt = build_runtime(settings, store)
    freeze_heap()
    return rt


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile: with 20 runs, p95 is the 19th value, an observed one."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def summary(values: Sequence[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "p50": statistics.median(values),
        "p95": percentile(values, 0.95),
        "min": min(values),
        "max": max(values),
    }


def machine() -> dict[str, Any]:
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return {
        "cpus": os.cpu_count(),
        "ram_gib": round(memory / 2**30, 1),
        "python": platform.python_version(),
        "kernel": f"Linux {platform.release()}",
        "arch": platform.machine(),
        "note": SHARED,
        "load_average_1m_at_start": round(os.getloadavg()[0], 2),
    }


def machine_line(m: dict[str, Any]) -> str:
    return (
        f"{m['arch']}, {m['cpus']} CPUs, {m['ram_gib']} GiB RAM, {m['kernel']}, Python {m['python']} "
        f"({m['note']}; 1-minute load {m['load_average_1m_at_start']} at start, "
        f"{m['load_average_1m_at_end']} at end)"
    )


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A markdown table; the first column is left-aligned, the rest (figures) right-aligned."""
    align = ["---"] + ["---:"] * (len(headers) - 1)
    lines = [headers, align, *([str(c) for c in r] for r in rows)]
    return "\n".join("| " + " | ".join(line) + " |" for line in lines)


def goal(what: str, value: float, limit: float, unit: str = "") -> str:
    verdict = "met" if value <= limit else "MISSED"
    return f"- Goal {what} <= {limit:g}{unit}: **{verdict}** ({value:.2f}{unit})"


@contextmanager
def local_settings(tmp: Path, **overrides: Any) -> Iterator[Settings]:
    yield Settings(**{"data_dir": tmp, **LIFECYCLE, **overrides})


def backend_settings(
    backend: str, name: str, tmp: Path, **overrides: Any
) -> AbstractContextManager[Settings]:
    """Settings for a runtime on ``backend``; the Kubernetes one lives in its own namespace until exit.

    Overrides meant for pods (requests) are harmless on the local backend, which ignores them."""
    if backend == "kubernetes":
        from bench.cluster import k8s_settings  # the cluster's client and MinIO only when asked for

        return k8s_settings(name, tmp, **overrides)
    return local_settings(tmp, **overrides)


async def turn(rt: Runtime, thread_id: str, code: str) -> None:
    """One turn through the SandboxManager; a failed turn fails the benchmark."""
    errors: list[Error] = []
    async for event in rt.manager.run(thread_id, code):
        if isinstance(event, Error):
            errors.append(event)
        if isinstance(event, Done) and event.status != "ok":
            raise RuntimeError(f"turn failed in {thread_id}: {event} after {errors}")


def write(name: str, title: str, data: dict[str, Any], body: str, save: bool = True) -> None:
    """Print the JSON and the markdown; save both under bench/results unless ``save`` is off."""
    data["machine"]["load_average_1m_at_end"] = round(os.getloadavg()[0], 2)
    text = f"# {title}\n\nMachine: {machine_line(data['machine'])}.\n\n{body.strip()}\n"
    print(json.dumps(data, indent=2))
    print(text)
    if save:
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / f"{name}.json").write_text(json.dumps(data, indent=2) + "\n")
        (RESULTS / f"{name}.md").write_text(text)


def arguments(doc: str | None, **extra: Any) -> argparse.ArgumentParser:
    """A benchmark's parser: its module docstring as the help, and ``--no-save``."""
    parser = argparse.ArgumentParser(
        description=doc, formatter_class=argparse.RawDescriptionHelpFormatter, **extra
    )
    parser.add_argument("--no-save", action="store_true", help="print only; do not write bench/results")
    return parser
