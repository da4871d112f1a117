"""The FUSE mount, read side: real mounts read by real tools."""

from __future__ import annotations

import errno
import hashlib
import os
import random
import subprocess
import threading
import time
from pathlib import Path

import pytest

from tests.harness import wait_for


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def digest_tree(root: Path) -> dict[str, str]:
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        rel = os.path.relpath(dirpath, root)
        for name in dirnames:
            out[os.path.normpath(os.path.join(rel, name)) + "/"] = "dir"
        for name in filenames:
            p = os.path.join(dirpath, name)
            key = os.path.normpath(os.path.join(rel, name))
            if os.path.islink(p):
                out[key] = "-> " + os.readlink(p)
            else:
                with open(p, "rb") as f:
                    out[key] = hashlib.sha256(f.read()).hexdigest()
    return out


@pytest.fixture
def dataset(workdir) -> Path:
    src = workdir / "src"
    rng = random.Random(42)
    for i in range(20):
        write(src / "small" / f"s{i:02d}.txt", f"line {i}\n".encode() * (i + 1))
    write(src / "big.bin", rng.randbytes(9 * 1024 * 1024 + 123))
    write(src / "dup1.bin", b"same content" * 1000)
    write(src / "dup2.bin", b"same content" * 1000)
    write(src / "deep" / "a" / "b" / "c" / "leaf.csv", b"x,y\n1,2\n")
    (src / "emptydir").mkdir()
    os.symlink("big.bin", src / "link")
    os.chmod(src / "small" / "s00.txt", 0o600)
    return src


def test_layout_views_and_tools(mounted, dataset, workdir):
    d = mounted
    mnt = d.mount
    d.cli("repo", "create", "data")
    d.cli("repo", "create", "other")
    c1 = d.cli("put", "data", *[str(p) for p in sorted(dataset.iterdir())]).out.strip()
    assert sorted(os.listdir(mnt)) == ["data", "other"]
    assert os.listdir(mnt / "other") == []
    assert digest_tree(mnt / "data") == digest_tree(dataset)
    assert digest_tree(mnt / f"data@{c1[:8]}") == digest_tree(dataset)
    assert digest_tree(mnt / f"data@{c1}") == digest_tree(dataset)
    assert digest_tree(mnt / "data@main") == digest_tree(dataset)
    # unknown names are ENOENT
    for name in ("nope", "data@nope", "data@ffffffffffffff", "data@", "data@abc"):
        with pytest.raises(FileNotFoundError):
            os.stat(mnt / name)
    # attributes
    st = os.stat(mnt / "data" / "small" / "s00.txt")
    assert st.st_mode & 0o777 == 0o600 and st.st_size == 7
    assert st.st_uid == os.getuid()
    assert st.st_mtime_ns == os.stat(dataset / "small" / "s00.txt").st_mtime_ns
    big = os.stat(mnt / "data" / "big.bin")
    assert big.st_blocks == (big.st_size + 511) // 512
    assert os.readlink(mnt / "data" / "link") == "big.bin"
    assert os.stat(mnt / "data" / "deep").st_nlink == 3
    # identical content is not a hard link
    assert os.stat(mnt / "data" / "dup1.bin").st_ino != os.stat(mnt / "data" / "dup2.bin").st_ino
    assert os.stat(mnt / "data" / "dup1.bin").st_nlink == 1
    # real tools
    out = workdir / "out"
    out.mkdir()
    subprocess.run(["cp", "-r", str(mnt / "data"), str(out / "cp")], check=True)
    assert digest_tree(out / "cp") == digest_tree(dataset)
    subprocess.run(["rsync", "-a", f"{mnt / 'data'}/", str(out / "rsync")], check=True)
    assert digest_tree(out / "rsync") == digest_tree(dataset)
    tar = subprocess.run(["tar", "c", "-C", str(mnt / "data"), "."], check=True, capture_output=True).stdout
    (out / "tar").mkdir()
    subprocess.run(["tar", "x", "-C", str(out / "tar")], input=tar, check=True)
    assert digest_tree(out / "tar") == digest_tree(dataset)
    found = subprocess.run(["find", str(mnt / "data"), "-type", "f"], check=True, capture_output=True,
                           text=True).stdout.split()
    assert len(found) == 24
    du = subprocess.run(["du", "-sb", str(mnt / "data")], check=True, capture_output=True, text=True).stdout
    assert int(du.split()[0]) == sum(os.lstat(p).st_size for p in dataset.rglob("*") if not p.is_dir())
    assert subprocess.run(["cat", str(mnt / "data" / "deep/a/b/c/leaf.csv")], check=True,
                          capture_output=True).stdout == b"x,y\n1,2\n"
    df = subprocess.run(["df", str(mnt)], check=True, capture_output=True, text=True).stdout
    assert "trunkfs" in df
    assert os.getxattr(mnt / "data", "user.trunkfs.commit").decode() == c1
    assert os.getxattr(mnt / f"data@{c1[:7]}", "user.trunkfs.commit").decode() == c1
    assert "user.trunkfs.commit" in os.listxattr(mnt / "data")


