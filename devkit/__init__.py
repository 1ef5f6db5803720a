"""Tools shared by tests and benchmarks: real services and clients; not shipped in the controller image.

- ``ports``: a free loopback port;
- ``minio``: a real MinIO server from the cached binary (hack/install-minio.sh);
- ``client``: the bootstrap admin token and clients of a running controller's API;
- ``procserver``: ``threadbox serve`` in a subprocess of its own;
- ``ready``: waiting for a child process's server to answer;
- ``fake_slack`` and ``slack_events``: a fake Slack Web API, and signed Events API deliveries to the controller;
- ``load``: ``/healthz`` polled from a process of its own while a load runs, and one execute turn's events.
"""
