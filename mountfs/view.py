"""What every directory of the mount answers, and the parts views are built on.

The mount shows three kinds of directories: the mount root (``root``),
commit views (``commitview``) and branch views (``branchview``).  Each is a
:class:`View`; every inode and every open handle belongs to one view, and
``operations`` hands each request to it.  Every view answers the reads;
the writes are refused here (EROFS) and answered by branch views only.
"""

from __future__ import annotations

import bisect
import errno
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import pyfuse3

from ..cache.chunkcache import ChunkCache
from ..staging.nodes import Node
from ..store.links import link_census
from ..store.store import Store
from ..store.walk import listing
from .attrs import attributes
from .handles import Handle, HandleTable
from .inodes import Inode, InodeTable
from .listadvice import ListingAdvice

if TYPE_CHECKING:
    from .listings import DirListing

NEGATIVE_TIMEOUT = 1.0   # how long the kernel may remember a "no such entry"

XATTR_COMMIT = b"user.trunkfs.commit"
XATTR_BRANCH = b"user.trunkfs.branch"
XATTR_REPO = b"user.trunkfs.repo"
VIRTUAL_XATTRS = b"user.trunkfs."   # computed by the mount, never stored


class Heads(Protocol):
    """Branch heads as the daemon knows them (``daemon.heads.BranchHeads``)."""

    async def head(self, repo: str, branch: str) -> str | None: ...


Run = Callable[..., Awaitable[Any]]   # runs a blocking call in a worker thread


def _entry_name(entry: dict) -> str:
    return entry["name"]


def fuse_error(code: int) -> pyfuse3.FUSEError:
    return pyfuse3.FUSEError(code)


@dataclass
class ViewParts:
    """What every view is built on: the store, the chunk cache, the branch
    heads, the one inode table and the one handle table."""

    store: Store
    heads: Heads
    run: Run
    cache: ChunkCache
    inodes: InodeTable
    handles: HandleTable
    uid: int        # the owner shown where an entry names none
    gid: int
    started: int    # when the mount started (ns): the time of the root and of empty branches
    # hard-link names per group, by root tree (``store.links``); a few trees' worth
    census: dict[str, dict[str, int]] = field(default_factory=dict)
    # whether listings send files by name only (``listadvice``)
    advice: ListingAdvice = field(default_factory=ListingAdvice)

    async def listing(self, entry: dict | None) -> dict[str, dict]:
        """A committed directory's entries by name ({} for anything else):
        from the store's tree cache on the event loop, from a worker thread
        on a miss.  Shared with the store's cache: do not modify."""
        tree = entry.get("tree") if entry is not None and entry["type"] == "dir" else None
        if not tree:
            return listing(self.store, None)   # the shared empty listing
        idx = self.store.cached_tree_index(tree)
        if idx is None:
            idx = await self.run(self.store.tree_index, tree)
        return idx

    def listed_number(self, parent: Inode, name: str) -> int | None:
        """The inode number ``name`` was listed with, by name only, in the
        directory ``parent`` (its d_ino; ``InodeTable.listed_block``), if it
        was.  A tree lists its entries sorted by name; one that does not (a
        damaged store) gets fresh numbers."""
        block = self.inodes.block_of(parent.ino)
        if block is None:
            return None
        tree, base = block
        entries = self.store.cached_tree(tree)
        if entries is None:
            return None
        pos = bisect.bisect_left(entries, name, key=_entry_name)
        if pos < len(entries) and entries[pos]["name"] == name:
            return base + pos
        return None

    async def entry_of(self, inode: Inode) -> dict:
        """The committed entry ``inode`` shows: kept whole, or found again in
        the tree it was listed in (ENOENT if it shows none)."""
        if inode.entry is not None:
            return inode.entry
        tree, name = inode.source()
        if tree is None:
            raise fuse_error(errno.ENOENT)
        idx = self.store.cached_tree_index(tree)
        if idx is None:
            idx = await self.run(self.store.tree_index, tree)
        entry = idx.get(name)
        if entry is None:   # a tree never changes: only a damaged one lacks it
            raise fuse_error(errno.EIO)
        return entry

    async def commit_root(self, commit_id: str) -> dict:
        """A commit's root directory entry."""
        commit = (self.store.cached_commit(commit_id)
                  or await self.run(self.store.read_commit, commit_id))
        return commit.root_entry()

    async def link_count(self, root: dict, link: str) -> int:
        """How many names the hard-link group ``link`` has in the tree under
        ``root`` (st_nlink); counted once per tree, from a worker thread."""
        tree = root.get("tree") or ""
        counts = self.census.get(tree)
        if counts is None:
            counts = await self.run(link_census, self.store, root) if tree else {}
            if len(self.census) >= 16:
                self.census.pop(next(iter(self.census)))
            self.census[tree] = counts
        return counts.get(link, 1)

    def attr(self, ino: int, x: Node | dict, timeout: float,
             nlink: int | None = None) -> pyfuse3.EntryAttributes:
        return attributes(ino, x, self.uid, self.gid, timeout, nlink)


