"""Proof, at controller start, that MinIO confines a sandbox's STS credential to its prefix.

A sandbox pod's storage credential (controller/k8s/sts.py) is only as narrow as MinIO's
enforcement of the session policy. GHSA-jjjj-jwhf-8rgr was a MinIO bug where such a
credential created a service account for itself, which then had the parent user's full
rights. So before serving sandboxes the controller mints a credential exactly as for a
sandbox, for a reserved probe thread, and tries to escape with it: read and list outside
its prefix, and create a service account. Any success means MinIO does not enforce
session policies, and the controller refuses to start.
"""

from __future__ import annotations

import enum
import functools
import io
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import urllib3
from minio import Minio, MinioAdmin
from minio.credentials.providers import StaticProvider
from minio.error import MinioAdminException, S3Error

from controller.config import Settings
from controller.k8s.sts import scoped_credentials
from controller.stores.minio import thread_prefix

ADVISORY = "GHSA-jjjj-jwhf-8rgr"
# Thread ids are a lowercase slug, a dash and base32 (controller/identity.py), so a leading
# underscore never names a real thread.
PROBE_THREAD = "_sts-probe-"
# Scoped credentials may not call GetBucketLocation, which minio-py does unless told the region.
REGION = "us-east-1"

# thread id -> a storage.json payload as controller/k8s/sts.py returns it (the seam tests replace).
Mint = Callable[[str], dict[str, Any]]


class Escape(enum.Enum):
    """Something the probe credential could do although its session policy forbids it."""

    READ = "read {other}"
    LIST = "list objects outside {prefix}"
    SERVICE_ACCOUNT = "create a service account for itself"


@dataclass(frozen=True)
class ProbeResult:
    endpoint: str
    prefix: str  # the probe credential's own prefix
    other: str  # the canary object outside it
    escapes: tuple[Escape, ...]

    @property
    def enforced(self) -> bool:
        return not self.escapes

    def problem(self) -> str:
        """The one sentence the controller refuses to start with."""
        could = " and ".join(e.value.format(other=self.other, prefix=self.prefix) for e in self.escapes)
        return (
            f"MinIO at {self.endpoint} does not enforce STS session policies: a credential scoped to "
            f"{self.prefix} could {could}; upgrade MinIO (see {ADVISORY}) before serving sandboxes"
        )


class StsCheckFailed(Exception):
    """The check found an escape or could not run; the message is one sentence for the operator."""


def require_session_policies(settings: Settings, mint: Mint | None = None) -> ProbeResult:
    """Run the probe with the controller's MinIO settings; raise StsCheckFailed unless enforced."""
    s = settings
    assert s.minio_endpoint and s.minio_access_key and s.minio_secret_key  # config requires store=minio
    endpoint, key, secret = s.minio_endpoint, s.minio_access_key, s.minio_secret_key.get_secret_value()
    mint = mint or functools.partial(
        scoped_credentials, endpoint, key, secret, s.minio_bucket, secure=s.minio_secure
    )
    result = probe(endpoint, key, secret, s.minio_bucket, s.minio_secure, mint)
    if not result.enforced:
        raise StsCheckFailed(result.problem())
    return result


def probe(
    endpoint: str, access_key: str, secret_key: str, bucket: str, secure: bool, mint: Mint
) -> ProbeResult:
    """Mint a probe credential with ``mint`` and try each escape; every probe object is removed.

    Raises StsCheckFailed when MinIO is unreachable or the credential cannot even use its own
    prefix (then the check proves nothing)."""
    thread = f"{PROBE_THREAD}{secrets.token_hex(6)}"
    prefix, other = thread_prefix(thread), f"{thread_prefix(thread + '-other')}canary"
    own = _client(endpoint, access_key, secret_key, None, secure)
    with _reaching(endpoint), _removed(own, bucket, [other, f"{prefix}probe"]):
        _put(own, bucket, other)
        try:
            creds = mint(thread)
        except Exception as exc:  # the SDK raises many kinds; all mean no credential to test
            raise StsCheckFailed(f"MinIO at {endpoint} gave no STS credential for the check: {exc}") from exc
        scoped = _client(endpoint, creds["access_key"], creds["secret_key"], creds["session_token"], secure)
        _positive_control(scoped, bucket, f"{prefix}probe", endpoint)
        probe_admin = _admin(
            endpoint, creds["access_key"], creds["secret_key"], creds["session_token"], secure
        )
        found = {
            Escape.READ: _succeeds(lambda: _get(scoped, bucket, other)),
            Escape.LIST: _succeeds(lambda: _list(scoped, bucket, "threads/")),
            Escape.SERVICE_ACCOUNT: _service_account_created(
                probe_admin, _admin(endpoint, access_key, secret_key, None, secure)
            ),
        }
        escapes = tuple(escape for escape, escaped in found.items() if escaped)
    return ProbeResult(endpoint, prefix, other, escapes)


