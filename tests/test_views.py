"""In-process tests of the mount's views: the Operations object over a real
store, a real staging manager and a real chunk cache (memory layer only),
called directly with a small request context.  No FUSE mount: a failure
here points at mountfs, not at the kernel or the daemon process."""

from __future__ import annotations

import errno
import os
import stat
import time
from types import SimpleNamespace

import pyfuse3
import pytest

from trunkfs.cache.chunkcache import ChunkCache
from trunkfs.store.changes import CommitMeta
from trunkfs.daemon.config import Config
from trunkfs.daemon.main import open_store
from trunkfs.daemon.wiring import build_service
from trunkfs.mountfs.inodes import ROOT_INODE
from trunkfs.mountfs.operations import TrunkOperations
from trunkfs.store.treeedit import TreeEditor

UID, GID = 1234, 4321


class Ctx:
    """What pyfuse3 passes as the request context."""

    def __init__(self, uid: int = UID, gid: int = GID) -> None:
        self.uid, self.gid, self.pid, self.umask = uid, gid, os.getpid(), 0o022


CTX = Ctx()


class PutFiles:
    """A commit change that writes files and symlinks (``str`` values are
    symlink targets) over the head, as ``trunkfs put`` does."""

    def __init__(self, store, files: dict[str, bytes | str]) -> None:
        self.store = store
        self.files = files

    async def prepare(self, session) -> None:
        return None

    def build(self, base, session) -> dict:
        editor = TreeEditor(self.store, base["tree"] if base else None)
        t = time.time_ns()
        for path, data in self.files.items():
            if isinstance(data, str):
                editor.put(path, {"type": "symlink", "mode": 0o777, "mtime": t, "target": data})
            else:
                chunks, size = session.put_bytes(data)
                editor.put(path, {"type": "file", "mode": 0o644, "mtime": t, "size": size,
                                  "chunks": chunks})
        return editor.write(session)


class Mount:
    """The Operations object and the service parts it was built from."""

    def __init__(self, ops: TrunkOperations, service, state: str) -> None:
        self.ops = ops
        self.svc = service
        self.data_dir = os.path.join(state, "staging", "data")   # staged files' bytes

    async def create_repo(self, name: str) -> None:
        await self.svc.workers.run(self.svc.refs.create_repo, name, UID)   # the test user writes: its own repo

    async def put(self, repo: str, files: dict, branch: str = "main") -> str:
        meta = CommitMeta("put", {"uid": 0, "name": "root"})
        result = await self.svc.commits.commit(repo, branch, PutFiles(self.svc.store, files), meta)
        return result.id

    async def lookup(self, path: str) -> pyfuse3.EntryAttributes:
        """Look up every part of ``path`` from the mount root, as the kernel does."""
        ino = ROOT_INODE
        attr = await self.ops.getattr(ino, CTX)
        for part in path.split("/"):
            attr = await self.ops.lookup(ino, os.fsencode(part), CTX)
            assert attr.st_ino != 0, f"{part!r} of {path!r} does not exist"
            ino = attr.st_ino
        return attr

    async def ino(self, path: str) -> int:
        return (await self.lookup(path)).st_ino

    async def listdir(self, path: str | None = None) -> list[str]:
        ino = await self.ino(path) if path else ROOT_INODE
        fh = await self.ops.opendir(ino, CTX)
        names: list[bytes] = []
        await self.ops.readdir_with(fh, 0, lambda name, attr, off: names.append(name) or True)
        await self.ops.releasedir(fh)
        return [os.fsdecode(n) for n in names]

    async def read(self, path: str) -> bytes:
        fi = await self.ops.open(await self.ino(path), os.O_RDONLY, CTX)
        try:
            return bytes(await self.ops.read(fi.fh, 0, 1 << 30))
        finally:
            await self.ops.release(fi.fh)

    async def create(self, path: str, data: bytes = b"", mode: int = 0o644) -> int:
        """Create a file with ``data``; returns its open handle."""
        parent, _, name = path.rpartition("/")
        fi, attr = await self.ops.create(await self.ino(parent), os.fsencode(name), stat.S_IFREG | mode,
                                         os.O_WRONLY | os.O_CREAT, CTX)
        if data:
            assert await self.ops.write(fi.fh, 0, data) == len(data)
        return fi.fh


