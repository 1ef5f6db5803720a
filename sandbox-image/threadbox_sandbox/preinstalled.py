"""``python -m threadbox_sandbox.preinstalled requirements.in``: the image's library list.

Run at image build time into /opt/sandbox/PREINSTALLED: the top-level libraries of
requirements.in with the versions actually installed, one ``name==version`` a line,
so anyone (the agent's prompt, a person with ``cat``) can see what user code gets.
"""

from __future__ import annotations

import re
import sys
from importlib import metadata
from pathlib import Path

REQUIREMENT_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


def requirement_names(text: str) -> list[str]:
    names = (REQUIREMENT_NAME.match(line.split("#", 1)[0]) for line in text.splitlines())
    return [m[1] for m in names if m]


def preinstalled(requirements_in: Path) -> list[str]:
    """``name==version`` for each top-level requirement; a missing one fails the build."""
    return [f"{name}=={metadata.version(name)}" for name in requirement_names(requirements_in.read_text())]


if __name__ == "__main__":
    print("\n".join(preinstalled(Path(sys.argv[1]))))
