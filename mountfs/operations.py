"""The FUSE file system (pyfuse3 Operations).

``<mount>/`` lists the repos; ``<mount>/<repo>/`` is branch ``main``;
``<mount>/<repo>@<branch>/`` and ``<mount>/<repo>@<commit or prefix>/`` are
found by lookup.  Commit views are immutable and cached by the kernel for a
long time (``keep_cache``, long timeouts): this module serves them.  Branch
views are writable, over the branch's staging area: ``writable.py`` serves
them, and the handlers here hand their inodes over to it.

Every handler converts our errors to errno values: an exception never
reaches pyfuse3 unconverted.
"""

from __future__ import annotations

import errno
import functools
import logging
import os
import stat
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import pyfuse3

from ..cache.chunkcache import ChunkCache
from ..store.errors import IntegrityError, InvalidArgument, NotFound, TrunkError
from ..store.names import check_name
from ..store.refs import Refs
from ..store.store import Store
from ..staging.manager import StagingManager
from .attrs import NAME_MAX, make_attr, negative_entry
from .filehandle import FileHandle
from .inodes import ROOT_INODE, InodeTable, Node, View, same_identity
from .writable import WritableViews

log = logging.getLogger(__name__)

IMMUTABLE_TIMEOUT = 24 * 3600.0
BRANCH_TIMEOUT = 1.0
ROOT_TIMEOUT = 1.0
NEGATIVE_TIMEOUT = 1.0
TREE_INDEX_CACHE = 512

XATTR_COMMIT = b"user.trunkfs.commit"
XATTR_BRANCH = b"user.trunkfs.branch"
XATTR_REPO = b"user.trunkfs.repo"


class Heads(Protocol):
    """Branch heads as the daemon knows them (``daemon.heads.BranchHeads``)."""

    async def head(self, repo: str, branch: str) -> str | None: ...


Run = Callable[..., Awaitable[Any]]   # runs a blocking call in a worker thread


def _errno_of(exc: BaseException) -> int:
    if isinstance(exc, pyfuse3.FUSEError):
        return exc.errno
    if isinstance(exc, (NotFound, InvalidArgument)):
        return errno.ENOENT
    if isinstance(exc, OSError) and exc.errno:
        return exc.errno
    return errno.EIO


