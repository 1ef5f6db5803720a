"""An IPython extension that saves the user's variables to a file and loads them back.

When a sandbox stops for good (idle reaping, eviction, shutdown, a pod's SIGTERM), its
variables would be lost; its files are not. The sandbox side (``controller/kernelstate.py``,
run by the local backend or the in-pod server) asks the kernel, in a silent execute_request's
``user_expressions``, to save its namespace to ``STATE_FILE`` under HOME, uploads that file to
the thread's own storage, and on the next start downloads it back and asks the kernel to load
it. Pickled bytes are only ever read here, inside the thread's own sandbox: the controller
reads nothing but the JSON summaries these functions return.

One variable at a time (cloudpickle, so lambdas and classes defined in the notebook travel by
value): a variable that cannot be pickled (an open socket, a generator) is skipped and named,
and modules are recorded by name and imported again. Objects shared by two variables come
back as two copies. Past ``cap`` bytes nothing is saved, only a note that says so.

File layout: ``MAGIC``, each variable's pickle, the JSON index, the index's length (8 bytes,
big-endian). Standalone, like outputcap.py and changes.py: loaded by path at kernel start; it
adds two attributes to the shell and nothing to the user's namespace.
"""

from __future__ import annotations

import importlib
import json
import os
import pickle
import types
from pathlib import Path
from typing import Any

SAVE = "threadbox_save_state"
LOAD = "threadbox_load_state"
STATE_FILE = ".threadbox-state"  # in HOME: never synced with the workspace's files
MAGIC = b"threadbox-state/1\n"
LENGTH = 8


def _path() -> Path:
    return Path.home() / STATE_FILE


class KernelState:
    def __init__(self, ip: Any) -> None:
        self.ip = ip
        # The execution count at the last save or load: a later save with no cell run since
        # has nothing new to say (a reaped pod is asked at teardown and again on its SIGTERM).
        self.kept_at: int | None = None

    def user_variables(self) -> dict[str, Any]:
        """What ``%who`` lists: the user's names, not IPython's own (In, Out, exit, _1...)."""
        hidden = self.ip.user_ns_hidden
        return {
            name: value
            for name, value in self.ip.user_ns.items()
            if not name.startswith("_") and not (name in hidden and hidden[name] is value)
        }

    def save(self, cap: int) -> str:
        """Write the namespace to STATE_FILE; a JSON summary of what was kept and what not."""
        if self.kept_at is not None and self.kept_at == self.ip.execution_count:
            return json.dumps({"unchanged": True})
        path = _path()
        tmp = path.with_name(STATE_FILE + ".tmp")
        try:
            index = self._write(tmp, cap)
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)  # HOME is memory in a pod
            raise
        self.kept_at = self.ip.execution_count
        saved = [name for name, _ in index["vars"]] + list(index["modules"])
        summary = {"saved": saved, "skipped": index["skipped"], "over_cap": index["over_cap"]}
        return json.dumps({**summary, "bytes": path.stat().st_size})

    def _write(self, tmp: Path, cap: int) -> dict[str, Any]:
        index: dict[str, Any] = {"vars": [], "modules": {}, "skipped": {}, "over_cap": False, "cap": cap}
        with tmp.open("wb") as out:
            out.write(MAGIC)
            size = len(MAGIC)
            for name, value in sorted(self.user_variables().items()):
                if isinstance(value, types.ModuleType):
                    index["modules"][name] = value.__name__
                    continue
                data = _pickled(value)
                if data is None:
                    index["skipped"][name] = type(value).__name__
                    continue
                size += len(data)
                if size > cap:  # nothing is kept, only the note that says so
                    index.update(vars=[], modules={}, skipped={}, over_cap=True)
                    out.seek(len(MAGIC))
                    out.truncate()
                    break
                out.write(data)
                index["vars"].append([name, len(data)])
            raw = json.dumps(index).encode()
            out.write(raw + len(raw).to_bytes(LENGTH, "big"))
        return index

    def load(self) -> str:
        """Put STATE_FILE's variables back; a JSON summary for the one line the user reads."""
        path = _path()
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return json.dumps({})
        path.unlink()  # HOME is memory in a pod: the copy in storage is the one kept
        if not data.startswith(MAGIC) or len(data) < len(MAGIC) + LENGTH:
            return json.dumps({"failed": {"(saved state)": "unreadable"}})
        length = int.from_bytes(data[-LENGTH:], "big")
        index = json.loads(data[-LENGTH - length : -LENGTH])
        restored: list[str] = []
        failed: dict[str, str] = dict(index.get("skipped", {}))
        offset = len(MAGIC)
        for name, size in index.get("vars", []):
            try:
                self.ip.user_ns[name] = pickle.loads(data[offset : offset + size])
                restored.append(name)
            except Exception as exc:  # a class whose module is gone, a changed library
                failed[name] = f"{type(exc).__name__}: {exc}"[:200]
            offset += size
        for name, module in index.get("modules", {}).items():
            try:
                self.ip.user_ns[name] = importlib.import_module(module)
                restored.append(name)
            except Exception as exc:
                failed[name] = f"import {module} failed: {type(exc).__name__}"
        self.kept_at = self.ip.execution_count
        summary = {"restored": sorted(restored), "failed": failed, "over_cap": index.get("over_cap", False)}
        return json.dumps({**summary, "cap": index.get("cap", 0)})


def _pickled(value: Any) -> bytes | None:
    try:
        import cloudpickle

        data: bytes = cloudpickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
        return data
    except Exception:  # cloudpickle raises whatever the object's own reduce raises
        return None


def load_ipython_extension(ip: Any) -> None:
    state = KernelState(ip)
    setattr(ip, SAVE, state.save)
    setattr(ip, LOAD, state.load)
