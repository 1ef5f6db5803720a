"""The sandbox's output cap (sandbox-image/threadbox_sandbox/outputcap.py): its limit's default
and the kernel's environment variable that sets it. controller/extensions.py loads it.
"""

from __future__ import annotations

ENV = "SANDBOX_MAX_OUTPUT_BYTES"
# THREADBOX_MAX_OUTPUT_BYTES by default (README: why 4 MiB).
DEFAULT_MAX_OUTPUT_BYTES = 4 * 2**20


def kernel_env(limit: int) -> dict[str, str]:
    """The kernel's environment variable that sets the cap in bytes."""
    return {ENV: str(limit)}