async def refused(code: int, call) -> None:
    with pytest.raises(pyfuse3.FUSEError) as info:
        await call
    assert info.value.errno == code, f"errno {info.value.errno}, expected {code}"


@pytest.fixture
async def mount(tmp_path, nursery, request):
    """(parametrize ``mount`` indirectly with a listing mode: ``auto`` if not)"""
    config = Config(state=str(tmp_path / "state"))
    store = open_store(config)
    service = await build_service(config, store, None)
    cache = ChunkCache(store, str(tmp_path / "cache"), 0)
    cache.open()
    await nursery.start(cache.run)
    ops = TrunkOperations(store, service.refs, service.heads, service.workers.run, cache,
                          service.staging, uid=UID, gid=GID, listing=getattr(request, "param", "auto"))
    try:
        yield Mount(ops, service, config.state)
    finally:
        cache.close()
        service.staging.close()
        store.close()


# -- the mount root -----------------------------------------------------------------------

async def test_root_lists_repos_and_finds_views_by_name(mount):
    await mount.create_repo("a")
    await mount.create_repo("b")
    cid = await mount.put("a", {"f": b"x"})
    assert await mount.listdir() == [".", "..", "a", "b"]
    inos = {name: await mount.ino(name) for name in ("a", "a@main", f"a@{cid[:8]}", f"a@{cid}", "b")}
    assert len(set(inos.values())) == 5, "each name of the root is a directory of its own"
    assert await mount.ino("a") == inos["a"], "a second lookup finds the same inode"
    for name in ("nope", "a@", "a@nope", "a@ffffffffffff", "A/B"):
        assert (await mount.ops.lookup(ROOT_INODE, os.fsencode(name), CTX)).st_ino == 0, name
    root = await mount.ops.getattr(ROOT_INODE, CTX)
    assert stat.S_ISDIR(root.st_mode) and (root.st_uid, root.st_gid) == (UID, GID)
    await refused(errno.EROFS, mount.ops.mkdir(ROOT_INODE, b"newrepo", 0o755, CTX))
    await refused(errno.ENAMETOOLONG, mount.ops.lookup(ROOT_INODE, b"x" * 256, CTX))
    await refused(errno.ENOENT, mount.ops.getattr(10 ** 9, CTX))


# -- commit views ---------------------------------------------------------------------------

async def test_commit_view_entries_attributes_and_reads(mount):
    await mount.create_repo("r")
    big = os.urandom(3 << 20)
    cid = await mount.put("r", {"big.bin": big, "dup1": b"same" * 100, "dup2": b"same" * 100,
                                "d/sub/leaf": b"leaf", "d/other/x": b"", "link": "big.bin"})
    view = f"r@{cid[:12]}"
    assert await mount.listdir(view) == [".", "..", "big.bin", "d", "dup1", "dup2", "link"]
    big_attr = await mount.lookup(f"{view}/big.bin")
    assert big_attr.st_size == len(big) and big_attr.st_blocks == (len(big) + 511) // 512
    assert big_attr.attr_timeout > 3600, "a commit view is cached by the kernel"
    assert (await mount.lookup(f"{view}/d")).st_nlink == 4   # 2 + two subdirectories
    dup1, dup2 = await mount.lookup(f"{view}/dup1"), await mount.lookup(f"{view}/dup2")
    assert dup1.st_ino != dup2.st_ino and dup1.st_nlink == 1, "dedup must not look like a hard link"
    assert await mount.read(f"{view}/big.bin") == big
    assert await mount.read(f"{view}/d/sub/leaf") == b"leaf"
    assert await mount.ops.readlink(await mount.ino(f"{view}/link"), CTX) == b"big.bin"
    fi = await mount.ops.open(big_attr.st_ino, os.O_RDONLY, CTX)
    assert fi.keep_cache
    assert bytes(await mount.ops.read(fi.fh, (1 << 20) - 5, 10)) == big[(1 << 20) - 5:(1 << 20) + 5]
    await mount.ops.release(fi.fh)
    assert await mount.ops.getxattr(await mount.ino(view), b"user.trunkfs.commit", CTX) == cid.encode()
    assert (await mount.ops.lookup(await mount.ino(f"{view}/d"), b"missing", CTX)).st_ino == 0


