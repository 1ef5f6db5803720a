"""The per-thread session policy that scopes a sandbox pod's MinIO credentials."""

from __future__ import annotations

import json

import pytest

from controller.k8s.sts import scoped_credentials, session_policy


def test_objects_only_under_the_threads_prefix() -> None:
    policy = session_policy("tb-data", "t-abc123")
    assert policy["Version"] == "2012-10-17"
    objects, listing = policy["Statement"]
    assert objects == {
        "Effect": "Allow",
        "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
        # The trailing slash matters: without it "t-abc1234" would match too.
        "Resource": ["arn:aws:s3:::tb-data/threads/t-abc123/*"],
    }
    assert listing == {
        "Effect": "Allow",
        "Action": ["s3:ListBucket"],
        "Resource": ["arn:aws:s3:::tb-data"],
        "Condition": {"StringLike": {"s3:prefix": ["threads/t-abc123/*"]}},
    }


def test_nothing_but_allow_statements_for_that_one_thread() -> None:
    policy = session_policy("b", "t-1")
    text = json.dumps(policy)
    assert all(s["Effect"] == "Allow" for s in policy["Statement"])
    assert "*:*" not in text and '"s3:*"' not in text  # no wildcard actions
    resources = [r for s in policy["Statement"] for r in s["Resource"]]
    assert resources == ["arn:aws:s3:::b/threads/t-1/*", "arn:aws:s3:::b"]
    assert session_policy("b", "t-2") != policy


def test_unreachable_minio_raises_instead_of_returning_empty_credentials() -> None:
    with pytest.raises(Exception, match=r"(?i)connection|refused|max retries"):
        scoped_credentials("127.0.0.1:9", "user", "secret", "b", "t-1")  # port 9: nothing listens