def test_commit_views_and_the_root_are_read_only(mounted, dataset):
    d = mounted
    d.cli("repo", "create", "r")
    cid = d.cli("put", "r", str(dataset / "big.bin")).out.strip()
    for view in (f"r@{cid[:10]}", f"r@{cid}"):
        base = d.mount / view
        for action in (lambda: open(base / "new", "w"), lambda: open(base / "big.bin", "r+b"),
                       lambda: os.mkdir(base / "dir"), lambda: os.unlink(base / "big.bin"),
                       lambda: os.rename(base / "big.bin", base / "x"),
                       lambda: os.chmod(base / "big.bin", 0o777),
                       lambda: os.symlink("x", base / "l"),
                       lambda: os.truncate(base / "big.bin", 0)):
            with pytest.raises(OSError) as info:
                action()
            assert info.value.errno == errno.EROFS, info.value
    with pytest.raises(OSError) as info:
        os.mkdir(d.mount / "newrepo")
    assert info.value.errno == errno.EROFS
    assert d.cli("status", "r").out == ""  # nothing was staged by the refused calls


def test_history_views_and_branch_following(mounted, workdir):
    d = mounted
    d.cli("repo", "create", "r")
    commits = []
    for v in range(4):
        write(workdir / f"v{v}" / "data.txt", f"version {v}\n".encode() * 1000)
        write(workdir / f"v{v}" / f"only{v}", b"x")
        commits.append(d.cli("put", "r", str(workdir / f"v{v}" / "data.txt"),
                             str(workdir / f"v{v}" / f"only{v}")).out.strip())
    for v, cid in enumerate(commits):
        view = d.mount / f"r@{cid[:12]}"
        assert (view / "data.txt").read_bytes() == f"version {v}\n".encode() * 1000
        assert sorted(os.listdir(view)) == ["data.txt"] + [f"only{i}" for i in range(v + 1)]
    # an open handle keeps reading the content it opened; the branch view moves on
    f = open(d.mount / "r" / "data.txt", "rb")
    first = f.read(100)
    write(workdir / "v9" / "data.txt", b"new content\n" * 1000)
    d.cli("put", "r", str(workdir / "v9" / "data.txt"))
    deadline = time.monotonic() + 1.5
    while (d.mount / "r" / "data.txt").read_bytes() != b"new content\n" * 1000:
        assert time.monotonic() < deadline, "branch view did not follow the put within a second"
        time.sleep(0.05)
    assert first + f.read() == b"version 3\n" * 1000
    f.close()


def test_concurrent_readers(mounted, workdir):
    d = mounted
    d.cli("repo", "create", "r")
    blobs = {f"f{i}": random.Random(i).randbytes(3 * 1024 * 1024 + i) for i in range(4)}
    for name, data in blobs.items():
        write(workdir / "src" / name, data)
    d.cli("put", "r", *[str(workdir / "src" / n) for n in blobs])
    errors = []

    def reader(name: str) -> None:
        try:
            for _ in range(3):
                with open(d.mount / "r" / name, "rb") as f:
                    assert f.read() == blobs[name]
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=reader, args=(f"f{i % 4}",)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors


def test_a_local_store_is_cached_in_memory_only(mounted, workdir):
    mounted.cli("repo", "create", "r")
    data = random.Random(6).randbytes(5 * 1024 * 1024)
    write(workdir / "f", data)
    mounted.cli("put", "r", str(workdir / "f"))
    assert (mounted.mount / "r" / "f").read_bytes() == data
    cache = mounted.cli("stats", "--json").json()["cache"]
    assert cache["limit"] == 0 and cache["size"] == 0 and cache["fetched_bytes"] >= len(data)
    assert cache["memory_bytes"] > 0
    assert not [p for p in (mounted.state / "cache").rglob("*") if p.is_file()]


