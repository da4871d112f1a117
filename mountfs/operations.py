"""The FUSE file system (pyfuse3 Operations): each request goes to the view
that owns its inode or handle, and every exception becomes an errno.

``<mount>/`` lists the repos (``root``); ``<mount>/<repo>/`` is branch
``main`` and ``<mount>/<repo>@<branch>/`` another branch, writable
(``branchview``); ``<mount>/<repo>@<commit or prefix>/`` is one commit,
read-only (``commitview``).  All of them share one inode table
(``inodes``) and one handle table (``handles``).  The root and commit
views refuse writes with EROFS; a rename from one view into another is
EXDEV.  Every request that names its caller is checked against the roles of
the view's repo first (``access``): ``read`` to use a view, ``write`` to
change a branch view (EACCES, before anything is staged); writes count
against the staging quota of the uid that opened the file (EDQUOT).
"""

from __future__ import annotations

import errno
import functools
import logging
import os
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any, NoReturn, ParamSpec, TypeVar, cast

import pyfuse3

from ..cache.chunkcache import ChunkCache
from ..staging.manager import StagingManager
from ..staging.quota import QuotaExceeded
from ..store.access import READ, WRITE
from ..store.errors import IntegrityError, InvalidArgument, NotFound, TrunkError
from ..store.refs import Refs
from ..store.store import Store
from .access import RepoGate
from .attrs import NAME_MAX
from .handles import HandleTable, OpenDir
from .opstats import OpStats
from .inodes import Inode, InodeTable
from .listadvice import ListingAdvice
from .listings import NAME_ONLY_FORMAT, ListedEntries, TreePages
from .nameonly import NameOnlyEntry
from .root import RootDir
from .view import Heads, Run, ViewParts, fuse_error

log = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")

READDIR_PAGE = 128   # entries taken from a listing at a time (a reply buffer holds a few hundred)
DirReply = Callable[[bytes, pyfuse3.EntryAttributes, int], bool]   # pyfuse3.readdir_reply, bound


def _no_inode() -> NoReturn:
    """(``self.inodes.get(ino) or _no_inode()``: the inode, without a call of ours)"""
    raise fuse_error(errno.ENOENT)


def _no_handle() -> NoReturn:
    raise fuse_error(errno.EBADF)


def fuse_errors(fn: Callable[P, Awaitable[T]]) -> Callable[P, Coroutine[Any, Any, T]]:
    """Map every exception of a handler to a FUSEError; log the unexpected ones."""
    name = fn.__name__

    @functools.wraps(fn)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        start = time.perf_counter()
        failed = True
        try:
            result = await fn(*args, **kwargs)
            failed = False
            return result
        except pyfuse3.FUSEError:
            raise
        except QuotaExceeded as exc:   # the user's limit, not a fault of ours
            log.debug("%s: %s", name, exc)
            raise pyfuse3.FUSEError(errno.EDQUOT) from None
        except (NotFound, InvalidArgument) as exc:
            log.debug("%s%r: %s", name, args[1:3], exc)
            raise pyfuse3.FUSEError(errno.ENOENT) from None
        except IntegrityError as exc:
            log.error("%s: %s", name, exc)
            raise pyfuse3.FUSEError(errno.EIO) from None
        except TrunkError as exc:
            log.error("%s%r failed: %s", name, args[1:3], exc)
            raise pyfuse3.FUSEError(errno.EIO) from None
        except OSError as exc:
            log.error("%s%r failed: %s", name, args[1:3], exc)
            raise pyfuse3.FUSEError(exc.errno or errno.EIO) from None
        except Exception:
            log.exception("internal error in %s%r", name, args[1:3])
            raise pyfuse3.FUSEError(errno.EIO) from None
        finally:
            stats = getattr(args[0], "opstats", None)
            if stats is not None:
                stats.observe(name, time.perf_counter() - start, failed)
    return wrapper


