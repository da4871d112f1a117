"""Repo roles on the mount: a user without ``read`` on a repo cannot reach
any of its views, and writes into a branch view need ``write``.  First the
Operations object called in-process with another uid's request context
(the fixtures of tests/test_views.py), then a real mount with
``--allow-other``, read and written by ``nobody`` in a child process, with
access lists changed through the CLI."""

from __future__ import annotations

import dataclasses
import errno
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.harness import DaemonProcess, wait_for
from tests.test_views import Ctx, Mount, mount, refused  # noqa: F401  (mount: the fixture)
from trunkfs.mountfs.inodes import ROOT_INODE

NOBODY = 65534


# -- in-process: the Operations object --------------------------------------------------

async def names_in_root(m: Mount, ctx: Ctx) -> list[str]:
    fh = await m.ops.opendir(ROOT_INODE, ctx)
    names: list[bytes] = []
    await m.ops.readdir_with(fh, 2, lambda name, attr, off: names.append(name) or True)
    await m.ops.releasedir(fh)
    return sorted(os.fsdecode(n) for n in names)


async def test_operations_check_the_roles_of_the_callers_uid(mount: Mount) -> None:  # noqa: F811
    refs, run = mount.svc.refs, mount.svc.workers.run
    await run(refs.create_repo, "open")              # root's; read for everyone
    await run(refs.create_repo, "closed", 0, [])     # root's alone
    await mount.put("open", {"f": b"open data"})
    await mount.put("closed", {"f": b"closed data"})
    ops, root, nobody = mount.ops, Ctx(0, 0), Ctx(NOBODY, NOBODY)
    # root: everything, and the kernel must ask again for a repo not everyone may read
    assert (await ops.lookup(ROOT_INODE, b"closed", root)).entry_timeout == 0
    assert (await ops.lookup(ROOT_INODE, b"open", root)).entry_timeout > 0
    assert await names_in_root(mount, root) == ["closed", "open"]
    # nobody: refused on every name of the closed repo, known or not
    for name in (b"closed", b"closed@main", b"closed@0123abcd", b"closed@nope"):
        await refused(errno.EACCES, ops.lookup(ROOT_INODE, name, nobody))
    assert (await ops.lookup(ROOT_INODE, b"no-such-repo", nobody)).st_ino == 0
    assert await names_in_root(mount, nobody) == ["open"]
    closed = (await ops.lookup(ROOT_INODE, b"closed", root)).st_ino   # an inode root's lookup made
    await refused(errno.EACCES, ops.getattr(closed, nobody))
    await refused(errno.EACCES, ops.opendir(closed, nobody))
    await refused(errno.EACCES, ops.lookup(closed, b"f", nobody))
    # the open repo: reads, but no change
    view = (await ops.lookup(ROOT_INODE, b"open", nobody)).st_ino
    f = (await ops.lookup(view, b"f", nobody)).st_ino
    fi = await ops.open(f, os.O_RDONLY, nobody)
    assert bytes(await ops.read(fi.fh, 0, 100)) == b"open data"
    await ops.release(fi.fh)
    await refused(errno.EACCES, ops.open(f, os.O_WRONLY, nobody))
    await refused(errno.EACCES, ops.create(view, b"g", stat.S_IFREG | 0o644, os.O_WRONLY, nobody))
    await refused(errno.EACCES, ops.mkdir(view, b"d", 0o755, nobody))
    await refused(errno.EACCES, ops.unlink(view, b"f", nobody))
    await refused(errno.EACCES, ops.rename(view, b"f", view, b"g", 0, nobody))
    await refused(errno.EACCES, ops.setxattr(f, b"user.x", b"1", nobody))
    assert mount.svc.staging.area("open", "main").root is None    # nothing was staged
    # a write grant lets nobody stage; root still may
    await run(refs.update_repo, "open", lambda info: dataclasses.replace(
        info, acl=info.acl + [{"kind": "user", "id": NOBODY, "role": "write"}]))
    ops.gate.ttl = 0      # (the records are kept for a few seconds; this test need not wait)
    fi, _ = await ops.create(view, b"g", stat.S_IFREG | 0o644, os.O_WRONLY, nobody)
    assert await ops.write(fi.fh, 0, b"from nobody") == 11
    await ops.release(fi.fh)


# One file operation as nobody: prints the listing (or "ok"), or the errno's
# name and exits 3.
PROBE = """
import errno, os, sys
op, path = sys.argv[1], sys.argv[2]
try:
    if op == "read":
        with open(path, "rb") as f:
            f.read()
        print("ok")
    elif op == "list":
        print("\\n".join(sorted(os.listdir(path))))
    elif op == "stat":
        os.stat(path)
        print("ok")
    elif op == "create":
        with open(path, "xb") as f:
            f.write(b"from nobody")
        print("ok")
    elif op == "mkdir":
        os.mkdir(path)
        print("ok")
    elif op == "truncate":
        os.truncate(path, 0)
        print("ok")
    elif op == "unlink":
        os.unlink(path)
        print("ok")
except OSError as exc:
    print(errno.errorcode[exc.errno])
    sys.exit(3)
"""

# Enters a directory, then reads f.txt there (a path relative to it) at each line of input.
HOLD = """
import errno, os, sys
os.chdir(sys.argv[1])
for _ in sys.stdin:
    try:
        with open("f.txt", "rb") as f:
            f.read()
        print("ok", flush=True)
    except OSError as exc:
        print(errno.errorcode[exc.errno], flush=True)
"""

