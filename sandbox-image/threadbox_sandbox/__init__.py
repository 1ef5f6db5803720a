"""The sandbox pod's entrypoint: restore the thread's files, supervise its kernel, serve the in-pod server.

See docs/sandbox-pod-contract.md for what the Kubernetes backend relies on.
"""