async def test_commit_view_refuses_every_change(mount):
    await mount.create_repo("r")
    cid = await mount.put("r", {"f": b"data", "d/g": b"g"})
    view = f"r@{cid}"
    root, f, d = await mount.ino(view), await mount.ino(f"{view}/f"), await mount.ino(f"{view}/d")
    ops = mount.ops
    await refused(errno.EROFS, ops.create(root, b"new", 0o100644, os.O_WRONLY, CTX))
    await refused(errno.EROFS, ops.mkdir(root, b"dir", 0o755, CTX))
    await refused(errno.EROFS, ops.symlink(root, b"l", b"f", CTX))
    await refused(errno.EROFS, ops.unlink(root, b"f", CTX))
    await refused(errno.EROFS, ops.rmdir(root, b"d", CTX))
    await refused(errno.EROFS, ops.rename(root, b"f", d, b"f2", 0, CTX))
    await refused(errno.EROFS, ops.open(f, os.O_RDWR, CTX))
    await refused(errno.EROFS, ops.open(f, os.O_RDONLY | os.O_TRUNC, CTX))
    await refused(errno.EROFS, ops.setattr(f, pyfuse3.EntryAttributes(), SimpleNamespace(update_size=True), None, CTX))
    await refused(errno.EROFS, ops.setxattr(f, b"user.x", b"1", CTX))
    await refused(errno.EROFS, ops.access(f, os.W_OK, CTX))
    await refused(errno.EISDIR, ops.open(d, os.O_RDONLY, CTX))
    # a rename from a commit view into a branch view is refused as a change of the commit view
    await refused(errno.EROFS, ops.rename(root, b"f", await mount.ino("r"), b"f", 0, CTX))
    assert mount.svc.staging.area("r", "main").root is None, "nothing was staged"


# -- branch views -----------------------------------------------------------------------------

async def test_branch_view_write_read_list_and_overlay(mount):
    await mount.create_repo("r")
    await mount.put("r", {"committed.txt": b"from the head", "sub/keep": b"k", "sub/gone": b"g"})
    fh = await mount.create("r/sub/new.bin", b"hello ")
    assert await mount.ops.write(fh, 6, b"world") == 5
    assert bytes(await mount.ops.read(fh, 0, 100)) == b"hello world"   # the same handle
    await mount.ops.release(fh)
    assert await mount.read("r/sub/new.bin") == b"hello world"
    attr = await mount.lookup("r/sub/new.bin")
    assert attr.st_size == 11 and (attr.st_uid, attr.st_gid) == (UID, GID) and attr.attr_timeout <= 1
    await mount.ops.unlink(await mount.ino("r/sub"), b"gone", CTX)
    assert await mount.listdir("r/sub") == [".", "..", "keep", "new.bin"]
    assert await mount.read("r/committed.txt") == b"from the head"   # unchanged: read from the store
    assert await mount.read("r@main/sub/new.bin") == b"hello world"  # another name of the branch
    # a 4-byte patch of a committed file stages that range only; the rest reads from the base
    fi = await mount.ops.open(await mount.ino("r/committed.txt"), os.O_WRONLY, CTX)
    await mount.ops.write(fi.fh, 5, b"FROM")
    await mount.ops.release(fi.fh)
    assert await mount.read("r/committed.txt") == b"from FROMhead"
    assert (await mount.lookup("r")).st_nlink == 3


async def test_directories_nlink_enotempty_and_eexist(mount):
    await mount.create_repo("r")
    await mount.put("r", {"committed/file": b"c"})
    root = await mount.ino("r")
    d = (await mount.ops.mkdir(root, b"d", 0o755, CTX)).st_ino
    assert (await mount.ops.getattr(d, CTX)).st_nlink == 2
    await mount.ops.mkdir(d, b"sub", 0o700, CTX)
    assert (await mount.ops.getattr(d, CTX)).st_nlink == 3
    await mount.ops.release(await mount.create("r/d/f"))
    await refused(errno.EEXIST, mount.ops.mkdir(d, b"sub", 0o755, CTX))
    await refused(errno.EEXIST, mount.ops.create(d, b"f", 0o100644, os.O_WRONLY, CTX))
    await refused(errno.ENOTEMPTY, mount.ops.rmdir(root, b"d", CTX))
    await refused(errno.ENOTEMPTY, mount.ops.rmdir(root, b"committed", CTX))
    await refused(errno.ENOTDIR, mount.ops.rmdir(d, b"f", CTX))
    await refused(errno.EISDIR, mount.ops.unlink(d, b"sub", CTX))
    await refused(errno.ENAMETOOLONG, mount.ops.mkdir(d, b"n" * 256, 0o755, CTX))
    assert stat.S_ISFIFO((await mount.ops.mknod(d, b"fifo", stat.S_IFIFO | 0o644, 0, CTX)).st_mode)
    await refused(errno.EINVAL, mount.ops.mknod(d, b"dir", stat.S_IFDIR | 0o755, 0, CTX))
    await mount.ops.unlink(d, b"fifo", CTX)
    await mount.ops.rmdir(d, b"sub", CTX)
    assert (await mount.ops.getattr(d, CTX)).st_nlink == 2
    await mount.ops.unlink(d, b"f", CTX)
    await mount.ops.rmdir(root, b"d", CTX)
    assert (await mount.ops.lookup(root, b"d", CTX)).st_ino == 0
    assert await mount.listdir("r") == [".", "..", "committed"]


