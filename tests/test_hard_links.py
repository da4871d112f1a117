"""Hard links, FIFOs, sockets and device nodes on a real mount: in the branch
view, through commits (every commit view), across a daemon restart, and
used by the tools that make them (cp -al, rsync -aH, tar, git clone).

Tools are required: setup.sh installs them."""

from __future__ import annotations

import errno
import hashlib
import os
import socket
import stat
import subprocess
import threading
from pathlib import Path

import pytest

from tests.test_views import Ctx, Mount, mount, refused  # noqa: F401  (mount: the fixture)
from tests.test_write_tools import commit, repo, restart, run, write  # noqa: F401  (repo: the fixture)
from trunkfs.store.backends.factory import open_backend
from trunkfs.store.links import link_census
from trunkfs.store.store import Store

NOBODY = 65534


def ino_nlink(path: Path) -> tuple[int, int]:
    st = os.lstat(path)
    return st.st_ino, st.st_nlink


def census(d, cid: str, workdir: Path) -> dict[str, int]:
    """The link census of a commit, read from the daemon's store by the test."""
    base = workdir / "reader"
    store = Store(open_backend(d.store_url), str(base / "index"), str(base / "tmp")).open()
    try:
        return link_census(store, store.read_commit(cid).root_entry())
    finally:
        store.close()


# -- hard links in the branch view, in commits, after a restart --------------------------

def test_hard_links_in_the_branch_view_and_every_commit_view(mounted, repo, workdir):
    d = mounted
    write(repo / "a", b"first\n")
    (repo / "d").mkdir()
    os.link(repo / "a", repo / "d" / "b")                 # across directories
    assert ino_nlink(repo / "a") == ino_nlink(repo / "d" / "b")
    assert ino_nlink(repo / "a")[1] == 2
    with open(repo / "d" / "b", "ab") as f:               # written through one name...
        f.write(b"second\n")
    assert (repo / "a").read_bytes() == b"first\nsecond\n"   # ...shows through the other
    os.symlink("a", repo / "sl")
    os.link(repo / "sl", repo / "sl2", follow_symlinks=False)   # a hard link to a symlink
    assert os.readlink(repo / "sl2") == "a" and ino_nlink(repo / "sl")[1] == 2
    assert ino_nlink(repo / "sl") == ino_nlink(repo / "sl2")
    os.link(repo / "a", repo / "c")
    assert ino_nlink(repo / "c")[1] == 3
    os.unlink(repo / "c")                                  # unlinking one keeps the others
    assert ino_nlink(repo / "a")[1] == 2
    # refusals: a directory, an existing name, another repo, another branch
    with pytest.raises(PermissionError):
        os.link(repo / "d", repo / "dlink")
    with pytest.raises(FileExistsError):
        os.link(repo / "a", repo / "d" / "b")
    d.cli("repo", "create", "other")
    with pytest.raises(OSError) as exc:
        os.link(repo / "a", d.mount / "other" / "x")
    assert exc.value.errno == errno.EXDEV
    # rename of one name over another of the same file does nothing
    os.rename(repo / "a", repo / "d" / "b")
    assert (repo / "a").exists() and ino_nlink(repo / "a")[1] == 2

    c1 = commit(d, "links")
    d.cli("branch", "create", "r@dev")
    for elsewhere in (d.mount / "r@dev" / "x", d.mount / f"r@{c1}" / "x"):
        with pytest.raises(OSError) as exc:
            os.link(repo / "a", elsewhere)
        assert exc.value.errno in (errno.EXDEV, errno.EROFS)
    view = d.mount / f"r@{c1}"
    ino, nlink = ino_nlink(view / "a")
    assert nlink == 2 and ino_nlink(view / "d" / "b") == (ino, 2)
    assert ino_nlink(view / "sl") == ino_nlink(view / "sl2") and ino_nlink(view / "sl")[1] == 2
    assert (view / "d" / "b").read_bytes() == b"first\nsecond\n"
    assert sorted(census(d, c1, workdir).values()) == [2, 2]

    # the committed group: a write through one name reaches the name no change touched
    write(repo / "a", b"rewritten\n")
    assert (repo / "d" / "b").read_bytes() == b"rewritten\n"
    os.chmod(repo / "d" / "b", 0o600)
    assert stat.S_IMODE(os.stat(repo / "a").st_mode) == 0o600
    os.link(repo / "a", repo / "third")
    assert ino_nlink(repo / "d" / "b")[1] == 3 == ino_nlink(repo / "a")[1]
    restart(d)                                             # the staged group survives
    assert (repo / "d" / "b").read_bytes() == b"rewritten\n"
    assert ino_nlink(repo / "a")[1] == 3 and ino_nlink(repo / "a") == ino_nlink(repo / "d" / "b")
    c2 = commit(d, "through one name")
    view2 = d.mount / f"r@{c2}"
    for name in ("a", "d/b", "third"):
        assert (view2 / name).read_bytes() == b"rewritten\n"
        assert stat.S_IMODE(os.stat(view2 / name).st_mode) == 0o600
        assert os.stat(view2 / name).st_nlink == 3
    assert (view / "a").read_bytes() == b"first\nsecond\n"   # the older commit is unchanged

    # unlinking committed names (nothing else of the group staged)
    os.unlink(repo / "third")
    os.unlink(repo / "a")
    assert ino_nlink(repo / "d" / "b")[1] == 1
    c3 = commit(d, "one name left")
    assert os.stat(d.mount / f"r@{c3}" / "d" / "b").st_nlink == 1
    assert (d.mount / f"r@{c3}" / "d" / "b").read_bytes() == b"rewritten\n"
    assert "ok" in d.cli("fsck").out