def _client(endpoint: str, access_key: str, secret_key: str, token: str | None, secure: bool) -> Minio:
    return Minio(endpoint, access_key, secret_key, token, secure=secure, region=REGION, http_client=_http())


def _admin(endpoint: str, access_key: str, secret_key: str, token: str | None, secure: bool) -> MinioAdmin:
    credentials = StaticProvider(access_key, secret_key, token)
    return MinioAdmin(endpoint=endpoint, credentials=credentials, secure=secure, http_client=_http())


def _http() -> urllib3.PoolManager:
    # Few, short retries (the SDK's default waits minutes): an unreachable MinIO fails start quickly.
    return urllib3.PoolManager(
        timeout=urllib3.Timeout(connect=3, read=30),
        retries=urllib3.Retry(total=2, backoff_factor=0.2, status_forcelist=[500, 502, 503, 504]),
    )


@contextmanager
def _reaching(endpoint: str) -> Iterator[None]:
    try:
        yield
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        raise StsCheckFailed(
            f"MinIO at {endpoint} is unreachable, so its STS session policies cannot be checked: {exc}"
        ) from exc
    except S3Error as exc:
        raise StsCheckFailed(
            f"MinIO at {endpoint} refused the STS check's setup with the controller's keys: {exc}"
        ) from exc


@contextmanager
def _removed(client: Minio, bucket: str, names: list[str]) -> Iterator[None]:
    """Remove the probe objects afterwards, whatever happened (removing a missing one is no error)."""
    try:
        yield
    finally:
        for name in names:
            client.remove_object(bucket, name)


def _positive_control(scoped: Minio, bucket: str, name: str, endpoint: str) -> None:
    try:
        _put(scoped, bucket, name)
        if _get(scoped, bucket, name) != name.encode():
            raise StsCheckFailed(
                f"MinIO at {endpoint} returned other bytes than the STS check wrote to {name}"
            )
    except S3Error as exc:
        raise StsCheckFailed(
            f"an STS credential from MinIO at {endpoint} could not write and read its own prefix "
            f"({exc.code}), so sandboxes could not use their storage either"
        ) from exc


def _succeeds(action: Callable[[], object]) -> bool:
    """True if MinIO allowed the action; any S3 error answer means it refused."""
    try:
        action()
    except S3Error:
        return False
    return True


def _service_account_created(probe_admin: MinioAdmin, own_admin: MinioAdmin) -> bool:
    """Try to create a service account with the probe credential; delete it again if that worked."""
    account = f"stsprobe{secrets.token_hex(6)}"  # named here, so it can be deleted whatever the answer says
    try:
        probe_admin.add_service_account(access_key=account, secret_key=secrets.token_hex(20))
    except MinioAdminException:
        return False
    try:
        own_admin.delete_service_account(account)
    except MinioAdminException as exc:
        raise StsCheckFailed(
            f"a session-scoped STS credential created the service account {account} on MinIO, which does "
            f"not enforce STS session policies (see {ADVISORY}), and the controller could not delete it "
            f"({exc}): delete it by hand and upgrade MinIO before serving sandboxes"
        ) from exc
    return True


def _put(client: Minio, bucket: str, name: str) -> None:
    data = name.encode()  # the object's own name: the read-back proves it is this object
    client.put_object(bucket, name, io.BytesIO(data), len(data))


def _get(client: Minio, bucket: str, name: str) -> bytes:
    response = client.get_object(bucket, name)
    try:
        return response.read()
    finally:
        response.close()
        response.release_conn()


def _list(client: Minio, bucket: str, prefix: str) -> list[str]:
    return [o.object_name or "" for o in client.list_objects(bucket, prefix=prefix, recursive=True)]