async def test_rename_flags_and_inodes_that_follow_their_files(mount):
    await mount.create_repo("r")
    await mount.put("r", {"a": b"A", "b": b"B"})
    root = await mount.ino("r")
    ino_a, ino_b = await mount.ino("r/a"), await mount.ino("r/b")
    await refused(errno.EEXIST, mount.ops.rename(root, b"a", root, b"b", pyfuse3.RENAME_NOREPLACE, CTX))
    await mount.ops.rename(root, b"a", root, b"b", pyfuse3.RENAME_EXCHANGE, CTX)
    assert await mount.read("r/a") == b"B" and await mount.read("r/b") == b"A"
    assert (await mount.ino("r/a"), await mount.ino("r/b")) == (ino_b, ino_a)
    await mount.ops.rename(root, b"a", root, b"c", 0, CTX)   # plain rename: the inode moves
    assert await mount.ino("r/c") == ino_b and (await mount.ops.lookup(root, b"a", CTX)).st_ino == 0
    d = (await mount.ops.mkdir(root, b"d", 0o755, CTX)).st_ino
    await refused(errno.EINVAL, mount.ops.rename(root, b"d", d, b"inside", 0, CTX))
    await refused(errno.EISDIR, mount.ops.rename(root, b"c", root, b"d", 0, CTX))
    await refused(errno.ENOTDIR, mount.ops.rename(root, b"d", root, b"c", 0, CTX))
    await mount.ops.rename(root, b"c", root, b"b", 0, CTX)   # over an existing file
    assert await mount.read("r/b") == b"B"
    assert await mount.listdir("r") == [".", "..", "b", "d"]


async def test_rename_across_views_is_exdev(mount):
    await mount.create_repo("r")
    cid = await mount.put("r", {"f": b"F"})
    await mount.svc.workers.run(mount.svc.refs.create_branch, "r", "dev", cid)
    main, dev, commit = await mount.ino("r"), await mount.ino("r@dev"), await mount.ino(f"r@{cid}")
    await refused(errno.EXDEV, mount.ops.rename(main, b"f", dev, b"f", 0, CTX))
    await refused(errno.EXDEV, mount.ops.rename(main, b"f", commit, b"g", 0, CTX))
    await refused(errno.EXDEV, mount.ops.rename(main, b"f", ROOT_INODE, b"g", 0, CTX))
    # r and r@main are two names of one branch: a rename between them is a rename
    await mount.ops.rename(main, b"f", await mount.ino("r@main"), b"g", 0, CTX)
    assert await mount.listdir("r") == [".", "..", "g"]
    assert await mount.read("r@dev/f") == b"F"


async def test_an_open_handle_survives_unlink(mount):
    await mount.create_repo("r")
    await mount.put("r", {"committed": b"committed bytes"})
    root = await mount.ino("r")
    # past the size kept inline in the journal: a data file of its own
    fh = await mount.create("r/staged", b"staged bytes".ljust(100_000, b"."))
    ino = await mount.ino("r/staged")
    await mount.ops.unlink(root, b"staged", CTX)
    assert bytes(await mount.ops.read(fh, 0, 12)) == b"staged bytes"
    await mount.ops.write(fh, 12, b" and more")
    assert bytes(await mount.ops.read(fh, 0, 21)) == b"staged bytes and more"
    assert (await mount.ops.getattr(ino, CTX)).st_nlink == 0
    data_dir = mount.data_dir
    assert os.listdir(data_dir), "the unlinked file's data stays while it is open"
    await mount.ops.release(fh)
    assert not os.listdir(data_dir), "the last release removes the unlinked file's data"
    # a committed file unlinked while open keeps reading, and takes writes, through its handle
    ino = await mount.ino("r/committed")
    fi = await mount.ops.open(ino, os.O_RDWR, CTX)
    await mount.ops.unlink(root, b"committed", CTX)
    assert bytes(await mount.ops.read(fi.fh, 0, 100)) == b"committed bytes"
    await mount.ops.write(fi.fh, 0, b"C")
    assert bytes(await mount.ops.read(fi.fh, 0, 100)) == b"Committed bytes"
    await mount.ops.release(fi.fh)
    assert not os.listdir(data_dir)
    assert await mount.listdir("r") == [".", ".."]
    await mount.ops.forget([(ino, 1)])
    assert mount.ops.inodes.get(ino) is None, "released and forgotten: the inode is gone"


