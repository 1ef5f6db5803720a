"""The Kubernetes layer's own error, apart from the API client: modules that only raise or catch
it (sts.py, which the runtime loads for every backend) need not import kubernetes_asyncio."""

from __future__ import annotations


class StartFailed(Exception):
    """A step of a sandbox start failed; the message says which and why, in a sentence."""
