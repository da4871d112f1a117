"""The lean read lock for pyfuse3's loop (mountfs/fuseloop.py).

In process: the lock takes no checkpoint when free, parks the others while
held, hands over on release and lets cancellation reach a parked task;
pyfuse3 runs on the lean trio only within the block, only when asked, only
when it runs on trio itself, and the facade is trio but for its Lock.

End to end, with each loop: a request whose handler waits 2 s on the store
(a cold read of an S3 store whose replies a proxy holds back) does not hold
up the requests of other processes meanwhile."""

from __future__ import annotations

import os
import threading
import time

import pyfuse3
import pytest
import trio
import trio.testing

from tests.faultproxy import running
from trunkfs.mountfs.fuseloop import LEAN_TRIO, LeanLock, lean_read_lock


async def test_a_free_lean_lock_takes_no_checkpoint_and_a_held_one_parks_the_others() -> None:
    lock = LeanLock()
    with trio.testing.assert_no_checkpoints():
        async with lock:
            assert lock.held
    assert not lock.held
    order: list[str] = []

    async def taker(name: str) -> None:
        async with lock:
            order.append(f"{name} in")
            await trio.sleep(0.01)
            order.append(f"{name} out")

    async with trio.open_nursery() as nursery:
        for name in "abc":
            nursery.start_soon(taker, name)
        await trio.testing.wait_all_tasks_blocked()
        assert lock.held and len(lock.lot) == 2, "one holds it, two are parked"
    # one at a time (trio starts the three in any order)
    assert [x.split()[1] for x in order] == ["in", "out"] * 3
    assert all(order[i].split()[0] == order[i + 1].split()[0] for i in range(0, 6, 2))
    assert sorted(x.split()[0] for x in order[::2]) == ["a", "b", "c"]

    # cancellation reaches a parked task, and the lock stays usable
    async with trio.open_nursery() as nursery:
        await lock.__aenter__()
        nursery.start_soon(taker, "d")
        await trio.testing.wait_all_tasks_blocked()
        assert len(lock.lot) == 1
        nursery.cancel_scope.cancel()
    await lock.__aexit__(None, None, None)
    assert not lock.held and len(lock.lot) == 0 and len(order) == 6, "d never got in"
    async with lock:
        pass


def test_pyfuse3_runs_on_the_lean_trio_only_within_the_block_and_when_asked() -> None:
    assert pyfuse3.trio is trio
    with lean_read_lock() as lean:
        assert lean and pyfuse3.trio is LEAN_TRIO
        assert LEAN_TRIO.Lock is LeanLock
        assert LEAN_TRIO.lowlevel is trio.lowlevel and LEAN_TRIO.ClosedResourceError is trio.ClosedResourceError
        assert LEAN_TRIO.open_nursery is trio.open_nursery
    assert pyfuse3.trio is trio
    with lean_read_lock(False) as lean:           # --request-loop stock
        assert not lean and pyfuse3.trio is trio
    other = object()
    pyfuse3.trio = other                      # as pyfuse3.asyncio.enable() does
    try:
        with lean_read_lock() as lean:
            assert not lean and pyfuse3.trio is other
    finally:
        pyfuse3.trio = trio


@pytest.mark.parametrize("loop", ["lean", "stock"])
def test_a_request_waiting_on_the_store_does_not_hold_up_the_others(daemon_factory, workdir, s3_bucket,
                                                                    loop: str) -> None:
    endpoint, bucket = s3_bucket
    url = f"s3://{bucket}/loop"
    writer = daemon_factory("writer", store_url=url, extra=["--s3-endpoint", endpoint])
    writer.cli("repo", "create", "r")
    data = os.urandom(3 << 20)
    (workdir / "big").write_bytes(data)
    writer.cli("put", "r", str(workdir / "big"))
    with running(endpoint) as proxy:
        d = daemon_factory("reader", store_url=url, mount=True,
                           extra=["--s3-endpoint", proxy.url, "--request-loop", loop])
        assert ("the lean read lock" if loop == "lean" else "pyfuse3's own loop") in d.log()
        big = d.mount / "r" / "big"
        assert big.stat().st_size == len(data)    # the tree is read (and cached) before the delay
        proxy.delay_replies("GET", "/packs/", 2.0)
        got: dict[str, object] = {}

        def read() -> None:
            start = time.monotonic()
            got["data"] = big.read_bytes()
            got["seconds"] = time.monotonic() - start

        reading = threading.Thread(target=read)
        reading.start()
        time.sleep(0.3)
        slowest, rounds, deadline = 0.0, 0, time.monotonic() + 60
        while reading.is_alive() and time.monotonic() < deadline:
            start = time.monotonic()
            assert big.stat().st_size == len(data)
            assert sorted(os.listdir(d.mount / "r")) == ["big"]
            os.getxattr(big, "user.trunkfs.branch")
            slowest = max(slowest, time.monotonic() - start)
            rounds += 1
            time.sleep(0.05)
        reading.join(60)
        assert got["data"] == data
        assert isinstance(got["seconds"], float) and got["seconds"] >= 1.5, "the read did not wait on the store"
        assert slowest < 0.5, f"a stat and a listing took {slowest:.2f} s while the read waited"
        assert rounds >= 5, "too few requests were tried while the read waited"
