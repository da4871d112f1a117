"""The lean wait for FUSE requests (mountfs/fuseloop.py).

In process, on a real pipe: one task at a time waits on the descriptor,
the others park until it has its answer; the end of the session and
cancellation reach every task.  The switch of pyfuse3's wait happens only
for a known pyfuse3 and one new /dev/fuse descriptor, and is undone.

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

from tests.faultproxy import running
from trunkfs.mountfs import fuseloop
from trunkfs.mountfs.fuseloop import SingleWaiter, faster_waits, fuse_device_fds


async def test_one_task_at_a_time_waits_and_the_others_park() -> None:
    r, w = os.pipe()
    try:
        waiter = SingleWaiter(r)
        answers: list[tuple[int, bool]] = []

        async def reader(n: int) -> None:
            ready = await waiter.wait()
            if ready:
                os.read(r, 1)     # as pyfuse3 reads, before its next checkpoint
            answers.append((n, ready))

        async with trio.open_nursery() as nursery:
            for n in range(3):
                nursery.start_soon(reader, n)
            await trio.testing.wait_all_tasks_blocked()
            assert waiter.waiting and len(waiter.lot) == 2, "one waits on the descriptor, two are parked"
            for got in range(1, 4):
                os.write(w, b"x")
                await trio.testing.wait_all_tasks_blocked()
                assert len(answers) == got and answers[-1][1] is True
                assert waiter.waiting == (got < 3) and len(waiter.lot) == max(0, 2 - got)
        assert sorted(n for n, _ in answers) == [0, 1, 2]

        # the session ends (pyfuse3.terminate: notify_closing): the waiting task hears False
        async with trio.open_nursery() as nursery:
            nursery.start_soon(reader, 9)
            nursery.start_soon(reader, 10)
            await trio.testing.wait_all_tasks_blocked()
            trio.lowlevel.notify_closing(r)
            await trio.testing.wait_all_tasks_blocked()
            assert answers[3][1] is False
            nursery.cancel_scope.cancel()    # the daemon cancels the loop: the parked one goes too
        assert len(answers) == 4 and not waiter.waiting and len(waiter.lot) == 0
    finally:
        os.close(r)
        os.close(w)


def test_the_wait_is_switched_only_for_a_known_pyfuse3_and_one_new_descriptor(
        monkeypatch: pytest.MonkeyPatch) -> None:
    original = pyfuse3._wait_fuse_readable
    before = fuse_device_fds()
    fd = os.open("/dev/fuse", os.O_RDWR)     # stands for the session pyfuse3.init opens
    try:
        with faster_waits(before) as lean:
            assert lean and pyfuse3._wait_fuse_readable is not original
            assert pyfuse3._wait_fuse_readable.__self__.fd == fd
        assert pyfuse3._wait_fuse_readable is original
        with faster_waits(None) as lean:          # --request-loop stock
            assert not lean and pyfuse3._wait_fuse_readable is original
        with faster_waits(fuse_device_fds()) as lean:   # no new descriptor: which one is the session?
            assert not lean and pyfuse3._wait_fuse_readable is original
        monkeypatch.setattr(fuseloop, "KNOWN_VERSIONS", frozenset({"0.0.1"}))
        with faster_waits(before) as lean:
            assert not lean and pyfuse3._wait_fuse_readable is original
    finally:
        os.close(fd)
    assert pyfuse3._wait_fuse_readable is original


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
        assert ("the lean wait" if loop == "lean" else "pyfuse3's own loop") in d.log()
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