class View:
    """The requests one kind of directory answers.  Subclasses answer lookup,
    getattr, the listing and the reads; this base refuses every write.

    Every request returns an awaitable.  The most frequent ones (getattr,
    getxattr, read) are declared as plain methods returning one, so that a
    view may hand over a coroutine of its parts, or refuse at once, without
    a coroutine of its own.

    ``repo`` is the repo a view shows (None: the mount root): its access
    list decides who may use the view (``access``); ``staged`` views take
    changes, which need the ``write`` role."""

    repo: str | None = None
    staged = False

    def __init__(self, parts: ViewParts) -> None:
        self.parts = parts

    # -- reads: every view ---------------------------------------------------------

    async def lookup(self, parent: Inode, name: bytes) -> pyfuse3.EntryAttributes:
        """``name`` in the directory ``parent``: its attributes, its lookup
        count raised by one; a negative entry if there is none."""
        raise NotImplementedError

    def getattr(self, inode: Inode) -> Awaitable[pyfuse3.EntryAttributes]:
        raise NotImplementedError

    async def entries(self, inode: Inode) -> DirListing:
        """The listing of a directory that opendir keeps (``listings``): pages
        of (name, what :meth:`entry_attr` needs to answer for it)."""
        raise NotImplementedError

    async def entry_attr(self, parent: Inode, name: bytes,
                         item: Any) -> tuple[Inode, pyfuse3.EntryAttributes] | None:
        """The inode and attributes of one listed entry (None: gone since
        opendir).  The caller raises the lookup count once the kernel took it."""
        raise NotImplementedError

    async def open(self, inode: Inode, flags: int, ctx: pyfuse3.RequestContext) -> pyfuse3.FileInfo:
        raise fuse_error(errno.EISDIR)

    def read(self, handle: Handle, off: int, size: int) -> Awaitable[bytes | memoryview]:
        """The bytes [off, off + size) of an open file (awaited by the caller:
        a view may hand over its reader's coroutine, one call less per read)."""
        raise fuse_error(errno.EBADF)

    async def readlink(self, inode: Inode) -> bytes:
        raise fuse_error(errno.EINVAL)

    async def access(self, inode: Inode, mode: int) -> bool:
        if mode & os.W_OK:
            raise fuse_error(errno.EROFS)
        return True

    def getxattr(self, inode: Inode, name: bytes) -> Awaitable[bytes]:
        """Only ``user.*`` names are ever answered; others (``ls`` asks for
        ACLs and labels of every file) fail here, without a coroutine."""
        if not name.startswith(b"user."):
            raise fuse_error(pyfuse3.ENOATTR)
        return self._user_xattr(inode, name)

    async def _user_xattr(self, inode: Inode, name: bytes) -> bytes:
        """A ``user.*`` attribute (computed ``user.trunkfs.*`` or stored)."""
        raise fuse_error(pyfuse3.ENOATTR)

    async def listxattr(self, inode: Inode) -> list[bytes]:
        return []

    async def release(self, handle: Handle) -> None:
        return None

    async def fsync(self, handle: Handle, datasync: bool) -> None:
        return None

    async def fsyncdir(self, handle: Handle, datasync: bool) -> None:
        return None

    # -- writes: refused unless a view answers them -------------------------------------

    async def setattr(self, inode: Inode, attr: pyfuse3.EntryAttributes,
                      fields: pyfuse3.SetattrFields, fh: int | None,
                      ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        raise fuse_error(errno.EROFS)

    async def create(self, parent: Inode, name: bytes, mode: int, flags: int,
                     ctx: pyfuse3.RequestContext) -> tuple[pyfuse3.FileInfo, pyfuse3.EntryAttributes]:
        raise fuse_error(errno.EROFS)

    async def mknod(self, parent: Inode, name: bytes, mode: int, rdev: int,
                    ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        raise fuse_error(errno.EROFS)

    async def mkdir(self, parent: Inode, name: bytes, mode: int,
                    ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        raise fuse_error(errno.EROFS)

    async def symlink(self, parent: Inode, name: bytes, target: bytes,
                      ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        raise fuse_error(errno.EROFS)

    async def link(self, inode: Inode, parent: Inode, name: bytes,
                   ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        raise fuse_error(errno.EROFS)

    async def unlink(self, parent: Inode, name: bytes) -> None:
        raise fuse_error(errno.EROFS)

    async def rmdir(self, parent: Inode, name: bytes) -> None:
        raise fuse_error(errno.EROFS)

    async def rename(self, parent: Inode, name: bytes, new_parent: Inode, new_name: bytes,
                     flags: int) -> None:
        raise fuse_error(errno.EROFS)

    async def write(self, handle: Handle, off: int, buf: bytes) -> int:
        raise fuse_error(errno.EBADF)

    async def setxattr(self, inode: Inode, name: bytes, value: bytes) -> None:
        raise fuse_error(errno.EROFS)

    async def removexattr(self, inode: Inode, name: bytes) -> None:
        raise fuse_error(errno.EROFS)