def fuse_errors(fn: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    """Map every exception of a handler to a FUSEError; log the unexpected ones."""
    @functools.wraps(fn)
    async def wrapper(self, *args: Any) -> Any:
        try:
            return await fn(self, *args)
        except pyfuse3.FUSEError:
            raise
        except (NotFound, InvalidArgument) as exc:
            log.debug("%s%r: %s", fn.__name__, args[:2], exc)
            raise pyfuse3.FUSEError(errno.ENOENT) from None
        except IntegrityError as exc:
            log.error("%s: %s", fn.__name__, exc)
            raise pyfuse3.FUSEError(errno.EIO) from None
        except TrunkError as exc:
            log.error("%s%r failed: %s", fn.__name__, args[:2], exc)
            raise pyfuse3.FUSEError(errno.EIO) from None
        except OSError as exc:
            log.error("%s%r failed: %s", fn.__name__, args[:2], exc)
            raise pyfuse3.FUSEError(exc.errno or errno.EIO) from None
        except Exception:
            log.exception("internal error in %s%r", fn.__name__, args[:2])
            raise pyfuse3.FUSEError(errno.EIO) from None
    return wrapper


class TrunkOperations(WritableViews, pyfuse3.Operations):
    supports_dot_lookup = True
    enable_writeback_cache = False

    def __init__(self, store: Store, refs: Refs, heads: Heads, run: Run, cache: ChunkCache,
                 staging: StagingManager, *, uid: int | None = None, gid: int | None = None) -> None:
        super().__init__()
        self.store = store
        self.refs = refs
        self.heads = heads
        self.run = run
        self.cache = cache
        self.uid = os.getuid() if uid is None else uid
        self.gid = os.getgid() if gid is None else gid
        self.inodes = InodeTable()
        self.handles: dict[int, FileHandle] = {}
        self.dir_handles: dict[int, tuple[Node, list[tuple[bytes, dict | None, View | None]]]] = {}
        self._next_fh = 1
        self._tree_index: OrderedDict[str, dict[str, dict]] = OrderedDict()
        self._started = time.time_ns()
        self._statfs_cache: tuple[float, int] = (0.0, 0)
        self._init_writable(staging)

    # -- views and entries ------------------------------------------------------

    async def _view_for(self, name: str) -> View:
        repo, at, ref = name.partition("@")
        check_name(repo, "repo")
        if at and not ref:
            raise NotFound(f"{name!r}: empty ref")
        ref = ref or "main"
        commit, branch = await self.run(self.refs.resolve, repo, ref)
        if branch is not None:
            return View(name, repo, branch, None)
        return View(name, repo, None, commit)

    async def _view_commit(self, view: View) -> str | None:
        if view.branch is None:
            return view.commit
        return await self.heads.head(view.repo, view.branch)

    async def _tree_names(self, tree: str) -> dict[str, dict]:
        idx = self._tree_index.get(tree)
        if idx is not None:
            self._tree_index.move_to_end(tree)
            return idx
        entries = self.store.cached_tree(tree)
        if entries is None:
            entries = await self.run(self.store.read_tree, tree)
        idx = {e["name"]: e for e in entries}
        self._tree_index[tree] = idx
        while len(self._tree_index) > TREE_INDEX_CACHE:
            self._tree_index.popitem(last=False)
        return idx

    async def _root_entry(self, commit_id: str | None) -> dict:
        if commit_id is None:
            return {"name": "", "type": "dir", "mode": 0o755, "mtime": self._started,
                    "tree": None, "dirs": 0}
        commit = (self.store.cached_commit(commit_id)
                  or await self.run(self.store.read_commit, commit_id))
        return {"name": "", "type": "dir", "mode": 0o755, "mtime": int(commit.time * 1e9),
                "tree": commit.tree, "size": commit.size, "files": commit.files,
                "dirs": commit.dirs}

    async def _resolve(self, view: View, path: tuple[str, ...], commit_id: str | None) -> dict:
        entry = await self._root_entry(commit_id)
        for i, name in enumerate(path):
            if entry["type"] != "dir" or not entry.get("tree"):
                raise NotFound(f"{view.name}/{'/'.join(path[:i + 1])} does not exist")
            child = (await self._tree_names(entry["tree"])).get(name)
            if child is None:
                raise NotFound(f"{view.name}/{'/'.join(path[:i + 1])} does not exist")
            entry = child
        return entry

    async def _entry(self, node: Node) -> dict:
        """The node's current entry (re-resolved when its branch moved).

        A file whose path now holds other content keeps its old entry: the
        path has a new inode, and this one is the replaced file.
        """
        commit_id = await self._view_commit(node.view)
        if node.entry is None or node.entry_commit != commit_id:
            try:
                entry = await self._resolve(node.view, node.path, commit_id)
            except NotFound:
                if node.entry is not None and node.entry["type"] != "dir":
                    return node.entry  # removed on the branch; still open here
                raise
            if node.entry is None or same_identity(node.entry, entry):
                node.entry = entry
                node.entry_commit = commit_id
        return node.entry

    def _timeout(self, view: View | None) -> float:
        if view is None:
            return ROOT_TIMEOUT
        return IMMUTABLE_TIMEOUT if view.immutable else BRANCH_TIMEOUT

    def _node(self, ino: int) -> Node:
        node = self.inodes.get(ino)
        if node is None:
            raise pyfuse3.FUSEError(errno.ENOENT)
        return node

    def _root_attr(self) -> pyfuse3.EntryAttributes:
        return make_attr(ROOT_INODE, {"type": "dir", "mode": 0o755, "mtime": self._started, "dirs": 0},
                         self.uid, self.gid, ROOT_TIMEOUT)

    # -- lookup and attributes --------------------------------------------------

    @fuse_errors
    async def lookup(self, parent_inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        if len(name) > NAME_MAX:
            raise pyfuse3.FUSEError(errno.ENAMETOOLONG)
        w = self.wnodes.get(parent_inode)
        if w is not None:
            if name == b".":
                return await self.getattr(parent_inode, ctx)
            if name == b"..":
                return await self.getattr(w.parent.ino if w.parent else ROOT_INODE, ctx)
            return await self.wlookup(w, name)
        parent = self._node(parent_inode)
        sname = os.fsdecode(name)
        if name == b".":
            return await self.getattr(parent_inode, ctx)
        if name == b"..":
            up = parent.parent if parent.ino != ROOT_INODE else ROOT_INODE
            return await self.getattr(up, ctx)
        try:
            if parent.view is None:
                view = await self._view_for(sname)
                if view.branch is not None and self.staging is not None:
                    w = self._wroot(view)
                    r = await self.wresolve(w)
                    w.lookups += 1
                    return await self.wattr(w, r)
                commit_id = await self._view_commit(view)
                entry = await self._root_entry(commit_id)
                node = self.inodes.node(view, (), ROOT_INODE, name, entry)
            else:
                pentry = await self._entry(parent)
                if pentry["type"] != "dir" or not pentry.get("tree"):
                    raise NotFound(sname)
                entry = (await self._tree_names(pentry["tree"])).get(sname)
                if entry is None:
                    raise NotFound(sname)
                commit_id = parent.entry_commit
                node = self.inodes.node(parent.view, parent.path + (sname,), parent.ino, name, entry)
        except (NotFound, InvalidArgument):
            return negative_entry(NEGATIVE_TIMEOUT)
        node.entry, node.entry_commit = entry, commit_id
        node.lookups += 1
        return make_attr(node.ino, entry, self.uid, self.gid, self._timeout(node.view))

    async def forget(self, inode_list) -> None:
        for ino, count in inode_list:
            w = self.wnodes.get(ino)
            if w is not None:
                self._wforget(w, count)
            else:
                self.inodes.forget(ino, count)

    @fuse_errors
    async def getattr(self, inode: int, ctx: pyfuse3.RequestContext | None = None) -> pyfuse3.EntryAttributes:
        if inode == ROOT_INODE:
            return self._root_attr()
        w = self.wnodes.get(inode)
        if w is not None:
            return await self.wattr(w)
        node = self._node(inode)
        entry = await self._entry(node)
        return make_attr(inode, entry, self.uid, self.gid, self._timeout(node.view))

    @fuse_errors
    async def readlink(self, inode: int, ctx: pyfuse3.RequestContext) -> bytes:
        w = self.wnodes.get(inode)
        if w is not None:
            r = await self.wresolve(w)
            if isinstance(r, dict):
                entry = r
            elif r.kind == "symlink":
                return os.fsencode(r.target)
            else:
                raise pyfuse3.FUSEError(errno.EINVAL)
        else:
            entry = await self._entry(self._node(inode))
        if entry["type"] != "symlink":
            raise pyfuse3.FUSEError(errno.EINVAL)
        return os.fsencode(entry.get("target", ""))

    @fuse_errors
    async def access(self, inode: int, mode: int, ctx: pyfuse3.RequestContext) -> bool:
        w = self.wnodes.get(inode)
        if w is not None:
            await self.wresolve(w)
            return True
        if mode & os.W_OK:
            raise pyfuse3.FUSEError(errno.EROFS)
        if inode != ROOT_INODE:
            await self._entry(self._node(inode))
        return True

    # -- directories ------------------------------------------------------------

    @fuse_errors
    async def opendir(self, inode: int, ctx: pyfuse3.RequestContext) -> int:
        w = self.wnodes.get(inode)
        if w is not None:
            fh = self._next_fh
            self._next_fh += 1
            self.dir_handles[fh] = (w, await self.wlisting(w))
            return fh
        node = self._node(inode) if inode != ROOT_INODE else self.inodes.get(ROOT_INODE)
        listing: list[tuple[bytes, dict | None, View | None]] = []
        if inode == ROOT_INODE:
            repos = await self.run(self.refs.list_repos)
            for info in repos:
                listing.append((os.fsencode(info.name), None, View(info.name, info.name, "main", None)))
        else:
            entry = await self._entry(node)
            if entry["type"] != "dir":
                raise pyfuse3.FUSEError(errno.ENOTDIR)
            if entry.get("tree"):
                idx = await self._tree_names(entry["tree"])
                listing = [(os.fsencode(name), e, None) for name, e in sorted(idx.items())]
        fh = self._next_fh
        self._next_fh += 1
        self.dir_handles[fh] = (node, listing)
        return fh

    @fuse_errors
    async def readdir(self, fh: int, start_id: int, token: pyfuse3.ReaddirToken) -> None:
        """Offsets 0 and 1 are '.' and '..'; entry i of the listing is offset i + 2."""
        node, listing = self.dir_handles[fh]
        if node.__class__.__name__ == "WNode":
            return await self._wreaddir(node, listing, start_id, token)
        if start_id == 0:
            if not pyfuse3.readdir_reply(token, b".", await self.getattr(node.ino), 1):
                return
            start_id = 1
        if start_id == 1:
            if not pyfuse3.readdir_reply(token, b"..", await self.getattr(node.parent), 2):
                return
            start_id = 2
        for i in range(start_id - 2, len(listing)):
            name, entry, view = listing[i]
            if view is not None and self.staging is not None:  # a repo: its writable main view
                w = self._wroot(view)
                try:
                    attr = await self.wattr(w)
                except (NotFound, pyfuse3.FUSEError):
                    continue
                if not pyfuse3.readdir_reply(token, name, attr, i + 3):
                    if w.lookups == 0:
                        self._wforget(w, 0)
                    break
                w.lookups += 1
                continue
            if view is not None:  # a repo in the mount root
                try:
                    commit_id = await self.heads.head(view.repo, "main")
                    entry = await self._root_entry(commit_id)
                except NotFound:
                    continue
                child = self.inodes.node(view, (), ROOT_INODE, name, entry)
                child.entry, child.entry_commit = entry, commit_id
            else:
                child = self.inodes.node(node.view, node.path + (os.fsdecode(name),), node.ino, name, entry)
                child.entry, child.entry_commit = entry, node.entry_commit
            attr = make_attr(child.ino, entry, self.uid, self.gid, self._timeout(child.view))
            if not pyfuse3.readdir_reply(token, name, attr, i + 3):
                if child.lookups == 0:
                    self.inodes.forget(child.ino, 0)
                break
            child.lookups += 1

    async def _wreaddir(self, w, listing, start_id: int, token) -> None:
        if start_id == 0:
            if not pyfuse3.readdir_reply(token, b".", await self.wattr(w), 1):
                return
            start_id = 1
        if start_id == 1:
            if not pyfuse3.readdir_reply(token, b"..", await self.getattr(w.parent.ino if w.parent else ROOT_INODE), 2):
                return
            start_id = 2
        for i in range(start_id - 2, len(listing)):
            name, _x = listing[i]
            child = self._wchild(w, os.fsdecode(name))
            try:
                attr = await self.wattr(child)
            except pyfuse3.FUSEError:  # gone since opendir
                if child.lookups == 0:
                    self._wforget(child, 0)
                continue
            if not pyfuse3.readdir_reply(token, name, attr, i + 3):
                if child.lookups == 0:
                    self._wforget(child, 0)
                break
            child.lookups += 1

    async def releasedir(self, fh: int) -> None:
        self.dir_handles.pop(fh, None)

    # -- files ------------------------------------------------------------------

    @fuse_errors
    async def open(self, inode: int, flags: int, ctx: pyfuse3.RequestContext) -> pyfuse3.FileInfo:
        w = self.wnodes.get(inode)
        if w is not None:
            return await self.wopen(w, flags, ctx)
        node = self._node(inode)
        if flags & os.O_ACCMODE != os.O_RDONLY or flags & os.O_TRUNC:
            raise pyfuse3.FUSEError(errno.EROFS)
        entry = await self._entry(node)
        if entry["type"] == "dir":
            raise pyfuse3.FUSEError(errno.EISDIR)
        if entry["type"] != "file":
            raise pyfuse3.FUSEError(errno.ELOOP)
        content = tuple(c[0] for c in entry.get("chunks", []))
        keep = node.view.immutable or node.opened_content == content
        node.opened_content = content
        fh = self._next_fh
        self._next_fh += 1
        self.handles[fh] = FileHandle(self.cache, entry, f"{node.view.name}/{'/'.join(node.path)}")
        return pyfuse3.FileInfo(fh=fh, keep_cache=keep)

    @fuse_errors
    async def read(self, fh: int, off: int, size: int) -> bytes | memoryview:
        handle = self.handles.get(fh)
        if handle is None:
            wh = self.whandles.get(fh)
            if wh is None:
                raise pyfuse3.FUSEError(errno.EBADF)
            return await self.wread(wh, off, size)
        return await handle.read(off, size)

    @fuse_errors
    async def release(self, fh: int) -> None:
        if self.handles.pop(fh, None) is None:
            await self.wrelease(fh)

    async def flush(self, fh: int) -> None:
        """Not needed: staged data reach the data file at each write, and a
        file's extents are journaled at release and fsync.  ENOSYS tells the
        kernel to stop sending FLUSH on every close(2): one round trip less
        per file written."""
        raise pyfuse3.FUSEError(errno.ENOSYS)

    @fuse_errors
    async def fsync(self, fh: int, datasync: bool) -> None:
        wh = self.whandles.get(fh)
        if wh is not None:
            await self.wfsync(wh, datasync)

    @fuse_errors
    async def fsyncdir(self, fh: int, datasync: bool) -> None:
        if self.staging is not None:
            self.staging.flush()
            await self.run(self.staging.journal.sync)  # rename, create... are durable now

    # -- file system ------------------------------------------------------------

    @fuse_errors
    async def statfs(self, ctx: pyfuse3.RequestContext) -> pyfuse3.StatvfsData:
        now = time.monotonic()
        when, stored = self._statfs_cache
        if now - when > 5:
            stored = await self.run(lambda: sum(s for _, s, _ in self.store.index.packs()))
            self._statfs_cache = (now, stored)
        st = await self.run(os.statvfs, self.store.tmp_dir)
        d = pyfuse3.StatvfsData()
        d.f_bsize = 4096
        d.f_frsize = 4096
        free = st.f_bavail * st.f_frsize // 4096
        d.f_blocks = stored // 4096 + free
        d.f_bfree = free
        d.f_bavail = free
        d.f_files = len(self.inodes) + 1_000_000
        d.f_ffree = 1_000_000
        d.f_favail = 1_000_000
        d.f_namemax = NAME_MAX
        return d

    @fuse_errors
    async def getxattr(self, inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> bytes:
        w = self.wnodes.get(inode)
        if w is not None and not name.startswith(b"user."):  # ls asks for ACLs and labels of every file
            raise pyfuse3.FUSEError(pyfuse3.ENOATTR)
        if w is not None and not name.startswith(b"user.trunkfs."):
            stored = await self.wgetxattrs(w)
            value = stored.get(os.fsdecode(name))
            if value is None:
                raise pyfuse3.FUSEError(pyfuse3.ENOATTR)
            return value
        if not name.startswith(b"user.trunkfs."):  # stored with the file (ls asks for ACLs of each)
            if not name.startswith(b"user.") or inode == ROOT_INODE:
                raise pyfuse3.FUSEError(pyfuse3.ENOATTR)
            node = self._node(inode)
            entry = node.entry or await self._entry(node)
            value = entry.get("xattrs", {}).get(os.fsdecode(name))
            if value is None:
                raise pyfuse3.FUSEError(pyfuse3.ENOATTR)
            return bytes.fromhex(value)
        values = await self._xattrs(inode)
        if name not in values:
            raise pyfuse3.FUSEError(pyfuse3.ENOATTR)
        return values[name]

    @fuse_errors
    async def listxattr(self, inode: int, ctx: pyfuse3.RequestContext) -> list[bytes]:
        names = list(await self._xattrs(inode))
        w = self.wnodes.get(inode)
        if w is not None:
            names += [os.fsencode(n) for n in await self.wgetxattrs(w)]
        elif inode != ROOT_INODE:
            node = self._node(inode)
            names += [os.fsencode(n) for n in (node.entry or await self._entry(node)).get("xattrs", {})]
        return names

    async def _xattrs(self, inode: int) -> dict[bytes, bytes]:
        if inode == ROOT_INODE:
            return {}
        w = self.wnodes.get(inode)
        if w is not None:
            await self.wresolve(w)
            head = await self.heads.head(w.view.repo, w.view.branch)
            out = {XATTR_REPO: w.view.repo.encode(), XATTR_BRANCH: w.view.branch.encode()}
            if head:
                out[XATTR_COMMIT] = head.encode()
            return out
        node = self._node(inode)
        await self._entry(node)
        out = {XATTR_REPO: node.view.repo.encode()}
        if node.entry_commit:
            out[XATTR_COMMIT] = node.entry_commit.encode()
        if node.view.branch:
            out[XATTR_BRANCH] = node.view.branch.encode()
        return out

    # -- branch moves -----------------------------------------------------------

    def branch_changed(self, repo: str, branch: str | None) -> None:
        """Drop the kernel's entries for a branch's views (called after a move);
        what lies below them has short timeouts and follows on its own."""
        views = self.inodes.branch_views(repo, branch) + [
            w.view for w in self.wroots.values()
            if w.view.repo == repo and (branch is None or w.view.branch == branch)]
        for view in views:
            try:
                pyfuse3.invalidate_entry_async(ROOT_INODE, os.fsencode(view.name), ignore_enoent=True)
            except Exception:  # the kernel may not know the entry
                log.debug("cannot invalidate %s", view.name)

    # -- everything that writes: branch views only ----------------------------------

    def _writable(self, inode: int):
        w = self.wnodes.get(inode)
        if w is None:
            raise pyfuse3.FUSEError(errno.EROFS)  # the mount root and commit views
        return w

    @fuse_errors
    async def setattr(self, inode, attr, fields, fh, ctx):
        return await self.wsetattr(self._writable(inode), attr, fields, fh, ctx)

    @fuse_errors
    async def mknod(self, parent_inode, name, mode, rdev, ctx):
        w = self._writable(parent_inode)
        if not stat.S_ISREG(mode):
            raise pyfuse3.FUSEError(errno.EPERM)  # only files, directories and symlinks are versioned
        info, attr = await self.wcreate(w, name, mode, os.O_WRONLY, ctx)
        await self.wrelease(info.fh)
        return attr

    @fuse_errors
    async def mkdir(self, parent_inode, name, mode, ctx):
        return await self.wmkdir(self._writable(parent_inode), name, mode, ctx)

    @fuse_errors
    async def unlink(self, parent_inode, name, ctx):
        await self.wunlink(self._writable(parent_inode), name)

    @fuse_errors
    async def rmdir(self, parent_inode, name, ctx):
        await self.wrmdir(self._writable(parent_inode), name)

    @fuse_errors
    async def symlink(self, parent_inode, name, target, ctx):
        return await self.wsymlink(self._writable(parent_inode), name, target, ctx)

    @fuse_errors
    async def rename(self, parent_inode_old, name_old, parent_inode_new, name_new, flags, ctx):
        src = self._writable(parent_inode_old)
        dst = self.wnodes.get(parent_inode_new)
        if dst is None:
            raise pyfuse3.FUSEError(errno.EXDEV)
        await self.wrename(src, name_old, dst, name_new, flags)

    @fuse_errors
    async def link(self, inode, new_parent_inode, new_name, ctx):
        self._writable(inode)
        raise pyfuse3.FUSEError(errno.EPERM)  # hard links are not supported (README)

    @fuse_errors
    async def write(self, fh, off, buf):
        wh = self.whandles.get(fh)
        if wh is None:
            raise pyfuse3.FUSEError(errno.EBADF)
        return await self.wwrite(wh, off, buf)

    @fuse_errors
    async def create(self, parent_inode, name, mode, flags, ctx):
        return await self.wcreate(self._writable(parent_inode), name, mode, flags, ctx)

    @fuse_errors
    async def setxattr(self, inode, name, value, ctx):
        await self.wsetxattr(self._writable(inode), name, value)

    @fuse_errors
    async def removexattr(self, inode, name, ctx):
        await self.wremovexattr(self._writable(inode), name)
