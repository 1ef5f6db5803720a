import pytest

from controller.quotas import QuotaExceeded, Quotas, Usage


def test_single_file_limit_message() -> None:
    with pytest.raises(QuotaExceeded, match=r"big.bin is 2.0 MiB, over the 1.0 MiB limit"):
        Quotas(max_file_bytes=2**20).check_file("big.bin", 2 * 2**20)


def test_thread_and_user_limits() -> None:
    q = Quotas(thread_max_files=2, thread_max_bytes=100, user_max_files=3, user_max_bytes=150)
    q.check_thread("a", Usage(2, 100))
    with pytest.raises(QuotaExceeded, match="limit of 2 files"):
        q.check_thread("c", Usage(3, 10))
    with pytest.raises(QuotaExceeded, match="would total"):
        q.check_thread("c", Usage(1, 101))
    with pytest.raises(QuotaExceeded, match="you already have your limit of 3 files"):
        q.check_user("d", Usage(4, 1))
    with pytest.raises(QuotaExceeded, match="your files would total"):
        q.check_user("d", Usage(1, 151))


def test_zero_means_unlimited() -> None:
    q = Quotas()
    q.check_file("x", 10**12)
    q.check_thread("x", Usage(10**6, 10**12))
    assert not q.per_user


def test_usage_replace_counts_overwrite_once() -> None:
    u = Usage(2, 100)
    assert u.replace(None, 10) == Usage(3, 110)
    assert u.replace(40, 10) == Usage(2, 70)
