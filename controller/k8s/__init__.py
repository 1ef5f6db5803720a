"""Kubernetes pieces of the pod-per-thread backend.

Pure object builders and small helpers, one concept per module (the style of
kubespawner's objects.py): nothing here talks to the API server, so every field
can be unit-tested without a cluster. ``controller/backends/kubernetes.py`` is
the only caller that does I/O. The pod/Secret shapes follow
``docs/sandbox-pod-contract.md``.
"""