async def test_a_replaced_file_keeps_its_old_content_on_its_old_inode(mount):
    await mount.create_repo("r")
    await mount.put("r", {"data.txt": b"version 1\n" * 100, "same.txt": b"same"})
    old = await mount.lookup("r/data.txt")
    same = await mount.ino("r/same.txt")
    fi = await mount.ops.open(old.st_ino, os.O_RDONLY, CTX)
    first = bytes(await mount.ops.read(fi.fh, 0, 10))
    await mount.put("r", {"data.txt": b"version 2\n" * 50})       # the branch moves
    new = await mount.lookup("r/data.txt")
    assert new.st_ino != old.st_ino and new.st_size == 500
    assert first + bytes(await mount.ops.read(fi.fh, 10, 2000)) == b"version 1\n" * 100
    assert (await mount.ops.getattr(old.st_ino, CTX)).st_size == 1000
    await mount.ops.release(fi.fh)
    assert await mount.read("r/data.txt") == b"version 2\n" * 50
    assert await mount.ino("r/same.txt") == same, "unchanged content keeps its inode"


@pytest.mark.parametrize("mount", ["whole"], indirect=True)
async def test_readdir_counts_only_the_entries_the_kernel_took(mount):
    await mount.create_repo("r")
    await mount.put("r", {f"f{i}": b"%d" % i for i in range(5)})
    view = await mount.ino("r")
    fh = await mount.ops.opendir(view, CTX)
    taken: list[tuple[bytes, int, int]] = []

    def reply(name, attr, off):
        if len(taken) == 4:    # '.', '..', f0, f1: the buffer is full
            return False
        taken.append((name, attr.st_ino, off))
        return True
    await mount.ops.readdir_with(fh, 0, reply)
    assert [(n, off) for n, _, off in taken] == [(b".", 1), (b"..", 2), (b"f0", 3), (b"f1", 4)]
    inodes = mount.ops.inodes
    assert inodes.get(taken[2][1]).lookups == 1 and inodes.get(taken[3][1]).lookups == 1
    assert inodes.at(view, "f2") is None, "an entry the kernel did not take holds no inode"
    rest: list[bytes] = []
    await mount.ops.readdir_with(fh, 4, lambda name, attr, off: rest.append(name) or True)
    assert rest == [b"f2", b"f3", b"f4"]
    await mount.ops.releasedir(fh)


@pytest.mark.parametrize("mount", ["names"], indirect=True)
async def test_a_listing_by_name_resumes_where_the_kernel_stopped_and_lets_go_at_its_end(mount):
    await mount.create_repo("r")
    cid = await mount.put("r", {f"f{i:02d}": b"%d" % i for i in range(10)} | {"d/x": b"x"})
    fh = await mount.ops.opendir(await mount.ino(f"r@{cid}"), CTX)
    listing = mount.ops.handles.get(fh).entries
    taken: list[tuple[bytes, int, int]] = []
    offset = 0
    while True:   # a buffer of three entries at a time
        got: list[tuple[bytes, int, int]] = []

        def reply(name, attr, off):
            if len(got) == 3:
                return False
            got.append((name, attr.st_ino, off))
            return True
        await mount.ops.readdir_with(fh, offset, reply)
        if not got:
            break
        taken += got
        offset = got[-1][2]
    names = [n for n, _, _ in taken]
    assert names == [b".", b"..", b"d", *(b"f%02d" % i for i in range(10))], "each name once, in order"
    assert [off for _, _, off in taken] == list(range(1, 14))
    assert all(ino == 0 for n, ino, _ in taken if n.startswith(b"f")), "files by name only (node id 0)"
    assert listing.table is None, "the names are let go once the kernel asked past the end"
    again: list[bytes] = []
    await mount.ops.readdir_with(fh, 0, lambda name, attr, off: again.append(name) or True)
    assert again == names, "a rewind lists them again"
    await mount.ops.releasedir(fh)


