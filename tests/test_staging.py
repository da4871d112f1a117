"""Staging through the mount: status, commit, discard, put and rm next to
staged changes, range copy-on-write, commits racing writes, a full staging
disk, and SIGKILL while writing and while committing."""

from __future__ import annotations

import errno
import hashlib
import os
import random
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from .conftest import Daemon, wait_for
from .harness import tmpfs


def status(d: Daemon, spec: str = "r") -> list[tuple[str, str]]:
    return [(c["status"], c["path"]) for c in d.cli("status", spec, "--json").json()["changes"]]


def commit(d: Daemon, spec: str = "r", msg: str = "m") -> str:
    return d.cli("commit", spec, "-m", msg).out.strip()


def du(path: Path) -> int:
    return sum(f.stat().st_blocks * 512 for f in path.rglob("*") if f.is_file())


def store_bytes(d: Daemon) -> int:
    return sum(f.stat().st_size for f in d.store_dir.rglob("*") if f.is_file())


def test_status_commit_discard(mounted, workdir):
    d = mounted
    d.cli("repo", "create", "r")
    (workdir / "in").mkdir()
    (workdir / "in" / "keep.txt").write_text("keep\n")
    (workdir / "in" / "edit.txt").write_text("v1\n")
    (workdir / "in" / "gone.txt").write_text("bye\n")
    base = d.cli("put", "r", str(workdir / "in" / "keep.txt"), str(workdir / "in" / "edit.txt"),
                 str(workdir / "in" / "gone.txt")).out.strip()
    view = d.mount / "r"
    assert d.cli("status", "r").out == ""
    res = d.cli("commit", "r", "-m", "nothing", check=False)
    assert res.returncode == 1 and "nothing to commit" in res.err

    (view / "edit.txt").write_text("v2\n")
    os.unlink(view / "gone.txt")
    os.makedirs(view / "new" / "deep")
    (view / "new" / "deep" / "file").write_bytes(b"x" * 5000)
    assert status(d) == [("M", "/edit.txt"), ("D", "/gone.txt"), ("A", "/new/deep/file")]
    assert d.cli("status", "r").out.splitlines() == ["M /edit.txt", "D /gone.txt", "A /new/deep/file"]

    # discard one path: the committed version shows again
    d.cli("discard", "r", "gone.txt")
    assert (view / "gone.txt").read_text() == "bye\n"
    assert status(d) == [("M", "/edit.txt"), ("A", "/new/deep/file")]
    assert d.cli("discard", "r", "no/such/path", check=False).returncode != 0

    info = d.cli("commit", "r", "-m", "edit", "--json").json()
    cid = info["commit"]
    assert len(cid) == 64 and info["jobs"] == []
    assert status(d) == []
    assert (d.mount / f"r@{cid}" / "edit.txt").read_text() == "v2\n"
    assert (d.mount / f"r@{cid}" / "new" / "deep" / "file").read_bytes() == b"x" * 5000
    assert (d.mount / f"r@{base}" / "edit.txt").read_text() == "v1\n"
    log = d.cli("log", "r", "--json").json()
    assert [c["id"] for c in log[:2]] == [cid, base]
    assert (view / "edit.txt").read_text() == "v2\n"

    # --allow-empty makes a commit with the same tree
    empty = d.cli("commit", "r", "-m", "empty", "--allow-empty").out.strip()
    assert empty != cid
    # discard everything
    (view / "scratch").write_text("s")
    os.unlink(view / "keep.txt")
    d.cli("discard", "r")
    assert status(d) == [] and not (view / "scratch").exists() and (view / "keep.txt").exists()
    # a commit view stays read-only
    with pytest.raises(OSError) as info:
        (d.mount / f"r@{cid}" / "x").write_text("no")
    assert info.value.errno == errno.EROFS
    assert d.cli("fsck").returncode == 0


