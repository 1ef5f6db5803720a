"""Short-lived MinIO credentials scoped to one thread's prefix (STS AssumeRole + session policy).

A sandbox pod gets these in its storage.json (docs/sandbox-pod-contract.md), never
the controller's own keys. The effective permissions are the intersection of the
calling user's policy and the inline session policy below, so the caller should be
a dedicated MinIO user limited to the bucket rather than root.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import urllib3
from minio.credentials.providers import AssumeRoleProvider
from pydantic import SecretStr

from controller.config import Settings
from controller.k8s.errors import StartFailed
from controller.k8s.storage import MIN_CREDENTIAL_SECONDS, credential_seconds, pod_storage
from controller.stores.minio import thread_prefix


def session_policy(bucket: str, thread_id: str) -> dict[str, Any]:
    """Objects under ``threads/<id>/`` only, and listing only with a prefix inside it."""
    prefix = thread_prefix(thread_id)
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
                "Resource": [f"arn:aws:s3:::{bucket}/{prefix}*"],
            },
            {
                "Effect": "Allow",
                "Action": ["s3:ListBucket"],
                "Resource": [f"arn:aws:s3:::{bucket}"],
                "Condition": {"StringLike": {"s3:prefix": [f"{prefix}*"]}},
            },
        ],
    }


def scoped_credentials(
    endpoint: str,
    access_key: str,
    secret_key: str,
    bucket: str,
    thread_id: str,
    duration: int = MIN_CREDENTIAL_SECONDS,
    secure: bool = False,
) -> dict[str, Any]:
    """Call AssumeRole on MinIO and return the pod's storage.json payload.

    Raises whatever the SDK raises when MinIO refuses (for example a wrong key) or is
    unreachable; the caller decides whether a sandbox may start without storage.
    """
    scheme = "https" if secure else "http"
    provider = AssumeRoleProvider(
        sts_endpoint=f"{scheme}://{endpoint}",
        access_key=access_key,
        secret_key=secret_key,
        duration_seconds=max(duration, MIN_CREDENTIAL_SECONDS),
        policy=json.dumps(session_policy(bucket, thread_id)),
        # Few, short retries (the SDK default is five with back-off): a sandbox start should
        # fail fast and clearly when MinIO is down, like every other store call.
        http_client=urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=3, read=30),
            retries=urllib3.Retry(total=2, backoff_factor=0.2, status_forcelist=[500, 502, 503, 504]),
        ),
    )
    creds = provider.retrieve()
    return {
        "endpoint": endpoint,
        "secure": secure,
        "bucket": bucket,
        "prefix": thread_prefix(thread_id),
        "access_key": creds.access_key,
        "secret_key": creds.secret_key,
        "session_token": creds.session_token,
        "expires": creds.expiration.timestamp() if creds.expiration else 0.0,
    }


@dataclass(frozen=True)
class PodCredentials:
    """Mints a thread's pod its storage.json with the controller's own MinIO user."""

    endpoint: str
    access_key: str
    secret_key: SecretStr
    bucket: str
    secure: bool
    pod_endpoint: str  # MinIO as pods reach it
    duration: int

    @classmethod
    def from_settings(cls, s: Settings) -> PodCredentials:
        if not (s.minio_endpoint and s.minio_access_key and s.minio_secret_key):
            raise ValueError("backend=kubernetes needs store=minio with its endpoint and keys")
        return cls(
            s.minio_endpoint,
            s.minio_access_key,
            s.minio_secret_key,
            s.minio_bucket,
            s.minio_secure,
            s.sandbox_minio_endpoint or s.minio_endpoint,
            credential_seconds(s.active_deadline_seconds),
        )

    def mint(self, thread_id: str) -> dict[str, Any]:
        """Blocking (a MinIO round trip); StartFailed if MinIO refuses or cannot be reached."""
        try:
            creds = scoped_credentials(
                self.endpoint,
                self.access_key,
                self.secret_key.get_secret_value(),
                self.bucket,
                thread_id,
                duration=self.duration,
                secure=self.secure,
            )
        except Exception as exc:
            raise StartFailed(f"could not get scoped storage credentials from MinIO: {exc}") from exc
        return pod_storage(creds, self.pod_endpoint)