def as_nobody(op: str, path: Path, *more: str) -> str:
    proc = subprocess.run(["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
                           sys.executable, "-c", PROBE, op, str(path), *more],
                          capture_output=True, timeout=60)
    assert proc.returncode in (0, 3), proc.stderr
    return proc.stdout.decode().strip()


@pytest.fixture
def shared(daemon_factory, workdir: Path) -> DaemonProcess:
    """A mount open to other users, with repos ``open`` (read for everyone)
    and ``closed`` (root's only), each holding f.txt."""
    if os.getuid() != 0:
        pytest.skip("needs root to switch users")
    d = daemon_factory(mount=True, extra=["--allow-other"])
    for p in (workdir, workdir / "d"):   # let nobody reach the mount point
        os.chmod(p, 0o755)
    src = workdir / "f.txt"
    src.write_bytes(b"data\n")
    os.chmod(src, 0o644)
    for repo in ("open", "closed"):
        d.cli("repo", "create", repo)
        d.cli("put", repo, str(src))
    d.cli("repo", "acl", "closed", "--revoke", "everyone")
    return d


def test_a_repo_nobody_may_read_is_refused_on_every_view(shared: DaemonProcess) -> None:
    mnt = shared.mount
    assert mnt is not None
    commit = os.getxattr(mnt / "closed", "user.trunkfs.commit").decode()
    # root reads everything first: what the kernel caches for root must not let nobody in
    assert (mnt / "closed" / "f.txt").read_bytes() == b"data\n"
    assert (mnt / f"closed@{commit}" / "f.txt").read_bytes() == b"data\n"
    assert sorted(os.listdir(mnt)) == ["closed", "open"]
    for view in ("closed", "closed@main", f"closed@{commit}", f"closed@{commit[:12]}"):
        assert as_nobody("read", mnt / view / "f.txt") == "EACCES", view
        assert as_nobody("list", mnt / view) == "EACCES", view
    # nothing about the repo's branches or commits leaks: an unknown ref is refused alike
    assert as_nobody("stat", mnt / "closed@no-such-branch") == "EACCES"
    # the listing of the mount shows what nobody may read, as `trunkfs repo list` does
    assert as_nobody("list", mnt) == "open"
    assert as_nobody("read", mnt / "open" / "f.txt") == "ok"
    assert as_nobody("read", mnt / "open@main" / "f.txt") == "ok"


def test_grants_and_revokes_reach_the_mount_within_seconds(shared: DaemonProcess) -> None:
    mnt = shared.mount
    assert mnt is not None
    assert as_nobody("read", mnt / "closed" / "f.txt") == "EACCES"
    shared.cli("repo", "acl", "closed", "--grant", "group:nogroup=read")   # nobody's group
    wait_for(lambda: as_nobody("read", mnt / "closed" / "f.txt") == "ok", 15, "the group grant")
    assert as_nobody("list", mnt) == "closed\nopen"
    shared.cli("repo", "acl", "closed", "--revoke", "group:nogroup")
    wait_for(lambda: as_nobody("read", mnt / "closed" / "f.txt") == "EACCES", 15, "the revoke")
    # a process that entered the repo while allowed reads nothing after the revoke either
    shared.cli("repo", "acl", "closed", "--grant", "user:nobody=read")
    wait_for(lambda: as_nobody("read", mnt / "closed" / "f.txt") == "ok", 15, "the user grant")
    inside = subprocess.Popen(["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
                               sys.executable, "-c", HOLD, str(mnt / "closed")],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert inside.stdin is not None and inside.stdout is not None
        stdin, stdout = inside.stdin, inside.stdout

        def read_inside() -> str:
            stdin.write("\n")
            stdin.flush()
            return stdout.readline().strip()
        assert read_inside() == "ok"
        shared.cli("repo", "acl", "closed", "--revoke", "user:nobody")
        wait_for(lambda: read_inside() == "EACCES", 15, "the revoke inside the repo")
    finally:
        inside.kill()
        inside.wait()


def test_writes_into_a_branch_view_need_write(shared: DaemonProcess) -> None:
    mnt = shared.mount
    assert mnt is not None
    pub = mnt / "open" / "pub"
    pub.mkdir()
    os.chmod(pub, 0o777)                       # the modes would let anyone write here
    os.chmod(mnt / "open" / "f.txt", 0o666)
    shared.cli("commit", "open", "-m", "a directory for all")
    assert as_nobody("create", pub / "x") == "EACCES"
    assert as_nobody("mkdir", pub / "d") == "EACCES"
    assert as_nobody("truncate", mnt / "open" / "f.txt") == "EACCES"
    assert as_nobody("unlink", mnt / "open" / "f.txt") == "EACCES"
    assert shared.cli("status", "open").out.strip() in ("", "nothing staged"), \
        "a refused write staged something"
    assert (mnt / "open" / "f.txt").read_bytes() == b"data\n"
    shared.cli("repo", "acl", "open", "--grant", "user:nobody=write")
    wait_for(lambda: as_nobody("create", pub / "x") == "ok", 15, "the write grant")
    assert (pub / "x").read_bytes() == b"from nobody"
    assert as_nobody("truncate", mnt / "open" / "f.txt") == "ok"