def test_rename_over_a_hard_link_and_links_of_an_open_file(mounted, repo):
    d = mounted
    write(repo / "f", b"f data")
    os.link(repo / "f", repo / "g")
    c1 = commit(d, "pair")
    write(repo / "new", b"new data")
    os.rename(repo / "new", repo / "g")      # replaces one name of the committed pair
    assert ino_nlink(repo / "f")[1] == 1 and (repo / "f").read_bytes() == b"f data"
    assert (repo / "g").read_bytes() == b"new data"
    fd = os.open(repo / "f", os.O_RDWR)
    try:
        os.link(repo / "f", repo / "h")
        os.unlink(repo / "f")
        os.write(fd, b"F")                   # the open file still has its name h
        assert (repo / "h").read_bytes() == b"F data"
        assert os.fstat(fd).st_nlink == 1
    finally:
        os.close(fd)
    c2 = commit(d, "renamed over")
    assert sorted(os.listdir(d.mount / f"r@{c2}")) == ["g", "h"]
    assert os.stat(d.mount / f"r@{c2}" / "h").st_nlink == 1
    assert os.stat(d.mount / f"r@{c1}" / "g").st_nlink == 2


# -- FIFOs, sockets, devices ----------------------------------------------------------

def test_fifos_sockets_and_devices_are_versioned_metadata(mounted, repo):
    d = mounted
    os.mkfifo(repo / "pipe", 0o640)
    sock = socket.socket(socket.AF_UNIX)
    try:
        sock.bind(str(repo / "sock"))
    finally:
        sock.close()
    os.mknod(repo / "null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
    os.chmod(repo / "null", 0o666)       # past the umask
    os.mknod(repo / "disk", stat.S_IFBLK | 0o600, os.makedev(7, 0))
    os.link(repo / "pipe", repo / "pipe2")

    # a FIFO in the mount is a FIFO: the kernel carries the bytes
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(Path(repo / "pipe").read_bytes()))
    reader.start()
    with open(repo / "pipe2", "wb") as w:
        w.write(b"through the fifo")
    reader.join(10)
    assert got == [b"through the fifo"]

    def kinds(root: Path) -> dict[str, tuple]:
        out = {}
        for name in ("pipe", "pipe2", "sock", "null", "disk"):
            st = os.lstat(root / name)
            out[name] = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_rdev, st.st_nlink)
        return out

    want = {"pipe": (stat.S_IFIFO, 0o640, 0, 2), "pipe2": (stat.S_IFIFO, 0o640, 0, 2),
            "sock": (stat.S_IFSOCK, stat.S_IMODE(os.lstat(repo / "sock").st_mode), 0, 1),
            "null": (stat.S_IFCHR, 0o666, os.makedev(1, 3), 1), "disk": (stat.S_IFBLK, 0o600, os.makedev(7, 0), 1)}
    assert kinds(repo) == want
    cid = commit(d, "specials")
    view = d.mount / f"r@{cid}"
    assert kinds(view) == want
    restart(d)
    assert kinds(repo) == want and kinds(view) == want
    # the mount is nodev: a device node in a view never opens the device
    opts = next(line.split()[3] for line in Path("/proc/mounts").read_text().splitlines()
                if line.split()[1] == str(d.mount))
    assert "nodev" in opts.split(",")
    for path in (repo / "null", view / "null"):
        with pytest.raises(PermissionError):
            os.open(path, os.O_RDONLY)
    # a changed device number is a change
    os.unlink(repo / "null")
    os.mknod(repo / "null", stat.S_IFCHR | 0o666, os.makedev(1, 5))
    assert d.cli("status", "r").out.split() == ["M", "/null"]


