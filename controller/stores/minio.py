"""ThreadStore on MinIO (or any S3): one bucket, one prefix per thread.

Layout: ``threads/<thread_id>/files/<name>`` with the sha256 in user metadata
(listed with MinIO's metadata extension, so an incremental persist needs one
LIST per thread and no HEADs), and ``threads/<thread_id>/<key>.json``.
The per-thread prefix is what a sandbox's scoped credentials are limited to.
Non-thread state is ``state/<key>.json``, outside every thread prefix.
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

import urllib3
from minio import Minio
from minio.commonconfig import CopySource
from minio.datatypes import Object
from minio.deleteobjects import DeleteObject
from minio.error import InvalidResponseError, S3Error
from urllib3 import BaseHTTPResponse

from controller.stores.base import (
    NotInStore,
    StoredFile,
    StoreUnavailable,
    check_state_key,
    claim_name,
    names_after,
)

T = TypeVar("T")
SHA_META = "sha256"
COPY_CHUNK = 1 << 20  # bytes per read of a download


def thread_prefix(thread_id: str) -> str:
    return f"threads/{thread_id}/"


def _blob(thread_id: str, key: str) -> str:
    return f"{thread_prefix(thread_id)}blobs/{check_state_key(key)}"


class MinioStore:
    def __init__(self, client: Minio, bucket: str) -> None:
        self.client = client
        self.bucket = bucket

    @classmethod
    def connect(
        cls,
        endpoint: str,
        access_key: str,
        secret_key: str,
        bucket: str,
        secure: bool = False,
        session_token: str | None = None,
        region: str | None = None,
    ) -> MinioStore:
        """``region``: give it with scoped credentials, whose policy forbids GetBucketLocation,
        which minio-py otherwise calls before the first request to an unknown bucket."""
        # Few, short retries: an unavailable MinIO must surface as a clear error quickly,
        # not hang a Slack turn for minutes.
        http = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=3, read=60),
            retries=urllib3.Retry(total=2, backoff_factor=0.2, status_forcelist=[500, 502, 503, 504]),
        )
        client = Minio(
            endpoint,
            access_key=access_key,
            secret_key=secret_key,
            session_token=session_token,
            secure=secure,
            region=region,
            http_client=http,
        )
        return cls(client, bucket)

    def _call(self, fn: Callable[[], T]) -> T:
        try:
            return fn()
        except S3Error as exc:
            if exc.code == "NoSuchBucket":  # MinIO restarted empty: a 503 until the bucket is made again
                raise self._no_bucket() from exc
            raise
        # InvalidResponseError: an answer that is not S3's, as from a MinIO starting or stopping.
        except (urllib3.exceptions.HTTPError, OSError, InvalidResponseError) as exc:
            raise self._unavailable(exc) from exc

    def _found(self, fn: Callable[[], T], what: str) -> T:
        """``fn``'s answer; NotInStore when the object it asks for is not there."""
        try:
            return self._call(fn)
        except S3Error as exc:
            if exc.code in ("NoSuchKey", "NoSuchBucket"):
                raise NotInStore(f"no {what}") from exc
            raise

    def _unavailable(self, exc: Exception) -> StoreUnavailable:
        return StoreUnavailable(f"MinIO at {self.client._base_url.host} is unavailable: {exc}")

    def _no_bucket(self) -> StoreUnavailable:
        return StoreUnavailable(f"MinIO bucket {self.bucket!r} does not exist")

    def ensure_bucket(self) -> None:
        if self._call(lambda: self.client.bucket_exists(self.bucket)):
            return
        try:
            self._call(lambda: self.client.make_bucket(self.bucket))
        except S3Error as exc:
            if exc.code == "BucketAlreadyOwnedByYou":  # another replica made it in between
                return
            raise StoreUnavailable(f"{self._no_bucket()} and could not be made ({exc.code})") from exc

    def check(self) -> None:
        if not self._call(lambda: self.client.bucket_exists(self.bucket)):
            raise self._no_bucket()

    def _names(self, prefix: str, suffix: str, after: str | None, limit: int | None) -> list[str]:
        return self._call(lambda: names_after(_entries(self, prefix, suffix, after), after, limit))

    def _objects(self, prefix: str, with_meta: bool = False) -> list[Any]:
        """Every object under ``prefix``, at any depth (minio-py types them loosely: Any)."""
        listing = functools.partial(self.client.list_objects, recursive=True, include_user_meta=with_meta)
        return self._call(lambda: list(listing(self.bucket, prefix=prefix)))

    def list_threads(self) -> list[str]:
        return sorted(self._names("threads/", "/", None, None))

    def page_threads(self, after: str | None, limit: int) -> list[str]:
        return self._names("threads/", "/", after, limit)

    def get_json(self, thread_id: str, key: str) -> Any | None:
        try:
            return json.loads(self._get(thread_id, f"{key}.json"))
        except NotInStore:
            return None

    def put_json(self, thread_id: str, key: str, value: Any) -> None:
        data = json.dumps(value).encode()
        name = f"{thread_prefix(thread_id)}{key}.json"
        self._call(lambda: self.client.put_object(self.bucket, name, io.BytesIO(data), len(data)))

    def list_json(self, thread_id: str, folder: str) -> dict[str, Any]:
        names = sorted(self._names(f"{thread_prefix(thread_id)}{folder}/", ".json", None, None))
        values = {n: self.get_json(thread_id, f"{folder}/{n}") for n in names}
        return {n: v for n, v in values.items() if v is not None}

    def delete_json(self, thread_id: str, key: str) -> None:
        name = f"{thread_prefix(thread_id)}{key}.json"
        self._call(lambda: self.client.remove_object(self.bucket, name))

    def list_files(self, thread_id: str) -> list[StoredFile]:
        prefix = f"{thread_prefix(thread_id)}files/"
        objs = self._objects(prefix, with_meta=True)
        return [
            StoredFile(
                name=o.object_name[len(prefix) :],
                size=o.size or 0,
                sha256=_sha_from_meta(o.metadata),
                modified=o.last_modified.timestamp() if o.last_modified else 0.0,
            )
            for o in objs
        ]

    def put_file(self, thread_id: str, name: str, source: Path, sha256: str) -> StoredFile:
        key = f"{thread_prefix(thread_id)}files/{name}"
        self._call(
            lambda: self.client.fput_object(self.bucket, key, str(source), metadata={SHA_META: sha256})
        )
        stat = self._call(lambda: self.client.stat_object(self.bucket, key))
        modified = stat.last_modified.timestamp() if stat.last_modified else 0.0
        return StoredFile(name=name, size=stat.size or 0, sha256=sha256, modified=modified)

    @contextmanager
    def _object(self, thread_id: str, rel: str) -> Iterator[BaseHTTPResponse]:
        with self._object_at(f"{thread_prefix(thread_id)}{rel}", f"{rel!r} in thread {thread_id}") as resp:
            yield resp

    @contextmanager
    def _object_at(self, key: str, what: str) -> Iterator[BaseHTTPResponse]:
        resp = self._found(lambda: self.client.get_object(self.bucket, key), what)
        try:
            yield resp
        finally:
            resp.close()
            resp.release_conn()

    def _get(self, thread_id: str, rel: str) -> bytes:
        with self._object(thread_id, rel) as resp:
            return resp.read()

    def download_file(self, thread_id: str, name: str, out: BinaryIO) -> None:
        # Not fget_object: it HEADs every object first, which a restore (sizes already listed)
        # does not need.
        self._download(thread_id, f"files/{name}", out)

    def _download(self, thread_id: str, rel: str, out: BinaryIO) -> None:
        with self._object(thread_id, rel) as resp:
            try:
                shutil.copyfileobj(resp, out, COPY_CHUNK)
            except urllib3.exceptions.HTTPError as exc:  # not OSError: that is the local disk
                raise self._unavailable(exc) from exc

    def read_file(self, thread_id: str, name: str) -> bytes:
        return self._get(thread_id, f"files/{name}")

    def delete_file(self, thread_id: str, name: str) -> None:
        key = f"{thread_prefix(thread_id)}files/{name}"
        self._call(lambda: self.client.remove_object(self.bucket, key))

    def put_blob(self, thread_id: str, key: str, source: Path) -> int:
        self._call(lambda: self.client.fput_object(self.bucket, _blob(thread_id, key), str(source)))
        return source.stat().st_size

    def download_blob(self, thread_id: str, key: str, out: BinaryIO) -> None:
        self._download(thread_id, f"blobs/{check_state_key(key)}", out)

    def delete_blob(self, thread_id: str, key: str) -> None:
        self._call(lambda: self.client.remove_object(self.bucket, _blob(thread_id, key)))

    def blob_size(self, thread_id: str, key: str) -> int | None:
        stat = functools.partial(self.client.stat_object, self.bucket, _blob(thread_id, key))
        with contextlib.suppress(NotInStore):
            return self._found(stat, key).size or 0
        return None

    def copy_file(self, thread_id: str, name: str, to_thread: str) -> StoredFile:
        source = self._copy(thread_id, f"files/{name}", to_thread)
        return StoredFile(name, source.size or 0, _sha_from_meta(source.metadata), time.time())

    def copy_blob(self, thread_id: str, key: str, to_thread: str) -> int:
        return self._copy(thread_id, f"blobs/{check_state_key(key)}", to_thread).size or 0

    def _copy(self, thread_id: str, rel: str, to_thread: str) -> Object:
        """Server-side copy, metadata included; the source's stat (NotInStore if it is gone)."""
        key, what = f"{thread_prefix(thread_id)}{rel}", f"{rel!r} in thread {thread_id}"
        source = self._found(lambda: self.client.stat_object(self.bucket, key), what)
        copy = CopySource(self.bucket, key)
        self._call(lambda: self.client.copy_object(self.bucket, f"{thread_prefix(to_thread)}{rel}", copy))
        return source

    def delete_thread(self, thread_id: str) -> None:
        objs = self._objects(thread_prefix(thread_id))
        errors = self._call(
            lambda: list(self.client.remove_objects(self.bucket, [DeleteObject(o.object_name) for o in objs]))
        )
        if errors:
            raise StoreUnavailable(f"could not delete {len(errors)} objects of thread {thread_id}")

    def claim(self, key: str) -> bool:
        # A conditional PUT is atomic in MinIO: exactly one of several racing replicas gets 200.
        # minio-py has no public API for If-None-Match, hence the internal _execute.
        name = f"claims/{claim_name(key)}"
        try:
            self._call(
                lambda: self.client._execute(
                    "PUT", self.bucket, name, body=b"", headers={"If-None-Match": "*"}
                )
            )
        except S3Error as exc:
            if exc.code in ("PreconditionFailed", "ConditionalRequestConflict"):
                return False
            raise
        return True

    def release(self, key: str) -> None:
        self._call(lambda: self.client.remove_object(self.bucket, f"claims/{claim_name(key)}"))

    def get_state(self, key: str) -> Any | None:
        try:
            with self._object_at(f"state/{check_state_key(key)}.json", f"state {key!r}") as resp:
                return json.loads(resp.read())
        except NotInStore:
            return None

    def put_state(self, key: str, value: Any) -> None:
        data = json.dumps(value).encode()
        name = f"state/{check_state_key(key)}.json"
        self._call(lambda: self.client.put_object(self.bucket, name, io.BytesIO(data), len(data)))

    def delete_state(self, key: str) -> None:
        name = f"state/{check_state_key(key)}.json"
        self._call(lambda: self.client.remove_object(self.bucket, name))

    def list_state(self, prefix: str) -> dict[str, Any]:
        names = sorted(self._names(f"state/{check_state_key(prefix)}/", ".json", None, None))
        values = {f"{prefix}/{n}": self.get_state(f"{prefix}/{n}") for n in names}
        return {k: v for k, v in values.items() if v is not None}

    def page_state(self, prefix: str, after: str | None, limit: int) -> list[str]:
        return self._names(f"state/{check_state_key(prefix)}/", ".json", after, limit)


def _entries(store: MinioStore, prefix: str, suffix: str, after: str | None) -> Iterator[str]:
    """Names of the entries ending in ``suffix`` directly under ``prefix``, in key order, after
    the key ``prefix + after`` (so ``after``'s own entry comes too). Lazy: S3 answers a LIST with
    up to 1000 entries, so a short page costs one."""
    start = f"{prefix}{after}" if after else None
    for o in store.client.list_objects(store.bucket, prefix=prefix, start_after=start):
        if o.object_name.endswith(suffix):
            yield o.object_name[len(prefix) : -len(suffix)]


def _sha_from_meta(meta: Any) -> str:
    for key, value in (meta or {}).items():
        if key.lower() in ("x-amz-meta-sha256", SHA_META):
            return str(value)
    return ""
