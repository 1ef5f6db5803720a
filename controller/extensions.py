"""The sandbox kernel's IPython extensions, loaded by path when the kernel starts.

All are standalone files in sandbox-image/threadbox_sandbox/: ``outputcap.py`` (a cell's
output is cut inside the kernel), ``changes.py`` (the kernel says whether a cell changed
the workspace, so an execution that wrote no file skips the sync) and ``state.py`` (the kernel
saves and loads its variables, see controller/kernelstate.py). Nothing of them is left in
the user's namespace. The local backend passes ``kernel_args(folder)`` with the folder where
the kernel sees the files; the pod's launcher does the same with the sandbox image's copy.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

FOLDER = Path(__file__).resolve().parents[1] / "sandbox-image" / "threadbox_sandbox"
NAMES = ("outputcap.py", "changes.py", "state.py")
# What changes.py answers; asked for in each execute_request's user_expressions.
CHANGED_KEY = "workspace_changed"
CHANGED_EXPRESSION = "get_ipython().threadbox_workspace_changed()"
# A module name to pre-import (THREADBOX_WARM_PREIMPORT), checked where it is read.
MODULE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


def check_modules(names: Sequence[str]) -> list[str]:
    """``names`` if each is a module name (ValueError naming those that are not)."""
    bad = [name for name in names if not MODULE.match(name)]
    if bad:
        raise ValueError(f"not module names: {', '.join(map(repr, bad))}")
    return list(names)


def module_names(text: str) -> list[str]:
    """A comma-separated list of module names (THREADBOX_WARM_PREIMPORT, THREADBOX_PREIMPORT), checked."""
    return check_modules([part.strip() for part in text.split(",") if part.strip()])


def kernel_args(folder: Path = FOLDER, preimport: Sequence[str] = ()) -> list[str]:
    """IPKernelApp arguments that load every extension from ``folder`` at kernel start, then
    import ``preimport`` (module names, checked against MODULE; no name is bound in the user's
    namespace, and a module that fails to import is only reported in the kernel's log)."""
    lines = [_load(folder / name) for name in NAMES]
    lines += [f"__import__('importlib').import_module({m!r}) and None" for m in preimport]
    return [f"--IPKernelApp.exec_lines={line}" for line in lines]


def _load(path: Path) -> str:
    return f"__import__('runpy').run_path({str(path)!r})['load_ipython_extension'](get_ipython())"


def workspace_changed(reply: dict[str, Any] | None) -> bool | None:
    """changes.py's answer in an execute_reply: None when there is none (a failed cell, a
    kernel without the extension, a user who replaced ``get_ipython``)."""
    answer = ((reply or {}).get("content") or {}).get("user_expressions", {}).get(CHANGED_KEY)
    if not isinstance(answer, dict) or answer.get("status") != "ok":
        return None
    shown = (answer.get("data") or {}).get("text/plain")
    return {"True": True, "False": False}.get(shown) if isinstance(shown, str) else None
