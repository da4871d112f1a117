"""The kernel's writeback cache on a real mount: size and mtime right after
close and after a commit, and a commit of a file still open with writes
the kernel holds dirty (the commit writes the mount back first)."""

from __future__ import annotations

import os
import time

from tests.test_write_tools import commit, repo  # noqa: F401  (repo: the fixture)


def test_size_and_mtime_after_close_and_after_commit(mounted, repo):
    path = repo / "small-writes.bin"
    want = bytearray()
    with open(path, "wb", buffering=0) as f:
        for i in range(300):                 # many small writes: the kernel gathers them
            piece = os.urandom(97 + i)
            f.write(piece)
            want += piece
    st = os.stat(path)
    assert st.st_size == len(want)
    assert path.read_bytes() == bytes(want)
    cid = commit(mounted, "right after close")
    after = os.stat(path)
    assert (after.st_size, after.st_mtime_ns) == (st.st_size, st.st_mtime_ns)
    view = mounted.mount / f"r@{cid}" / "small-writes.bin"
    committed = os.stat(view)
    assert (committed.st_size, committed.st_mtime_ns) == (st.st_size, st.st_mtime_ns)
    assert view.read_bytes() == bytes(want)

    # an explicit mtime set after the writes survives the close and the commit
    os.utime(path, ns=(1_600_000_000_000_000_000, 1_600_000_000_000_000_000))
    cid2 = commit(mounted, "utime")
    assert os.stat(mounted.mount / f"r@{cid2}" / "small-writes.bin").st_mtime_ns == 1_600_000_000_000_000_000


def test_a_commit_holds_what_an_open_file_wrote(mounted, repo):
    path = repo / "open.log"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        lines = b"".join(b"line %d\n" % i for i in range(5000))
        for i in range(0, len(lines), 1000):
            os.write(fd, lines[i:i + 1000])   # held dirty by the kernel: not flushed, not closed
        time.sleep(0.05)
        # through the client in this process: no new process (a CLI's start
        # may itself make the kernel write dirty pages back)
        with mounted.client() as client:
            cid = client.commit("r", message="while open").commit
        assert (mounted.mount / f"r@{cid}" / "open.log").read_bytes() == lines
        os.write(fd, b"after the commit\n")
    finally:
        os.close(fd)
    cid2 = commit(mounted, "after close")
    assert (mounted.mount / f"r@{cid2}" / "open.log").read_bytes() == lines + b"after the commit\n"
