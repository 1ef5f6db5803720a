"""An IPython extension that tells the controller whether a cell changed the workspace.

Syncing the workspace to the store after every execution is a round trip to the in-pod server
(or a scan in the controller) on the answer's path, and most cells write no file. The
controller asks, in each execute_request's ``user_expressions``, for ``EXPRESSION``: a look at
the workspace's listing (names, kinds, sizes, mtimes, inodes) compared with the one taken at
the previous ask. The reply says True or False; only True (or no answer: a failed cell, an
older kernel, a name the user replaced) costs a sync. The first ask answers True.

Standalone on purpose, like outputcap.py: it runs inside the sandbox from the lean sandbox env,
so it uses only the stdlib, and it is loaded by path at kernel start. It adds one attribute
to the shell (``ATTRIBUTE``), nothing to the user's namespace.
"""

from __future__ import annotations

import os
from typing import Any

ATTRIBUTE = "threadbox_workspace_changed"
EXPRESSION = f"get_ipython().{ATTRIBUTE}()"

Entry = tuple[str, int, int, int, int]


def listing(root: str) -> list[Entry]:
    """Every entry under ``root``, never following a link; what cannot be read is skipped
    (the sync itself reports it)."""
    found: list[Entry] = []
    stack = [root]
    while stack:
        folder = stack.pop()
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for entry in entries:
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            found.append((entry.path, st.st_mode, st.st_ino, st.st_size, st.st_mtime_ns))
            if entry.is_dir(follow_symlinks=False):
                stack.append(entry.path)
    found.sort()
    return found


class Watcher:
    def __init__(self, root: str) -> None:
        self.root = root
        self.last: list[Entry] | None = None

    def changed(self) -> bool:
        now = listing(self.root)
        changed, self.last = now != self.last, now
        return changed


def load_ipython_extension(ip: Any) -> None:
    # The kernel starts in the workspace (the pod's launcher and the local backend both say so).
    setattr(ip, ATTRIBUTE, Watcher(os.getcwd()).changed)
