"""Kubernetes pieces of the pod-per-thread backend.

Pure object builders and small helpers, one concept per module (the style of
kubespawner's objects.py): ``objects``, ``names``, ``podstate``, ``connection`` and
``storage`` never talk to the API server, so every field can be unit-tested without a
cluster. The modules that do I/O (the warm ``pool``, and ``controller/backends/kubernetes.py``)
share the plumbing in ``api``. The pod/Secret shapes follow ``docs/sandbox-pod-contract.md``.
"""
