"""Forking a thread on the local backend (real kernels, issue 15): the fork has the original's
files and variables, its turns never reach the original, only who may see a thread may fork
it, and saved variables count against the owner's storage quota."""

from __future__ import annotations

import io
from typing import Any

import pytest

from controller.auth import create_token
from controller.kernelstate import BLOB
from devkit.client import bearer
from tests.integration.test_kernel_state import FAST_REAP, nothing_kept, reaped, state_notes
from tests.support.client import create_thread, errors, run, stdout

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]


def test_a_fork_has_the_files_and_variables_and_the_original_keeps_its_own(api: Any) -> None:
    client = api()
    tid = create_thread(client, "orig")
    stdout(run(client, tid, "x = 41; open('data.txt', 'w').write('orig')"))  # the sandbox stays live
    resp = client.post(f"/threads/{tid}/fork", json={"name": "branch"})
    assert resp.status_code == 201, resp.text
    fork = resp.json()
    assert (fork["name"], fork["forked_from"], fork["state"], fork["live"]) == ("branch", tid, True, False)
    assert "saved just now" in fork["note"]
    assert client.get(f"/threads/{fork['id']}").json()["forked_from"] == tid

    first = run(
        client, fork["id"], "print(x, open('data.txt').read()); x = 99\nopen('new.txt', 'w').write('f')"
    )
    assert state_notes(first) == ["Kernel state: restored x."]
    assert stdout(first) == "41 orig\n"
    stdout(run(client, fork["id"], "open('data.txt', 'w').write('changed')"))

    import_os = "import os; print(x, open('data.txt').read(), os.path.exists('new.txt'))"
    assert stdout(run(client, tid, import_os)) == "41 orig False\n"
    assert [f["name"] for f in client.get(f"/threads/{tid}/files").json()] == ["data.txt"]
    # The name is the fork's now: a second fork of that name is refused, and nothing changes.
    again = client.post(f"/threads/{tid}/fork", json={"name": "branch"})
    assert again.status_code == 409 and "exists already" in again.json()["detail"]
    assert client.get(f"/threads/{fork['id']}/files/data.txt").content == b"changed"


def test_only_who_sees_a_thread_may_fork_it_and_the_copy_counts_in_quotas(api: Any) -> None:
    client = api(user_max_bytes=150_000)
    tid = create_thread(client, "alices", user="alice")
    upload = client.post(f"/threads/{tid}/files", files={"file": ("big.bin", bytes(100_000))})
    assert upload.status_code == 201, upload.text
    bob, _ = create_token(client.runtime.store, "bob")
    before = client.get("/threads").json()
    refused = client.post(f"/threads/{tid}/fork", headers=bearer(bob))
    assert refused.status_code == 404, refused.text
    # Alice's copy would hold 200,000 bytes of her 150,000: refused, and no thread is made.
    over = client.post(f"/threads/{tid}/fork", headers=bearer(create_token(client.runtime.store, "alice")[0]))
    assert over.status_code == 413 and "your files would total" in over.json()["detail"]
    assert client.get("/threads").json() == before


NEAR_THE_QUOTA = 160_000  # user_max_bytes for near_the_quota()


def near_the_quota(client: Any) -> str:
    """Alice's thread whose variables (80,000 bytes) take more than the 60,000 of her
    NEAR_THE_QUOTA that the file of her other thread leaves."""
    other = create_thread(client, "other", user="alice")
    client.post(f"/threads/{other}/files", files={"file": ("f.bin", bytes(100_000))}).raise_for_status()
    tid = create_thread(client, "big", user="alice")
    stdout(run(client, tid, "big = bytes(80_000); small = 1"))
    return tid


def test_variables_over_the_quota_are_not_saved_and_the_fork_says_so(api: Any) -> None:
    client = api(user_max_bytes=NEAR_THE_QUOTA)
    tid = near_the_quota(client)
    fork = client.post(f"/threads/{tid}/fork").json()
    assert fork["state"] is False and fork["name"].startswith("big-fork-")
    assert "without variables: its variables take more than the 60,000 bytes" in fork["note"]
    saved = io.BytesIO()  # only the note that nothing was kept: the variables took no quota
    client.runtime.store.download_blob(tid, BLOB, saved)
    assert len(saved.getvalue()) < 1000
    events = run(client, fork["id"], "print(small)")
    assert state_notes(events) == [] and [e["ename"] for e in errors(events)] == ["NameError"]


def test_variables_over_the_users_quota_are_not_kept_at_reaping_and_the_next_start_says_so(
    api: Any,
) -> None:
    client = api(user_max_bytes=NEAR_THE_QUOTA, **FAST_REAP)
    tid = near_the_quota(client)
    assert reaped(client, tid)
    events = run(client, tid, "print('small' in dir())")
    assert state_notes(events) == [nothing_kept("60,000 bytes")]
    assert stdout(events) == "False\n"