async def test_only_root_makes_device_nodes(mount: Mount):  # noqa: F811
    """The kernel checks CAP_MKNOD before asking the mount; the mount checks again."""
    ops = mount.ops
    await mount.svc.workers.run(mount.svc.refs.create_repo, "r", 0,
                                [{"kind": "everyone", "id": None, "role": "write"}])
    root = await mount.lookup("r")
    nobody = Ctx(NOBODY, NOBODY)
    await refused(errno.EPERM, ops.mknod(root.st_ino, b"dev", stat.S_IFCHR | 0o666, os.makedev(1, 3), nobody))
    await refused(errno.EPERM, ops.mknod(root.st_ino, b"blk", stat.S_IFBLK | 0o666, os.makedev(7, 0), nobody))
    attr = await ops.mknod(root.st_ino, b"fifo", stat.S_IFIFO | 0o644, 0, nobody)
    assert stat.S_ISFIFO(attr.st_mode) and attr.st_uid == NOBODY
    attr = await ops.mknod(root.st_ino, b"dev", stat.S_IFCHR | 0o600, os.makedev(1, 3), Ctx(0, 0))
    assert stat.S_ISCHR(attr.st_mode) and attr.st_rdev == os.makedev(1, 3)


# -- the tools that make them ---------------------------------------------------------

def linked_tree(root: Path) -> Path:
    """Files with hard links (three names of one file across two directories,
    a pair), a FIFO, a device node and a socket."""
    write(root / "one" / "data.bin", os.urandom(300_000))
    os.link(root / "one" / "data.bin", root / "one" / "data-again.bin")
    (root / "two").mkdir()
    os.link(root / "one" / "data.bin", root / "two" / "data.bin")
    write(root / "pair", b"pair\n")
    os.link(root / "pair", root / "two" / "pair")
    write(root / "single", b"no links\n")
    os.mkfifo(root / "fifo")
    os.mknod(root / "two" / "null", stat.S_IFCHR | 0o644, os.makedev(1, 3))
    return root


def link_groups(root: Path) -> list[list[str]]:
    """Names by inode, for the names with more than one link (sorted)."""
    by_ino: dict[int, list[str]] = {}
    for dirpath, _, names in os.walk(root):
        for name in names:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            if st.st_nlink > 1:
                by_ino.setdefault(st.st_ino, []).append(os.path.relpath(p, root))
    return sorted(sorted(g) for g in by_ino.values())


