"""Short-lived MinIO credentials scoped to one thread's prefix (STS AssumeRole + session policy).

A sandbox pod gets these in its storage.json (docs/sandbox-pod-contract.md), never
the controller's own keys. The effective permissions are the intersection of the
calling user's policy and the inline session policy below, so the caller should be
a dedicated MinIO user limited to the bucket rather than root.
"""

from __future__ import annotations

import json
from typing import Any

import urllib3
from minio.credentials.providers import AssumeRoleProvider

from controller.stores.minio import thread_prefix

# MinIO's AssumeRole accepts 900 s to 7 days; the SDK provider raises anything under an
# hour to one hour, so 3600 is the shortest lifetime it can ask for.
MIN_DURATION = 3600


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
    duration: int = 3600,
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
        duration_seconds=max(duration, MIN_DURATION),
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