def test_cache_stays_within_its_bound(daemon_factory, workdir):
    d = daemon_factory(mount=True, extra=["--cache-size", "6M", "--cache-local"])
    d.cli("repo", "create", "r")
    data = random.Random(5).randbytes(24 * 1024 * 1024)
    write(workdir / "big", data)
    d.cli("put", "r", str(workdir / "big"))
    assert (d.mount / "r" / "big").read_bytes() == data
    cache = d.cli("stats", "--json").json()["cache"]
    assert cache["limit"] == 6 * 1024 * 1024
    assert 0 < cache["size"] <= cache["limit"]
    assert cache["fetched_bytes"] >= len(data)
    on_disk = sum(p.stat().st_size for p in (d.state / "cache").rglob("*") if p.is_file())
    assert on_disk <= 6 * 1024 * 1024


@pytest.mark.allow_warnings
def test_corrupt_pack_gives_eio_on_that_file_only(mounted, workdir):
    d = mounted
    d.cli("repo", "create", "r")
    good = random.Random(1).randbytes(2 * 1024 * 1024)
    write(workdir / "a" / "good.bin", good)
    d.cli("put", "r", str(workdir / "a" / "good.bin"))
    write(workdir / "b" / "bad.bin", random.Random(2).randbytes(2 * 1024 * 1024))
    d.cli("put", "r", str(workdir / "b" / "bad.bin"))
    # the newest data pack holds bad.bin's chunks: flip bytes in its middle
    packs = sorted((d.store_dir / "packs").rglob("*"), key=lambda p: p.stat().st_mtime)
    data_packs = [p for p in packs if p.is_file() and p.stat().st_size > 1024 * 1024]
    victim = data_packs[-1]
    with open(victim, "r+b") as f:
        f.seek(victim.stat().st_size // 2)
        f.write(b"\xff" * 64)
    with pytest.raises(OSError) as info:
        (d.mount / "r" / "bad.bin").read_bytes()
    assert info.value.errno == errno.EIO
    assert (d.mount / "r" / "good.bin").read_bytes() == good
    wait_for(lambda: "fails its hash check" in d.log(), 10, "the hash check failure in the daemon log")


@pytest.mark.allow_warnings  # "clearing a stale FUSE mount" is a warning
def test_mountpoint_checks_and_stale_mount(daemon_factory, workdir):
    busy = daemon_factory("busy", mount=True, start=False)
    busy.mount.mkdir(parents=True)
    (busy.mount / "something").touch()
    with pytest.raises(RuntimeError) as info:
        busy.start(timeout=10)
    assert "is not empty" in str(info.value)

    d = daemon_factory("crash", mount=True)
    d.cli("repo", "create", "r")
    d.kill()  # leaves a stale mount
    with pytest.raises(OSError) as info:
        os.listdir(d.mount)
    assert info.value.errno == errno.ENOTCONN
    d.start()  # clears it and mounts again
    assert os.listdir(d.mount) == ["r"]
    # unmounted from outside: the daemon notices and stops cleanly
    subprocess.run(["fusermount3", "-u", str(d.mount)], check=True)
    d.proc.wait(30)
    assert d.proc.returncode == 0
    d.proc = None
    d._log.close()
    d.start()
    assert os.listdir(d.mount) == ["r"]
    d.cli("umount")
    d.proc.wait(30)
    assert d.proc.returncode == 0
    from tests.harness import is_mounted
    assert not is_mounted(d.mount)
    d.proc = None
    d._log.close()


def test_other_users_and_a_private_mount_namespace(daemon_factory, workdir):
    if os.getuid() != 0:
        pytest.skip("needs root to switch users")
    d = daemon_factory(mount=True, extra=["--allow-other"])
    for p in (workdir, workdir / "d"):  # let nobody reach the mount point
        os.chmod(p, 0o755)
    d.cli("repo", "create", "r")
    write(workdir / "f.txt", b"shared data\n")
    os.chmod(workdir / "f.txt", 0o644)
    d.cli("put", "r", str(workdir / "f.txt"))
    as_nobody = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                                "cat", str(d.mount / "r" / "f.txt")], capture_output=True)
    assert as_nobody.returncode == 0, as_nobody.stderr
    assert as_nobody.stdout == b"shared data\n"
    target = workdir / "volume"
    target.mkdir()
    script = f"mount --bind {d.mount / 'r'} {target} && cat {target / 'f.txt'}"
    ns = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", script],
                        capture_output=True)
    assert ns.returncode == 0, ns.stderr
    assert ns.stdout == b"shared data\n"