async def listed(mount: Mount, path: str) -> dict[bytes, pyfuse3.EntryAttributes | int]:
    """What one readdir of ``path`` sends per name ('.' and '..' aside): its
    attributes when sent whole, its ``stat.S_IF*`` type when by name only
    (node id 0)."""
    fh = await mount.ops.opendir(await mount.ino(path), CTX)
    out: dict[bytes, pyfuse3.EntryAttributes | int] = {}

    def reply(name, attr, off):
        if name in (b".", b".."):
            return True
        if attr.st_ino == 0:
            out[name] = stat.S_IFMT(attr.st_mode)
        else:
            out[name] = attr
        return True
    await mount.ops.readdir_with(fh, 0, reply)
    await mount.ops.releasedir(fh)
    return out


@pytest.mark.parametrize("mount", ["names"], indirect=True)
async def test_files_listed_by_name_only_hold_no_inode_and_keep_their_number(mount):
    await mount.create_repo("r")
    cid = await mount.put("r", {"f0": b"0", "f1": b"1", "d/x": b"x", "s": "f0"})
    for view in (f"r@{cid}", "r"):
        sent = await listed(mount, view)
        assert sent[b"f0"] == sent[b"f1"] == stat.S_IFREG and sent[b"s"] == stat.S_IFLNK
        assert isinstance(sent[b"d"], pyfuse3.EntryAttributes), "a directory goes whole: the walk enters it"
        top = await mount.ino(view)
        assert mount.ops.inodes.at(top, "f0") is None, "a name-only entry holds no inode"
        f0 = await mount.ino(f"{view}/f0")
        await mount.ops.forget([(f0, 1)])
        assert mount.ops.inodes.get(f0) is None
        assert await mount.ino(f"{view}/f0") == f0, "the number it was listed with, again"
        again = await listed(mount, view)
        assert isinstance(again[b"f0"], pyfuse3.EntryAttributes) and again[b"f0"].st_ino == f0, \
            "an entry the kernel holds goes whole, with its number"
        assert again[b"f1"] == stat.S_IFREG
    # staged over its tree, a directory is listed whole (its names have no fixed place)
    fh = await mount.create("r/new", b"n")
    await mount.ops.release(fh)
    assert all(isinstance(a, pyfuse3.EntryAttributes) for n, a in (await listed(mount, "r")).items())


async def test_auto_listing_sends_whole_entries_once_listed_names_are_looked_up(mount):
    await mount.create_repo("r")
    names = [f"f{i:03d}" for i in range(300)]
    cid = await mount.put("r", {f"{d}/{n}": b"x" for d in ("a", "b", "c") for n in names})
    view = f"r@{cid}"
    assert set((await listed(mount, f"{view}/a")).values()) == {stat.S_IFREG}, "names only at first"
    for n in names[:100]:                # a third of them wanted: names only still pay
        await mount.lookup(f"{view}/a/{n}")
    assert set((await listed(mount, f"{view}/b")).values()) == {stat.S_IFREG}
    for n in names:                      # ls -l, du, rsync: every listed name is wanted
        await mount.lookup(f"{view}/a/{n}")
        await mount.lookup(f"{view}/b/{n}")
    sent = await listed(mount, f"{view}/c")
    assert all(isinstance(a, pyfuse3.EntryAttributes) for a in sent.values()), "whole once wanted"


