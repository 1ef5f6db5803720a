"""What the model is told about the sandbox: libraries, the thread's files, this turn's attachments."""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Sequence

from controller.profiles import Profile
from controller.sandbox_env import SandboxEnvError, requirements_file
from controller.stores.base import StoredFile

log = logging.getLogger(__name__)

# The requirement's name, before any extras, version specifier or marker.
REQUIREMENT_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")
MAX_FILES_LISTED = 50

INSTRUCTIONS = """\
You are a data assistant in a chat thread. You have a private Python sandbox (a Jupyter kernel) \
for this thread: call the `{tool}` tool to run code in it. Variables persist between calls \
in the same conversation; files in the working directory persist across the whole thread.
- To answer questions about data or files, run code; do not guess numbers.
- Work in small steps and print what you need to see. Outputs you get back are truncated.
- Plots: use matplotlib and call plt.show(); the user sees the figure, you only see "[image]".
- Files the user should get: save them in the working directory.
- The sandbox may have no internet access, and installing packages may fail.
- Answer in concise Markdown."""


@functools.cache
def preinstalled_libraries() -> tuple[str, ...]:
    """Top-level libraries of the sandbox image, from sandbox-image/requirements.in."""
    try:
        path = requirements_file().with_name("requirements.in")
        text = path.read_text()
    except (SandboxEnvError, OSError) as exc:
        log.warning("cannot list the sandbox's libraries: %s", exc)
        return ()
    names = (REQUIREMENT_NAME.match(line.split("#", 1)[0]) for line in text.splitlines())
    return tuple(m[1] for m in names if m)


def describe_files(files: Sequence[StoredFile]) -> str:
    if not files:
        return "The working directory is empty."
    shown = sorted(files, key=lambda f: f.name)[:MAX_FILES_LISTED]
    lines = [f"- {f.name} ({f.size} bytes)" for f in shown]
    if len(files) > len(shown):
        lines.append(f"- ... and {len(files) - len(shown)} more")
    return "Files in the working directory:\n" + "\n".join(lines)


def system_prompt(
    files: Sequence[StoredFile], attachments: Sequence[str], tool: str, profile: Profile | None = None
) -> str:
    """What the model is told; a ``profile``'s own instructions and libraries replace the
    built-in ones (its image's requirements.in)."""
    own = profile.system_prompt if profile else None
    libraries = profile.libraries if profile and profile.libraries is not None else preinstalled_libraries()
    parts = [
        # replace, not format: an operator's prompt may hold braces of its own
        (own or INSTRUCTIONS).replace("{tool}", tool),
        "Preinstalled libraries: " + ", ".join(libraries) + ".",
        describe_files(files),
    ]
    if attachments:
        parts.append("The user attached to this message: " + ", ".join(attachments) + ".")
    return "\n\n".join(parts)
