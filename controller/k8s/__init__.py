"""Kubernetes pieces of the pod-per-thread backend, one responsibility per module.

Pure builders and readers never talk to the API server, so every field can be unit-tested
without a cluster: ``objects`` (pod, Secret, policies), ``placement`` (where pods may run),
``names``, ``podstate``, ``connection`` and ``storage``. The modules doing I/O all call the API server through
``api.Kube`` (one timeout, one error policy): ``pods`` (a pod and its Secret), ``policy``
(NetworkPolicies), ``lookup`` (finding sandboxes), ``cleanup``, ``liveness``, ``events``,
``lease`` (turn Leases), ``watch`` (the list-then-watch that feeds ``podcache`` and ``lease``),
``pool`` (the warm pool), ``claim`` (a warm pod for
a thread). ``podserver`` is the client of the in-pod server; ``sts`` and ``sts_check`` mint
and check pods' MinIO credentials. controller/backends/kubernetes.py is the facade over them;
nothing here imports it. The pod/Secret shapes follow ``docs/sandbox-pod-contract.md``.
"""
