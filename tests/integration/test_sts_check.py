"""The start-up proof that MinIO enforces STS session policies (controller/k8s/sts_check.py),
against the real MinIO that CI builds.

Its positive control stands in for a MinIO that ignores session policies: the check is handed
the caller's own unscoped keys instead of a minted STS credential, which is what such a MinIO
would in effect hand a sandbox, and must report every escape and keep the controller unready.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import Callable
from typing import Any

import pytest
from minio import Minio, MinioAdmin
from minio.credentials.providers import StaticProvider

from controller.config import Settings
from controller.k8s import sts_check
from controller.k8s.sts import scoped_credentials
from controller.k8s.sts_check import Escape, StsCheckFailed, probe, require_session_policies
from controller.runtime import preparation
from controller.storage import GatedStore, StorageGate, StorageNotReady
from devkit.minio import MinioServer
from devkit.ports import free_port

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


@pytest.fixture(scope="module")
def bucket(minio: MinioServer) -> str:
    return minio.store(f"sts-{secrets.token_hex(4)}").bucket


@pytest.fixture(scope="module")
def caller(minio: MinioServer, bucket: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """The controller's MinIO user, limited to the bucket's threads as the README advises."""
    return minio.bucket_user(bucket, tmp_path_factory.mktemp("mc"))


def k8s_settings(minio: MinioServer, bucket: str, keys: tuple[str, str], **overrides: Any) -> Settings:
    access_key, secret_key = keys
    base = {"minio_endpoint": minio.endpoint, "minio_access_key": access_key, "minio_secret_key": secret_key}
    return Settings(backend="kubernetes", store="minio", minio_bucket=bucket, **(base | overrides))


def unscoped(keys: tuple[str, str]) -> Callable[[str], dict[str, Any]]:
    """A "minting" that hands out the caller's own keys: what a MinIO that does not enforce
    session policies amounts to."""
    access_key, secret_key = keys
    return lambda _thread: {"access_key": access_key, "secret_key": secret_key, "session_token": None}


def objects(minio: MinioServer, bucket: str) -> list[str]:
    root = Minio(minio.endpoint, minio.access_key, minio.secret_key, secure=False)
    return [o.object_name or "" for o in root.list_objects(bucket, recursive=True)]


def service_accounts(minio: MinioServer, user: str) -> list[Any]:
    admin = MinioAdmin(
        endpoint=minio.endpoint, credentials=StaticProvider(minio.access_key, minio.secret_key), secure=False
    )
    return list(json.loads(admin.list_service_account(user)).get("accounts") or [])


@pytest.mark.parametrize("who", ["bucket user", "root"])
def test_minio_enforces_session_policies_and_the_check_leaves_nothing(
    minio: MinioServer, bucket: str, caller: tuple[str, str], who: str
) -> None:
    # Root too: the cluster tests and the dev chart give the controller MinIO's root keys.
    keys = caller if who == "bucket user" else (minio.access_key, minio.secret_key)
    result = require_session_policies(k8s_settings(minio, bucket, keys))
    assert result.enforced and result.escapes == ()
    assert result.prefix.startswith("threads/_sts-probe-") and result.prefix.endswith("/")
    assert result.other.startswith(result.prefix.rstrip("/") + "-other/")
    assert objects(minio, bucket) == []
    assert service_accounts(minio, keys[0]) == []


def test_an_unscoped_credential_escapes_every_way_and_is_cleaned_up(
    minio: MinioServer, bucket: str, caller: tuple[str, str]
) -> None:
    result = probe(minio.endpoint, *caller, bucket, False, unscoped(caller))
    assert result.escapes == (Escape.READ, Escape.LIST, Escape.SERVICE_ACCOUNT)
    assert not result.enforced
    assert objects(minio, bucket) == []
    assert service_accounts(minio, caller[0]) == []  # the one it made was deleted again


def first_try(minio: MinioServer, settings: Settings) -> tuple[StorageGate, GatedStore]:
    """The controller's storage gate after its start-up try (the backend needs no cluster for it)."""
    store = minio.store(settings.minio_bucket)
    gate = StorageGate(store, preparation(settings, store))

    async def start_and_stop() -> None:
        await gate.start()
        await gate.close()

    asyncio.run(start_and_stop())
    return gate, GatedStore(store, gate)


def test_storage_stays_unready_while_session_policies_are_not_enforced(
    minio: MinioServer, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The minting seam, replaced for the whole start-up path. Root keys, as the cluster tests
    # give the controller: the bucket user may not call GetBucketLocation, which the store's
    # bucket check needs.
    root = (minio.access_key, minio.secret_key)
    monkeypatch.setattr(sts_check, "scoped_credentials", lambda *_a, **_kw: unscoped(root)(""))
    gate, store = first_try(minio, k8s_settings(minio, bucket, root))
    reason = gate.reason or ""
    assert reason.startswith(
        f"MinIO at {minio.endpoint} does not enforce STS session policies: "
        "a credential scoped to threads/_sts-probe-"
    )
    assert "and list objects outside threads/_sts-probe-" in reason and reason.endswith(
        "and create a service account for itself; "
        "upgrade MinIO (see GHSA-jjjj-jwhf-8rgr) before serving sandboxes"
    )
    with pytest.raises(StorageNotReady):  # so no request reaches a sandbox (a 503 with the reason)
        store.list_threads()
    assert objects(minio, bucket) == []
    assert service_accounts(minio, root[0]) == []


def test_a_credential_that_cannot_use_its_own_prefix_proves_nothing(
    minio: MinioServer, bucket: str, caller: tuple[str, str]
) -> None:
    def elsewhere(_thread: str) -> dict[str, Any]:  # a real STS credential, for another thread
        return scoped_credentials(minio.endpoint, *caller, bucket, "t-someone-else")

    with pytest.raises(StsCheckFailed) as failed:
        probe(minio.endpoint, *caller, bucket, False, elsewhere)
    assert str(failed.value) == (
        f"an STS credential from MinIO at {minio.endpoint} could not write and read its own prefix "
        "(AccessDenied), so sandboxes could not use their storage either"
    )
    assert objects(minio, bucket) == []


def test_unreachable_sts_keeps_the_controller_unready_with_a_sentence(
    minio: MinioServer, bucket: str
) -> None:
    endpoint = f"127.0.0.1:{free_port()}"  # nothing listens there
    gate, _ = first_try(minio, k8s_settings(minio, bucket, ("user", "secret"), minio_endpoint=endpoint))
    reason = gate.reason or ""
    assert not gate.ready
    assert reason.startswith(
        f"MinIO at {endpoint} is unreachable, so its STS session policies cannot be checked: "
    )
    assert "Connection refused" in reason