def test_other_branches_and_put_rm_next_to_staging(mounted, workdir):
    d = mounted
    d.cli("repo", "create", "r")
    (workdir / "a.txt").write_text("a1")
    (workdir / "b.txt").write_text("b1")
    d.cli("put", "r", str(workdir / "a.txt"), str(workdir / "b.txt"))
    d.cli("branch", "create", "r@dev")
    (d.mount / "r@dev" / "dev-only").write_text("dev")
    (d.mount / "r" / "staged.txt").write_text("staged")
    assert status(d, "r@dev") == [("A", "/dev-only")]
    assert status(d, "r") == [("A", "/staged.txt")]
    # put and rm move main; the staged file stays, and shows next to them
    (workdir / "c.txt").write_text("c1")
    d.cli("put", "r", str(workdir / "c.txt"))
    d.cli("rm", "r:/b.txt")
    deadline = time.monotonic() + 3
    while sorted(os.listdir(d.mount / "r")) != ["a.txt", "c.txt", "staged.txt"]:
        assert time.monotonic() < deadline, os.listdir(d.mount / "r")
        time.sleep(0.1)
    assert status(d, "r") == [("A", "/staged.txt")]
    cid = commit(d, "r")
    assert sorted(os.listdir(d.mount / f"r@{cid}")) == ["a.txt", "c.txt", "staged.txt"]
    dev = commit(d, "r@dev")
    assert sorted(os.listdir(d.mount / f"r@{dev}")) == ["a.txt", "b.txt", "dev-only"]
    assert d.cli("commit", "r@" + cid, "-m", "x", check=False).returncode != 0  # a commit id is not a branch


def test_open_handles_survive_a_commit(mounted):
    d = mounted
    d.cli("repo", "create", "r")
    path = d.mount / "r" / "log.txt"
    f = open(path, "w+b", buffering=0)
    f.write(b"first\n")
    reader = open(path, "rb", buffering=0)
    c1 = commit(d)
    f.write(b"second\n")           # the same handle, after the commit: the next commit's
    assert reader.read() == b"first\nsecond\n"
    assert status(d) == [("M", "/log.txt")]
    c2 = commit(d)
    f.close()
    reader.close()
    assert (d.mount / f"r@{c1}" / "log.txt").read_bytes() == b"first\n"
    assert (d.mount / f"r@{c2}" / "log.txt").read_bytes() == b"first\nsecond\n"
    # an unlinked file stays usable through its handle
    g = open(d.mount / "r" / "tmp", "w+b", buffering=0)
    g.write(b"temporary")
    os.unlink(d.mount / "r" / "tmp")
    g.seek(0)
    assert g.read() == b"temporary"
    g.close()
    assert status(d) == []


def test_range_copy_on_write(mounted, workdir):
    """4 KiB written into a committed 64 MiB file stages 4 KiB, and the
    commit stores a few chunks, not the file."""
    d = mounted
    d.cli("repo", "create", "r")
    big = workdir / "big.bin"
    data = bytearray(os.urandom(64 << 20))
    big.write_bytes(data)
    d.cli("put", "r", str(big))
    staged = d.state / "staging" / "data"
    before = store_bytes(d)
    fd = os.open(d.mount / "r" / "big.bin", os.O_WRONLY)
    os.pwrite(fd, b"P" * 4096, 30 << 20)
    os.close(fd)
    data[30 << 20:(30 << 20) + 4096] = b"P" * 4096
    assert du(staged) <= 64 * 1024, "a 4 KiB write copied more than its range"
    with open(d.mount / "r" / "big.bin", "ab") as f:  # append 1 MiB
        tail = os.urandom(1 << 20)
        f.write(tail)
    data += tail
    assert du(staged) <= 2 << 20
    got = hashlib.sha256((d.mount / "r" / "big.bin").read_bytes()).hexdigest()
    assert got == hashlib.sha256(data).hexdigest()
    cid = commit(d)
    grown = store_bytes(d) - before
    assert grown < 16 << 20, f"the commit stored {grown} bytes for a 4 KiB patch and a 1 MiB append"
    assert hashlib.sha256((d.mount / f"r@{cid}" / "big.bin").read_bytes()).hexdigest() == \
        hashlib.sha256(data).hexdigest()
    assert not any(staged.iterdir())
    assert d.cli("fsck", "--read-data").returncode == 0