def test_cp_al_rsync_aH_and_du_see_the_links(mounted, repo, workdir):
    src = linked_tree(workdir / "src")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(src / "sock"))
    sock.close()
    groups = link_groups(src)
    assert groups == [["one/data-again.bin", "one/data.bin", "two/data.bin"], ["pair", "two/pair"]]

    run("rsync", "-aH", f"{src}/", f"{repo / 'rs'}/")
    assert link_groups(repo / "rs") == groups
    assert run("rsync", "-aHc", "--dry-run", "-i", f"{src}/", f"{repo / 'rs'}/") == ""
    assert stat.S_ISSOCK(os.lstat(repo / "rs" / "sock").st_mode)

    run("cp", "-al", repo / "rs", repo / "cp")           # every file a link of rs's
    assert os.lstat(repo / "cp" / "single").st_ino == os.lstat(repo / "rs" / "single").st_ino
    assert os.lstat(repo / "rs" / "one" / "data.bin").st_nlink == 6
    du_unique = int(run("du", "-sb", repo).split()[0])
    du_counted = int(run("du", "-sb", "--count-links", repo).split()[0])
    assert du_counted > du_unique          # du counts a linked file once

    cid = commit(mounted, "rsync and cp -al")
    view = mounted.mount / f"r@{cid}"
    assert run("rsync", "-aHc", "--dry-run", "-i", f"{src}/", f"{view / 'rs'}/") == ""
    both = link_groups(view)
    assert ["cp/one/data-again.bin", "cp/one/data.bin", "cp/two/data.bin",
            "rs/one/data-again.bin", "rs/one/data.bin", "rs/two/data.bin"] in both
    run("rsync", "-aH", f"{view / 'rs'}/", f"{workdir / 'back'}/")   # and out again
    assert link_groups(workdir / "back") == groups
    assert run("rsync", "-aHc", "--dry-run", "-i", f"{src}/", f"{workdir / 'back'}/") == ""


def test_tar_x_and_c_and_git_clone_with_hard_links(mounted, repo, workdir):
    src = linked_tree(workdir / "src")
    archive = workdir / "tree.tar"
    run("tar", "-cf", archive, "-C", src, ".")
    (repo / "untar").mkdir()
    run("tar", "-xpf", archive, "-C", repo / "untar")
    assert link_groups(repo / "untar") == link_groups(src)
    run("tar", "--compare", "-f", archive, "-C", repo / "untar")
    run("tar", "-cf", workdir / "again.tar", "-C", repo / "untar", ".")   # tar c of the mount
    listing = run("tar", "-tvf", workdir / "again.tar")
    assert "link to" in listing and "\np" in "\n" + listing and "\nc" in "\n" + listing

    # git clone of a repository in the mount hard-links its objects
    env = dict(os.environ, HOME=str(workdir), GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@x",
               GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@x", GIT_CONFIG_NOSYSTEM="1")
    origin = repo / "origin"
    run("git", "init", "-q", origin, env=env)
    for i in range(5):
        write(origin / f"f{i}.txt", f"file {i}\n".encode() * 100)
        run("git", "add", "-A", cwd=origin, env=env)
        run("git", "commit", "-q", "-m", f"c{i}", cwd=origin, env=env)
    run("git", "clone", "-q", origin, repo / "clone", env=env)
    objects = [p for p in (repo / "clone" / ".git" / "objects").rglob("*") if p.is_file()]
    assert objects and all(p.stat().st_nlink == 2 for p in objects)
    run("git", "fsck", "--full", "--strict", cwd=repo / "clone", env=env)

    cid = commit(mounted, "tar and git")
    view = mounted.mount / f"r@{cid}"
    run("tar", "--compare", "-f", archive, "-C", view / "untar")
    assert link_groups(view / "untar") == link_groups(src)
    sample = objects[0].relative_to(repo)
    assert os.stat(view / sample).st_ino == os.stat(view / "origin" / sample.relative_to("clone")).st_ino
    run("git", "--git-dir", view / "clone" / ".git", "fsck", "--full", "--strict", env=env)
    with open(view / sample, "rb") as f:
        assert hashlib.sha1(f.read()).digest()  # readable through the shared inode
    subprocess.run(["sync"], check=True)
