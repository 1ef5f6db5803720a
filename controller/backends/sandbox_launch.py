"""Launcher of a local sandbox: join its cgroups, set its rlimits, then exec the sandbox.

Run as ``python -I -S sandbox_launch.py '<json spec>'`` by the local backend. It is a
separate process, not a ``preexec_fn``, because the controller is multi-threaded and a
forked child must not run Python code before exec; it uses only the standard library
so it starts in a few milliseconds. Limits set here are inherited by everything the
sandbox starts, and cgroup membership is taken before the first fork, so no process of
the sandbox can begin outside its limits.

Spec: ``{"cgroup_procs": [path, ...], "rlimits": {"RLIMIT_AS": n, ...}, "argv": [...]}``.
"""

from __future__ import annotations

import json
import os
import resource
import sys
from typing import Any


def apply(spec: dict[str, Any]) -> None:
    for procs in spec.get("cgroup_procs", []):
        with open(procs, "w") as fh:
            fh.write(str(os.getpid()))
    for name, value in spec.get("rlimits", {}).items():
        limit = int(value)
        resource.setrlimit(getattr(resource, name), (limit, limit))


def main(argv: list[str]) -> None:
    spec = json.loads(argv[1])
    apply(spec)
    os.execvp(spec["argv"][0], spec["argv"])


if __name__ == "__main__":
    main(sys.argv)