def test_writes_during_a_commit_go_to_the_next_one(mounted, workdir):
    d = mounted
    d.cli("repo", "create", "r")
    blob = os.urandom(1 << 20) * 96
    (d.mount / "r" / "big").write_bytes(blob)
    proc = subprocess.Popen([sys.executable, "-m", "trunkfs.daemon.cli", "commit", "r", "-m", "big"],
                            env=d.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    # the daemon logs when the commit has frozen the staging area
    wait_for(lambda: "commit of r@main: staging frozen" in d.log() or proc.poll() is not None,
             60, "the commit to freeze the staging area")
    (d.mount / "r" / "late").write_text("late")    # waits for the commit if it is still running
    second = subprocess.Popen([sys.executable, "-m", "trunkfs.daemon.cli", "commit", "r", "-m", "again"],
                              env=d.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    first = out.decode().strip()
    out2, err2 = second.communicate(timeout=120)
    names = sorted(os.listdir(d.mount / f"r@{first}"))
    if names == ["big"]:   # "late" came after the first commit: it is in the second or staged
        assert second.returncode == 0 or b"nothing to commit" in err2
    else:
        assert names == ["big", "late"]
    if second.returncode == 0:
        assert sorted(os.listdir(d.mount / f"r@{out2.decode().strip()}")) == ["big", "late"]
    else:
        assert status(d) == ([("A", "/late")] if names == ["big"] else [])
    assert (d.mount / f"r@{first}" / "big").read_bytes() == blob


@pytest.fixture
def small_state(workdir):
    """A 48 MiB tmpfs for the daemon's state directory (root only)."""
    with tmpfs(workdir / "small", "48m") as path:
        yield path


@pytest.mark.allow_warnings
def test_full_staging_disk_gives_enospc(daemon_factory, small_state):
    d = Daemon(small_state / "d", f"file://{small_state.parent / 'store'}", None, True)
    d.start()
    try:
        d.cli("repo", "create", "r")
        (d.mount / "r" / "small.txt").write_text("still here")
        with pytest.raises(OSError) as info:
            with open(d.mount / "r" / "huge", "wb") as f:
                for _ in range(80):
                    f.write(b"\xff" * (1 << 20))
        assert info.value.errno == errno.ENOSPC
        assert (d.mount / "r" / "small.txt").read_text() == "still here"
        os.unlink(d.mount / "r" / "huge")
        assert status(d) == [("A", "/small.txt")]
        cid = commit(d)
        assert (d.mount / f"r@{cid}" / "small.txt").read_text() == "still here"
    finally:
        d.stop()


def test_sigkill_while_writing_keeps_fsynced_data(daemon_factory):
    d = daemon_factory(mount=True)
    d.cli("repo", "create", "r")
    (d.mount / "r" / "committed").write_text("base")
    base = commit(d)
    rng = random.Random(7)
    expected: dict[str, bytes] = {}
    for round_ in range(4):
        name = f"synced{round_}"
        data = os.urandom(rng.randint(1, 3 << 20))
        with open(d.mount / "r" / name, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        expected[name] = data
        os.rename(d.mount / "r" / name, d.mount / "r" / f"{name}.done")
        dfd = os.open(d.mount / "r", os.O_RDONLY)   # fsync of the directory: the rename is durable
        os.fsync(dfd)
        os.close(dfd)
        expected[f"{name}.done"] = expected.pop(name)
        # a writer in full flow when the daemon dies
        stop = threading.Event()

        def writer():
            try:
                with open(d.mount / "r" / "unsynced", "ab") as f:
                    while not stop.is_set():
                        f.write(os.urandom(65536))
            except OSError:
                pass
        t = threading.Thread(target=writer)
        t.start()
        time.sleep(rng.uniform(0.05, 0.3))
        d.kill()
        stop.set()
        t.join(10)
        d.clear_mount()
        d.start()
        for n, data in expected.items():
            assert (d.mount / "r" / n).read_bytes() == data, f"round {round_}: {n} lost"
        assert d.cli("fsck").returncode == 0
        assert d.cli("log", "r", "--json").json()[0]["id"] == base
    cid = commit(d)
    for n, data in expected.items():
        assert (d.mount / f"r@{cid}" / n).read_bytes() == data


def test_sigkill_while_committing(daemon_factory):
    d = daemon_factory(mount=True, extra=["--log-level", "INFO"])
    d.cli("repo", "create", "r")
    (d.mount / "r" / "seed").write_text("seed")
    head = commit(d)
    for i, delay in enumerate([0.05, 0.2, 0.4, 0.8, 1.5]):
        data = os.urandom(1 << 20) * (24 + 8 * i)
        with open(d.mount / "r" / f"f{i}", "wb") as f:
            f.write(data)
            os.fsync(f.fileno())
        proc = subprocess.Popen([sys.executable, "-m", "trunkfs.daemon.cli", "commit", "r", "-m", f"c{i}"],
                                env=d.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        time.sleep(delay)
        d.kill()
        proc.communicate(timeout=60)
        d.clear_mount()
        d.start()
        assert d.cli("fsck").returncode == 0
        now = d.cli("log", "r", "--json").json()[0]
        assert now["id"] == head or now["parents"] == [head], "the branch is at neither the old nor a new commit"
        if now["id"] == head:   # not committed: still staged, intact
            assert ("A", f"/f{i}") in status(d)
            head = commit(d)
        else:
            head = now["id"]
        assert status(d) == []
        assert (d.mount / f"r@{head}" / f"f{i}").read_bytes() == data


def test_many_files_commit_without_holding_descriptors(mounted):
    """Committing thousands of staged files opens each data file only while
    reading it (a commit once kept every one open and ran out of descriptors)."""
    d = mounted
    d.cli("repo", "create", "r")
    for i in range(1500):
        (d.mount / "r" / f"f{i:04d}").write_bytes(b"%d\n" % i * 100)
    pid = d.proc.pid
    subprocess.run(["prlimit", f"--pid={pid}", "--nofile=400:400"], check=True)
    cid = commit(d)
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    assert fds < 300, f"the daemon holds {fds} descriptors after the commit"
    assert (d.mount / f"r@{cid}" / "f1234").read_bytes() == b"1234\n" * 100
    assert status(d) == []


def test_shared_mmap_chown_and_xattrs_are_committed(mounted):
    import mmap
    d = mounted
    d.cli("repo", "create", "r")
    path = d.mount / "r" / "mapped.bin"
    path.write_bytes(b"\0" * 65536)
    with open(path, "r+b") as f:
        m = mmap.mmap(f.fileno(), 65536, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        m[4096:4101] = b"hello"
        m[60000:60005] = b"world"
        m.flush()
        m.close()
    with open(path, "rb") as g:        # another open file sees what the mapping wrote
        data = g.read()
    assert data[4096:4101] == b"hello" and data[60000:60005] == b"world"
    os.chown(path, 65534, 65533)
    os.setxattr(path, "user.label", b"cats")
    with pytest.raises(OSError) as info:
        os.setxattr(path, "trusted.x", b"1")
    assert info.value.errno == errno.ENOTSUP
    cid = commit(d)
    committed = d.mount / f"r@{cid}" / "mapped.bin"
    st = committed.stat()
    assert (st.st_uid, st.st_gid) == (65534, 65533)
    assert os.getxattr(committed, "user.label") == b"cats"
    assert committed.read_bytes() == data
