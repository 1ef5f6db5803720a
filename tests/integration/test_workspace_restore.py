"""WorkspaceSync.restore against a real MinIO: concurrent downloads, and the failures around them."""

from __future__ import annotations

import contextlib
import itertools
import os
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

import pytest

from controller.quotas import Quotas
from controller.stores.base import StoredFile, StoreUnavailable
from controller.stores.minio import MinioStore
from controller.workspace import RESTORE_WORKERS, WorkspaceSync, scan, sha256_file

pytestmark = pytest.mark.integration


def seed(store: MinioStore, tmp_path: Path, sizes: dict[str, int]) -> dict[str, bytes]:
    """Upload random files of the given sizes through a real persist; returns their contents."""
    src = tmp_path / "seed"
    contents = {name: os.urandom(size) for name, size in sizes.items()}
    for name, data in contents.items():
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        (src / name).write_bytes(data)
    assert sorted(WorkspaceSync(store, "t-1", src, Quotas()).persist().changed) == sorted(sizes)
    return contents


def test_many_files_are_restored_by_several_downloads_at_once(minio: Any, tmp_path: Path) -> None:
    sizes = {f"d{i % 3}/f{i:02}.bin": (i * 97_003) % (3 << 20) for i in range(30)}  # 0 B to 3 MiB
    store = minio.store()
    contents = seed(store, tmp_path, sizes)
    started = threading.Barrier(RESTORE_WORKERS, timeout=30)
    arrivals = itertools.count()

    class Overlapping(MinioStore):
        """The real store; the first downloads wait until RESTORE_WORKERS of them run at once
        (downloads one at a time would break the barrier, failing the restore)."""

        def download_file(self, thread_id: str, name: str, out: BinaryIO) -> None:
            if next(arrivals) < RESTORE_WORKERS:
                started.wait()
            super().download_file(thread_id, name, out)

    ws = tmp_path / "ws"
    sync = WorkspaceSync(Overlapping(store.client, store.bucket), "t-1", ws, Quotas())
    assert sync.restore() == 30
    assert {name: path.read_bytes() for name, path in scan(ws).items()} == contents  # no temp files left
    assert sync.persist().changed == []  # what restore recorded matches the files on disk


def test_a_file_deleted_between_list_and_get_is_skipped(minio: Any, tmp_path: Path) -> None:
    store = minio.store()
    contents = seed(store, tmp_path, {f"f{i}": 1000 for i in range(8)})

    class DeletesAfterListing(MinioStore):
        def list_files(self, thread_id: str) -> list[StoredFile]:
            files = super().list_files(thread_id)
            self.delete_file(thread_id, "f3")  # another sandbox's persist, racing this restore
            return files

    ws = tmp_path / "ws"
    sync = WorkspaceSync(DeletesAfterListing(store.client, store.bucket), "t-1", ws, Quotas())
    assert sync.restore() == 7
    assert sorted(scan(ws)) == sorted(set(contents) - {"f3"})
    assert sync.persist().deleted == []  # the skipped file was never recorded as synced


class CuttingProxy:
    """A TCP proxy to MinIO that breaks every connection after ``limit`` response bytes."""

    def __init__(self, upstream: str, limit: int) -> None:
        host, port = upstream.rsplit(":", 1)
        self.upstream = (host, int(port))
        self.limit = limit
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.endpoint = f"127.0.0.1:{self.listener.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return  # closed
            server = socket.create_connection(self.upstream)
            threading.Thread(target=self._pump, args=(client, server, None), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, self.limit), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket, limit: int | None) -> None:
        sent = 0
        try:
            while (limit is None or sent < limit) and (data := src.recv(65536)):
                dst.sendall(data)
                sent += len(data)
        except OSError:
            pass
        for sock in (src, dst):  # shutdown, unlike close, also wakes the other pump's recv
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()


@contextmanager
def cutting_proxy(upstream: str, limit: int) -> Iterator[CuttingProxy]:
    proxy = CuttingProxy(upstream, limit)
    try:
        yield proxy
    finally:
        proxy.listener.close()


def test_a_download_broken_midway_fails_the_restore_and_records_nothing(minio: Any, tmp_path: Path) -> None:
    store = minio.store()
    seed(store, tmp_path, {f"f{i}.bin": 2 << 20 for i in range(6)})
    with cutting_proxy(minio.endpoint, limit=512 << 10) as proxy:  # the listing fits, no file does
        cut = MinioStore.connect(proxy.endpoint, minio.access_key, minio.secret_key, store.bucket)
        ws = tmp_path / "ws"
        sync = WorkspaceSync(cut, "t-1", ws, Quotas())
        with pytest.raises(StoreUnavailable, match="unavailable"):
            sync.restore()
    assert sync._seen is None  # so the sandbox refuses to persist and cannot wipe the store
    assert scan(ws) == {}  # neither truncated files nor temporary ones are left behind
    assert sorted(f.name for f in store.list_files("t-1")) == [f"f{i}.bin" for i in range(6)]
    fresh = tmp_path / "fresh"
    assert WorkspaceSync(store, "t-1", fresh, Quotas()).restore() == 6  # the direct path still works
    assert {name: sha256_file(path) for name, path in scan(fresh).items()} == {
        f.name: f.sha256 for f in store.list_files("t-1")
    }
