import re

import pytest

from controller.identity import ThreadKey, is_thread_id, thread_id

DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


@pytest.mark.parametrize(
    "key",
    [
        ThreadKey("slack", "T0123", "C0456", "1712345678.000100"),
        ThreadKey("Slack App!", "T/../..", "C 0456\n", "ts;rm -rf /"),
        ThreadKey("ü" * 300, "x" * 10_000, "", ""),
        ThreadKey("", "", "", ""),
        ThreadKey("api", "local", "console", "名前 with spaces/and/slashes"),
    ],
)
def test_id_is_safe_everywhere(key: ThreadKey) -> None:
    tid = thread_id(key)
    assert len(tid) <= 32
    assert DNS1123_LABEL.match(tid), tid  # object-name suffix
    assert LABEL_VALUE.match(tid), tid  # label value
    assert "/" not in tid and ".." not in tid  # S3 prefix segment
    assert is_thread_id(tid)


def test_id_is_stable_and_distinct() -> None:
    a = ThreadKey("slack", "T1", "C1", "1.0")
    assert thread_id(a) == thread_id(ThreadKey("slack", "T1", "C1", "1.0")) == a.id
    others = [
        ThreadKey("slack", "T1", "C1", "1.1"),
        ThreadKey("slack", "T1", "C2", "1.0"),
        ThreadKey("slack", "T2", "C1", "1.0"),
        # Joining without a separator would make these two collide.
        ThreadKey("slack", "T1C", "1", "1.0"),
    ]
    assert len({thread_id(k) for k in [a, *others]}) == 5


def test_is_thread_id_rejects_paths() -> None:
    assert not is_thread_id("../etc")
    assert not is_thread_id("api-" + "a" * 16 + "/x")
    assert not is_thread_id("")