def test_listing_advice_turns_whole_and_tries_names_again():
    from trunkfs.mountfs.listadvice import MIN_NAMES, WHOLE_STRETCH, ListingAdvice
    advice = ListingAdvice("auto")
    advice.sent_names(MIN_NAMES)
    for _ in range(MIN_NAMES // 2):
        advice.missed()
    assert advice.names_only(), "half of the names looked up: still by name"
    advice.missed()
    assert not advice.names_only()
    advice.sent_whole(WHOLE_STRETCH - 1)
    assert not advice.names_only()
    advice.sent_whole(1)
    assert advice.names_only(), "names tried again after a stretch of whole entries"
    advice.missed()
    assert advice.names_only(), "one lookup among few names decides nothing"
    for mode, by_name in (("names", True), ("whole", False)):
        fixed = ListingAdvice(mode)
        fixed.sent_names(10_000)
        for _ in range(10_000):
            fixed.missed()
        assert fixed.names_only() is by_name
    with pytest.raises(ValueError):
        ListingAdvice("sometimes")


async def test_forget_drops_an_inode_and_numbers_are_never_reused(mount):
    await mount.create_repo("r")
    cid = await mount.put("r", {"f": b"1"})
    for path in ("r/f", f"r@{cid}/f"):
        ino = await mount.ino(path)
        await mount.ops.forget([(ino, 1)])
        assert mount.ops.inodes.get(ino) is None
        again = await mount.ino(path)
        assert again > ino


async def test_attributes_and_xattrs_on_a_branch_view(mount):
    await mount.create_repo("r")
    cid = await mount.put("r", {"f": b"12345"})
    ino = await mount.ino("r/f")
    t_atime = (await mount.ops.getattr(ino, CTX)).st_atime_ns
    new = pyfuse3.EntryAttributes()
    new.st_mtime_ns = 1_600_000_000_123_456_789
    new.st_mode = stat.S_IFREG | 0o600
    fields = SimpleNamespace(update_size=False, update_mode=True, update_uid=False, update_gid=False,
                             update_mtime=True, update_atime=False, update_ctime=False)
    attr = await mount.ops.setattr(ino, new, fields, None, CTX)   # utimens with UTIME_OMIT for atime
    assert attr.st_mtime_ns == 1_600_000_000_123_456_789 and attr.st_atime_ns == t_atime
    assert stat.S_IMODE(attr.st_mode) == 0o600
    size = SimpleNamespace(**{**vars(fields), "update_size": True, "update_mode": False,
                              "update_mtime": False})
    new.st_size = 2
    assert (await mount.ops.setattr(ino, new, size, None, CTX)).st_size == 2
    assert await mount.read("r/f") == b"12"
    await mount.ops.setxattr(ino, b"user.label", b"cats", CTX)
    await refused(errno.ENOTSUP, mount.ops.setxattr(ino, b"trusted.x", b"1", CTX))
    await mount.ops.setxattr(ino, b"user.trunkfs.commit", b"ignored", CTX)
    assert await mount.ops.getxattr(ino, b"user.label", CTX) == b"cats"
    assert await mount.ops.getxattr(ino, b"user.trunkfs.commit", CTX) == cid.encode()
    assert await mount.ops.getxattr(ino, b"user.trunkfs.branch", CTX) == b"main"
    names = await mount.ops.listxattr(ino, CTX)
    assert set(names) == {b"user.trunkfs.repo", b"user.trunkfs.branch", b"user.trunkfs.commit", b"user.label"}
    await mount.ops.removexattr(ino, b"user.label", CTX)
    await refused(pyfuse3.ENOATTR, mount.ops.getxattr(ino, b"user.label", CTX))
    await refused(pyfuse3.ENOATTR, mount.ops.getxattr(ino, b"security.selinux", CTX))
    assert (await mount.ops.link(ino, await mount.ino("r"), b"hard", CTX)).st_ino == ino
    assert (await mount.ops.getattr(ino, CTX)).st_nlink == 2
    await refused(errno.EPERM, mount.ops.link(await mount.ino("r"), await mount.ino("r"), b"dir", CTX))


async def test_a_branch_with_no_commits_and_a_second_branch(mount):
    await mount.create_repo("r")
    assert await mount.listdir("r") == [".", ".."]
    await mount.ops.release(await mount.create("r/first", b"1"))
    cid = await mount.put("r", {"other": b"o"})       # a put next to the staged file
    assert await mount.listdir("r") == [".", "..", "first", "other"]
    await mount.svc.workers.run(mount.svc.refs.create_branch, "r", "dev", cid)
    assert await mount.listdir("r@dev") == [".", "..", "other"]
    await mount.ops.release(await mount.create("r@dev/dev-only", b"d"))
    assert await mount.listdir("r") == [".", "..", "first", "other"]
    assert await mount.read("r@dev/dev-only") == b"d"
    await refused(errno.EBADF, mount.ops.read(10 ** 6, 0, 1))
    await refused(errno.EBADF, mount.ops.write(10 ** 6, 0, b"x"))