class TrunkOperations(pyfuse3.Operations):
    supports_dot_lookup = True
    # the kernel gathers small writes in its page cache and sends them in
    # large requests; it keeps a file's size and mtime itself (``branchnodes``
    # gives a path a new inode whenever its file changes other than through it)
    enable_writeback_cache = True

    def __init__(self, store: Store, refs: Refs, heads: Heads, run: Run, cache: ChunkCache,
                 staging: StagingManager, *, uid: int | None = None, gid: int | None = None,
                 writeback_cache: bool = True, listing: str = "auto") -> None:
        super().__init__()
        self.enable_writeback_cache = writeback_cache
        self.store = store
        self.run = run
        self.opstats = OpStats()   # counts and latencies by operation (the daemon's /metrics)
        self.inodes = InodeTable()
        self.handles = HandleTable()
        self.parts = ViewParts(store, heads, run, cache, self.inodes, self.handles,
                               os.getuid() if uid is None else uid,
                               os.getgid() if gid is None else gid, time.time_ns(),
                               advice=ListingAdvice(listing))
        self.gate = RepoGate(refs, run)
        # files listed by name only (``nameonly``, ``listadvice``); None where pyfuse3 cannot
        self.name_only = NameOnlyEntry.probe() if listing != "whole" else None
        self.root = RootDir(self.parts, refs, staging, self.gate)
        self._statfs_cache: tuple[float, int] = (0.0, 0)

    def _may_use(self, node: Inode, ctx: pyfuse3.RequestContext) -> Awaitable[None]:
        """EACCES unless the caller may read the repo of ``node``'s view."""
        return self.gate.require(ctx, node.view.repo, READ)

    def _may_change(self, node: Inode, ctx: pyfuse3.RequestContext) -> Awaitable[None]:
        """EACCES unless the caller may write there (a branch view; the other
        views refuse changes themselves, with EROFS, to those who may read)."""
        view = node.view
        return self.gate.require(ctx, view.repo, WRITE if view.staged else READ)

    def branch_changed(self, repo: str, branch: str | None) -> None:
        """A branch moved or went away (a ``BranchHeads`` listener)."""
        self.root.branch_moved(repo, branch)

    def staged_changed(self, repo: str, branch: str, paths: list[list[str]]) -> None:
        """Paths were staged through the socket (a ``StagingManager`` listener)."""
        self.root.paths_staged(repo, branch, paths)

    # -- names and attributes -----------------------------------------------------------

    @fuse_errors
    async def lookup(self, parent_inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        if len(name) > NAME_MAX:
            raise fuse_error(errno.ENAMETOOLONG)
        parent = self.inodes.get(parent_inode) or _no_inode()
        if parent is self.root.inode and name not in (b".", b".."):
            await self.gate.require(ctx, self.root.repo_named(name), READ, missing_ok=True)
        else:
            await self._may_use(parent, ctx)
        if name == b".":
            target = parent
        elif name == b"..":
            target = parent.parent or self.root.inode
        else:
            return await parent.view.lookup(parent, name)
        attr = await target.view.getattr(target)
        target.lookups += 1
        return attr

    async def forget(self, inode_list: Sequence[tuple[int, int]]) -> None:
        for ino, count in inode_list:
            self.inodes.forget(ino, count)

    @fuse_errors
    async def getattr(self, inode: int, ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        node = self.inodes.get(inode) or _no_inode()
        await self._may_use(node, ctx)
        return await node.view.getattr(node)

    @fuse_errors
    async def readlink(self, inode: int, ctx: pyfuse3.RequestContext) -> bytes:
        node = self.inodes.get(inode) or _no_inode()
        await self._may_use(node, ctx)
        return await node.view.readlink(node)

    @fuse_errors
    async def access(self, inode: int, mode: int, ctx: pyfuse3.RequestContext) -> bool:
        node = self.inodes.get(inode) or _no_inode()
        await self._may_use(node, ctx)
        return await node.view.access(node, mode)

    # -- directories ------------------------------------------------------------------------

    @fuse_errors
    async def opendir(self, inode: int, ctx: pyfuse3.RequestContext) -> int:
        node = self.inodes.get(inode) or _no_inode()
        await self._may_use(node, ctx)
        entries = await node.view.entries(node)
        if isinstance(entries, ListedEntries) and node is self.root.inode and ctx.uid != 0:
            # the repos this caller may read
            entries = ListedEntries([e for e in entries.items if await self.gate.allows(ctx, e[1], READ)])
        return self.handles.add(OpenDir(node, entries))

    @fuse_errors
    async def readdir(self, fh: int, start_id: int, token: pyfuse3.ReaddirToken) -> None:
        await self.readdir_with(fh, start_id, functools.partial(pyfuse3.readdir_reply, token))

    @fuse_errors
    async def readdir_with(self, fh: int, start_id: int, reply: DirReply) -> None:
        """readdir with ``reply(name, attributes, next offset)`` taking each
        entry until it returns False.  Offsets 0 and 1 are '.' and '..';
        entry i of the listing is offset i + 2."""
        handle = self.handles.get(fh) or _no_handle()
        if not isinstance(handle, OpenDir):
            raise fuse_error(errno.ENOTDIR)
        inode, view = handle.inode, handle.inode.view
        if start_id == 0:
            if not reply(b".", await view.getattr(inode), 1):
                return
            start_id = 1
        if start_id == 1:
            up = inode.parent or self.root.inode
            if not reply(b"..", await up.view.getattr(up), 2):
                return
            start_id = 2
        i = start_id - 2
        listing = handle.entries
        advice = self.parts.advice
        if self.name_only is not None and isinstance(listing, TreePages) and advice.names_only():
            await self._list_by_name(inode, listing, i, reply, self.name_only)
            return
        while page := await listing.page(i, READDIR_PAGE):
            whole = 0
            try:
                for name, item in page:
                    i += 1
                    sent = await self._reply_whole(inode, name, item, i + 2, reply)
                    if sent is False:
                        return
                    whole += sent is True
            finally:
                advice.sent_whole(whole)

    async def _list_by_name(self, inode: Inode, listing: TreePages, i: int, reply: DirReply,
                            only: NameOnlyEntry) -> None:
        """A tree's entries from entry i, files by name only (``nameonly``):
        entry i with ``d_ino`` base + i (``listed_block``) and its type.  A
        directory (the walk goes into it), a hard-link name and a name the
        kernel holds an inode for are sent whole.  The loop runs once per
        name of a walk: it calls nothing of ours for a file."""
        if i >= listing.length > 0:
            # the kernel asks past the end once it has every name: they are
            # not kept while the directory stays open (a rewind reads them again)
            listing.table = None
            return
        table = await listing.names()
        names, kinds, formats = table.names, table.kinds, NAME_ONLY_FORMAT
        base = self.inodes.listed_block(inode.ino, listing.tree or "", len(names))
        attr, node_id = only.attr, only.node_id
        held = self.inodes.names_in(inode.ino)
        named = whole = 0
        try:
            while i < len(names):
                name, fmt = names[i], formats[kinds[i]]
                i += 1
                if fmt and (not held or os.fsdecode(name) not in held):
                    attr.st_ino = base + i - 1   # sets the node id too...
                    node_id.value = 0            # ...so it is cleared again
                    attr.st_mode = fmt
                    if not reply(name, attr, i + 2):
                        return
                    named += 1
                    continue
                item = await listing.page(i - 1, 1)
                sent = await self._reply_whole(inode, name, item[0][1], i + 2, reply) if item else None
                held = self.inodes.names_in(inode.ino)
                if sent is False:
                    return
                whole += sent is True
        finally:
            self.parts.advice.sent_names(named)
            self.parts.advice.sent_whole(whole)

    async def _reply_whole(self, inode: Inode, name: bytes, item: Any, offset: int,
                           reply: DirReply) -> bool | None:
        """Send one listed entry whole (its inode and attributes): True when
        the kernel took it (its lookup count raised), False when its buffer
        is full (the inode let go unless something else holds it), None when
        the entry is gone since opendir."""
        found = await inode.view.entry_attr(inode, name, item)
        if found is None:
            return None
        child, attr = found
        if not reply(name, attr, offset):
            self.inodes.release(child)
            return False
        child.lookups += 1
        return True

    async def releasedir(self, fh: int) -> None:
        handle = self.handles.pop(fh)
        if handle is not None:
            self.inodes.release(handle.inode)

    @fuse_errors
    async def fsyncdir(self, fh: int, datasync: bool) -> None:
        handle = self.handles.get(fh)
        if handle is not None:
            await handle.inode.view.fsyncdir(handle, datasync)

    # -- files ------------------------------------------------------------------------------

    @fuse_errors
    async def open(self, inode: int, flags: int, ctx: pyfuse3.RequestContext) -> pyfuse3.FileInfo:
        node = self.inodes.get(inode) or _no_inode()
        if flags & os.O_ACCMODE != os.O_RDONLY or flags & os.O_TRUNC:
            await self._may_change(node, ctx)
        else:
            await self._may_use(node, ctx)
        return await node.view.open(node, flags, ctx)

    @fuse_errors
    async def read(self, fh: int, off: int, size: int) -> bytes:
        handle = self.handles.get(fh) or _no_handle()
        # a memoryview into a cached chunk saves a copy: pyfuse3 takes any buffer
        return cast(bytes, await handle.inode.view.read(handle, off, size))

    @fuse_errors
    async def write(self, fh: int, off: int, buf: bytes) -> int:
        handle = self.handles.get(fh) or _no_handle()
        try:
            return await handle.inode.view.write(handle, off, buf)
        except QuotaExceeded as exc:
            if not self.enable_writeback_cache:
                raise
            # the kernel sends cached pages: it reports a failed one at close
            # or fsync, ENOSPC kept as ENOSPC and anything else turned into EIO
            log.info("write refused (%s): ENOSPC at close or fsync", exc)
            raise pyfuse3.FUSEError(errno.ENOSPC) from None

    async def flush(self, fh: int) -> None:
        """Not needed: staged data reach the data file at each write, and a
        file's extents are journaled at release and fsync.  ENOSYS tells the
        kernel to stop sending FLUSH on every close(2): one round trip less
        per file written."""
        raise fuse_error(errno.ENOSYS)

    @fuse_errors
    async def fsync(self, fh: int, datasync: bool) -> None:
        handle = self.handles.get(fh)
        if handle is not None:
            await handle.inode.view.fsync(handle, datasync)

    @fuse_errors
    async def release(self, fh: int) -> None:
        handle = self.handles.pop(fh)
        if handle is not None:
            try:
                await handle.inode.view.release(handle)
            finally:
                self.inodes.release(handle.inode)

    # -- changes (branch views; the other views refuse them) ---------------------------------

    @fuse_errors
    async def setattr(self, inode: int, attr: pyfuse3.EntryAttributes, fields: pyfuse3.SetattrFields,
                      fh: int | None, ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        node = self.inodes.get(inode) or _no_inode()
        await self._may_change(node, ctx)
        return await node.view.setattr(node, attr, fields, fh, ctx)

    @fuse_errors
    async def create(self, parent_inode: int, name: bytes, mode: int, flags: int,
                     ctx: pyfuse3.RequestContext) -> tuple[pyfuse3.FileInfo, pyfuse3.EntryAttributes]:
        parent = self.inodes.get(parent_inode) or _no_inode()
        await self._may_change(parent, ctx)
        return await parent.view.create(parent, name, mode, flags, ctx)

    @fuse_errors
    async def mknod(self, parent_inode: int, name: bytes, mode: int, rdev: int,
                    ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        parent = self.inodes.get(parent_inode) or _no_inode()
        await self._may_change(parent, ctx)
        return await parent.view.mknod(parent, name, mode, rdev, ctx)

    @fuse_errors
    async def mkdir(self, parent_inode: int, name: bytes, mode: int,
                    ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        parent = self.inodes.get(parent_inode) or _no_inode()
        await self._may_change(parent, ctx)
        return await parent.view.mkdir(parent, name, mode, ctx)

    @fuse_errors
    async def symlink(self, parent_inode: int, name: bytes, target: bytes,
                      ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        parent = self.inodes.get(parent_inode) or _no_inode()
        await self._may_change(parent, ctx)
        return await parent.view.symlink(parent, name, target, ctx)

    @fuse_errors
    async def link(self, inode: int, new_parent_inode: int, new_name: bytes,
                   ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        node = self.inodes.get(inode) or _no_inode()
        new_parent = self.inodes.get(new_parent_inode) or _no_inode()
        await self._may_change(new_parent, ctx)   # a link into another view is EXDEV
        return await node.view.link(node, new_parent, new_name, ctx)

    @fuse_errors
    async def unlink(self, parent_inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> None:
        parent = self.inodes.get(parent_inode) or _no_inode()
        await self._may_change(parent, ctx)
        await parent.view.unlink(parent, name)

    @fuse_errors
    async def rmdir(self, parent_inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> None:
        parent = self.inodes.get(parent_inode) or _no_inode()
        await self._may_change(parent, ctx)
        await parent.view.rmdir(parent, name)

    @fuse_errors
    async def rename(self, parent_inode_old: int, name_old: bytes, parent_inode_new: int,
                     name_new: bytes, flags: int, ctx: pyfuse3.RequestContext) -> None:
        parent = self.inodes.get(parent_inode_old) or _no_inode()
        new_parent = self.inodes.get(parent_inode_new) or _no_inode()
        await self._may_change(parent, ctx)   # a rename into another view is EXDEV
        await parent.view.rename(parent, name_old, new_parent, name_new, flags)

    # -- extended attributes ------------------------------------------------------------------

    @fuse_errors
    async def getxattr(self, inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> bytes:
        node = self.inodes.get(inode) or _no_inode()
        await self._may_use(node, ctx)
        return await node.view.getxattr(node, name)

    @fuse_errors
    async def listxattr(self, inode: int, ctx: pyfuse3.RequestContext) -> list[bytes]:
        node = self.inodes.get(inode) or _no_inode()
        await self._may_use(node, ctx)
        return await node.view.listxattr(node)

    @fuse_errors
    async def setxattr(self, inode: int, name: bytes, value: bytes, ctx: pyfuse3.RequestContext) -> None:
        node = self.inodes.get(inode) or _no_inode()
        await self._may_change(node, ctx)
        await node.view.setxattr(node, name, value)

    @fuse_errors
    async def removexattr(self, inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> None:
        node = self.inodes.get(inode) or _no_inode()
        await self._may_change(node, ctx)
        await node.view.removexattr(node, name)

    # -- the file system --------------------------------------------------------------------

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
