"""The STS check's verdict and the sentence the controller refuses to start with."""

from __future__ import annotations

from controller.k8s.sts_check import Escape, ProbeResult

PREFIX = "threads/_sts-probe-ab12/"
OTHER = "threads/_sts-probe-ab12-other/canary"


def test_no_escape_is_enforcement() -> None:
    assert ProbeResult("minio:9000", PREFIX, OTHER, ()).enforced


def test_one_escape_names_the_object_it_read() -> None:
    result = ProbeResult("minio:9000", PREFIX, OTHER, (Escape.READ,))
    assert not result.enforced
    assert result.problem() == (
        "MinIO at minio:9000 does not enforce STS session policies: a credential scoped to "
        "threads/_sts-probe-ab12/ could read threads/_sts-probe-ab12-other/canary; "
        "upgrade MinIO (see GHSA-jjjj-jwhf-8rgr) before serving sandboxes"
    )


def test_every_escape_is_named_in_one_sentence() -> None:
    result = ProbeResult("m:1", PREFIX, OTHER, (Escape.LIST, Escape.SERVICE_ACCOUNT))
    assert result.problem() == (
        "MinIO at m:1 does not enforce STS session policies: a credential scoped to "
        "threads/_sts-probe-ab12/ could list objects outside threads/_sts-probe-ab12/ and create a "
        "service account for itself; upgrade MinIO (see GHSA-jjjj-jwhf-8rgr) before serving sandboxes"
    )
