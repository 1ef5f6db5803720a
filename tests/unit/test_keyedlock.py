"""KeyedLock: one holder per key, waiters in arrival order, and no memory of idle keys."""

from __future__ import annotations

import asyncio

from controller.keyedlock import KeyedLock

TIMEOUT = 5


async def test_holders_of_one_key_go_in_arrival_order_and_other_keys_do_not_wait() -> None:
    locks, order = KeyedLock(), []
    entered = asyncio.Event()
    release = asyncio.Event()

    async def first() -> None:
        async with locks.hold("t1"):
            entered.set()
            await release.wait()
            order.append("first")

    async def queued(name: str) -> None:
        async with locks.hold("t1"):
            order.append(name)

    tasks = [asyncio.create_task(first())]
    await entered.wait()
    for name in ("second", "third"):
        tasks.append(asyncio.create_task(queued(name)))
        await asyncio.sleep(0)  # let it reach the lock: arrival order is what is tested
    assert locks.waiting("t1") == 2 and locks.locked("t1")
    async with locks.hold("t2"):  # another thread is never held up
        assert not locks.locked("t3")
    release.set()
    await asyncio.wait_for(asyncio.gather(*tasks), TIMEOUT)
    assert order == ["first", "second", "third"]
    assert len(locks) == 0 and locks.waiting("t1") == 0


async def test_a_waiter_cancelled_in_the_queue_leaves_no_key_behind() -> None:
    locks = KeyedLock()
    async with locks.hold("t1"):
        waiter = asyncio.create_task(locks.hold("t1").__aenter__())
        await asyncio.sleep(0)
        assert locks.waiting("t1") == 1
        waiter.cancel()
        await asyncio.gather(waiter, return_exceptions=True)
        assert locks.waiting("t1") == 0
    assert len(locks) == 0
