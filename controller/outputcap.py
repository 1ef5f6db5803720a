"""What a kernel launch needs to load the sandbox's output cap (sandbox-image/threadbox_sandbox/outputcap.py).

The extension is one standalone file, loaded by path when the kernel starts; nothing of it is
left in the user's namespace. The local backend passes ``kernel_args(path)`` (with the path
where the kernel sees the file) and ``kernel_env(limit)``; the pod's launcher does the same
with the copy in the sandbox image.
"""

from __future__ import annotations

from pathlib import Path

SOURCE = Path(__file__).resolve().parents[1] / "sandbox-image" / "threadbox_sandbox" / "outputcap.py"
ENV = "SANDBOX_MAX_OUTPUT_BYTES"
# THREADBOX_MAX_OUTPUT_BYTES by default (README: why 4 MiB).
DEFAULT_MAX_OUTPUT_BYTES = 4 * 2**20


def kernel_args(path: Path = SOURCE) -> list[str]:
    """IPKernelApp arguments that load the extension from ``path`` at kernel start."""
    load = f"__import__('runpy').run_path({str(path)!r})['load_ipython_extension'](get_ipython())"
    return [f"--IPKernelApp.exec_lines={load}"]


def kernel_env(limit: int) -> dict[str, str]:
    """The kernel's environment variable that sets the cap in bytes."""
    return {ENV: str(limit)}
