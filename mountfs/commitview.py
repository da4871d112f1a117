"""``<mount>/<repo>@<commit>/``: one commit, read-only.

Nothing in a commit view ever changes, so the kernel caches it for a long
time (long entry and attribute timeouts, ``keep_cache``): a second read of
committed data does not reach Python.  A directory's inode keeps its entry;
any other inode keeps its place in its directory's tree and finds its entry
there again when asked (``Inode.committed``, ``ViewParts.entry_of``).
"""

from __future__ import annotations

import errno
import os
from collections.abc import Awaitable
from typing import Any

import pyfuse3

from .attrs import negative_entry
from .handles import Handle, OpenFile
from .inodes import Inode
from .listings import DirListing, TreePages
from .reader import ChunkReader
from .view import (NEGATIVE_TIMEOUT, VIRTUAL_XATTRS, XATTR_COMMIT, XATTR_REPO, View, ViewParts,
                   fuse_error)

IMMUTABLE_TIMEOUT = 24 * 3600.0


def _tree_of(parent: Inode) -> str | None:
    """The tree id of a directory inode's entry (kept whole: a directory's)."""
    return parent.entry.get("tree") if parent.entry is not None else None


class CommitView(View):
    repo: str
    def __init__(self, parts: ViewParts, repo: str, commit: str) -> None:
        super().__init__(parts)
        self.repo = repo
        self.commit = commit

    def _child(self, parent: Inode, name: str, entry: dict, number: int | None = None) -> Inode:
        """The inode at parent/name; the names of a hard-link group share one.
        ``number``: the one it was listed with by name only, if it was."""
        inodes = self.parts.inodes
        inode = inodes.at(parent.ino, name)
        if inode is None:
            inode = inodes.add(self, parent, name, number)
            inode.committed(entry, _tree_of(parent))
            if "link" in entry:
                shared = inodes.group_inode((self, entry["link"]), inode)
                if shared is not inode:      # another name of the group: its inode
                    inodes.take(parent.ino, name)
                    inodes.release(inode)
                    inodes.alias(shared, parent, name)
                    return shared
        return inode

    async def _attr(self, inode: Inode, entry: dict | None = None) -> pyfuse3.EntryAttributes:
        """The inode's attributes (``entry``: its entry, when the caller holds it)."""
        if entry is None:
            entry = await self.parts.entry_of(inode)
        nlink = None
        if "link" in entry:
            nlink = await self.parts.link_count(await self.parts.commit_root(self.commit), entry["link"])
        return self.parts.attr(inode.ino, entry, IMMUTABLE_TIMEOUT, nlink)

    async def lookup(self, parent: Inode, name: bytes) -> pyfuse3.EntryAttributes:
        sname = os.fsdecode(name)
        inode = self.parts.inodes.at(parent.ino, sname)
        if inode is None:
            entry = (await self.parts.listing(await self.parts.entry_of(parent))).get(sname)
            if entry is None:
                return negative_entry(NEGATIVE_TIMEOUT)
            number = self.parts.listed_number(parent, sname)
            if number is not None:   # listed by name only, and wanted after all
                self.parts.advice.missed()
            inode = self._child(parent, sname, entry, number)
        try:
            attr = await self._attr(inode)
        except BaseException:
            self.parts.inodes.release(inode)
            raise
        inode.lookups += 1
        return attr

    async def getattr(self, inode: Inode) -> pyfuse3.EntryAttributes:
        return await self._attr(inode)

    async def entries(self, inode: Inode) -> DirListing:
        entry = await self.parts.entry_of(inode)
        if entry["type"] != "dir":
            raise fuse_error(errno.ENOTDIR)
        return TreePages(self.parts.store, self.parts.run, entry.get("tree"))

    async def entry_attr(self, parent: Inode, name: bytes,
                         item: Any) -> tuple[Inode, pyfuse3.EntryAttributes]:
        sname = item["name"]
        inode = self._child(parent, sname, item, self.parts.listed_number(parent, sname))
        # the listed entry is the inode's own, unless the inode is its link group's
        return inode, await self._attr(inode, None if "link" in item else item)

    async def open(self, inode: Inode, flags: int, ctx: pyfuse3.RequestContext) -> pyfuse3.FileInfo:
        if flags & os.O_ACCMODE != os.O_RDONLY or flags & os.O_TRUNC:
            raise fuse_error(errno.EROFS)
        entry = await self.parts.entry_of(inode)
        if entry["type"] == "dir":
            raise fuse_error(errno.EISDIR)
        if entry["type"] != "file":
            raise fuse_error(errno.ELOOP)
        fh = self.parts.handles.add(OpenFile(inode, ChunkReader.of_entry(self.parts.cache, entry), entry))
        return pyfuse3.FileInfo(fh=fh, keep_cache=True)

    def read(self, handle: Handle, off: int, size: int) -> Awaitable[bytes | memoryview]:
        if not isinstance(handle, OpenFile) or handle.reader is None:
            raise fuse_error(errno.EBADF)
        return handle.reader.read(off, size)   # the hot path: no coroutine of its own

    async def readlink(self, inode: Inode) -> bytes:
        entry = await self.parts.entry_of(inode)
        if entry["type"] != "symlink":
            raise fuse_error(errno.EINVAL)
        return os.fsencode(entry.get("target", ""))

    async def _user_xattr(self, inode: Inode, name: bytes) -> bytes:
        if name.startswith(VIRTUAL_XATTRS):
            value = self._virtual().get(name)
        else:  # stored with the file
            stored = (await self.parts.entry_of(inode)).get("xattrs", {}).get(os.fsdecode(name))
            value = bytes.fromhex(stored) if stored is not None else None
        if value is None:
            raise fuse_error(pyfuse3.ENOATTR)
        return value

    async def listxattr(self, inode: Inode) -> list[bytes]:
        return [*self._virtual(), *(os.fsencode(n) for n in (await self.parts.entry_of(inode)).get("xattrs", {}))]

    def _virtual(self) -> dict[bytes, bytes]:
        return {XATTR_REPO: self.repo.encode(), XATTR_COMMIT: self.commit.encode()}
