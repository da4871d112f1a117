"""Open files and directories of every view, numbered from one counter.

A handle holds its inode (an open inode stays in the inode table until its
last handle is released).  An open directory holds the listing taken at
opendir; an open file holds the reader of the committed content it reads
and, in a branch view, the staged file it holds open.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from .inodes import Inode
from .reader import ChunkReader

if TYPE_CHECKING:
    from ..staging.nodes import FileNode
    from .listings import DirListing


class Handle:
    __slots__ = ("inode",)

    def __init__(self, inode: Inode) -> None:
        self.inode = inode


class OpenDir(Handle):
    __slots__ = ("entries",)

    def __init__(self, inode: Inode, entries: DirListing) -> None:
        super().__init__(inode)
        self.entries = entries    # pages of (name, what the view needs to answer for it)


class OpenFile(Handle):
    __slots__ = ("reader", "reader_of", "node", "uid")

    def __init__(self, inode: Inode, reader: ChunkReader | None = None,
                 reader_of: object = None, uid: int = 0) -> None:
        super().__init__(inode)
        self.reader = reader          # reads committed chunks ...
        self.reader_of = reader_of    # ... of this entry (or chunk list)
        self.node: FileNode | None = None   # branch views: the staged file held open
        self.uid = uid                # who opened it: FUSE writes carry no caller; its quota pays

    def hold(self, node: FileNode) -> None:
        """Hold ``node`` open (its data file stays while any handle does)."""
        if self.node is node:
            return
        if self.node is not None:
            self.node.opens -= 1
        self.node = node
        node.opens += 1


class HandleTable:
    def __init__(self) -> None:
        self._open: dict[int, Handle] = {}
        self._next = 1
        self.get: Callable[[int], Handle | None] = self._open.get   # every read and write starts here

    def add(self, handle: Handle) -> int:
        fh = self._next
        self._next += 1
        self._open[fh] = handle
        handle.inode.handles += 1
        return fh

    def pop(self, fh: int) -> Handle | None:
        handle = self._open.pop(fh, None)
        if handle is not None:
            handle.inode.handles -= 1
        return handle

    def __len__(self) -> int:
        return len(self._open)
