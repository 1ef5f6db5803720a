"""The sandbox pod's entrypoint: restore the thread's files, supervise its kernel, serve the agent.

See docs/sandbox-pod-contract.md for what the Kubernetes backend relies on.
"""
