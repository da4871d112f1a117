"""The data files of staged files: ``<state>/staging/data/<node id>``.

A staged file's written bytes live in a sparse file named by its node id
(never by its path, so any path up to PATH_MAX works), or, for a small
file (every byte written below ``INLINE_MAX``), inline: in memory while it
is in use and in the journal (``d`` keys, written with the node's record in
the area's batches).  Creating a file per small file is what costs most in a
``tar x`` of many small files; a journal batch is one append to RocksDB's log.
A file that grows past ``INLINE_MAX`` moves to a data file of its own.  Which ranges of it
hold data is the node's business (``FileNode.extents``); this module only
does the file I/O.  A node keeps its open descriptor in ``FileNode.fd``,
opened on first use and closed when its last handle is released; a
commit's worker thread reads through a descriptor of its own
(:meth:`DataFiles.open_reader`).  A committed file written after it was
unlinked has a negative node id: its data file lives only as long as its
handles.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Container

from .journal import Journal
from .nodes import FileNode

log = logging.getLogger(__name__)

INLINE_MAX = 64 * 1024


class DataFiles:
    """Open, read, write, truncate, fsync, release and remove data files,
    and the inline bytes of small files (read back from ``journal``)."""

    def __init__(self, directory: str, journal: Journal) -> None:
        self.directory = directory
        self.journal = journal
        os.makedirs(directory, mode=0o700, exist_ok=True)

    def path(self, nid: int) -> str:
        return os.path.join(self.directory, str(nid))

    def fd(self, node: FileNode) -> int:
        """The node's data file, opened (and made) on first use."""
        if node.fd is None:
            node.fd = os.open(self.path(node.id), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        return node.fd

    def write(self, node: FileNode, off: int, data: bytes) -> int:
        """pwrite(2) into the node's data file (or its inline bytes); returns
        the bytes written."""
        end = off + len(data)
        if node.fd is None and end <= INLINE_MAX and (node.inline or not node.extents):
            buf = self.buffer(node)
            if len(buf) < off:
                buf.extend(bytes(off - len(buf)))
            buf[off:end] = data
            node.inline = node.data_dirty = True
            return len(data)
        if node.inline:
            self._spill(node)
        return os.pwrite(self.fd(node), data, off)

    def buffer(self, node: FileNode) -> bytearray:
        """An inline node's bytes, in memory (read back from the journal)."""
        if node.data is None:
            node.data = bytearray(self.journal.data(node.id)) if node.inline else bytearray()
        return node.data

    def _spill(self, node: FileNode) -> None:
        """An inline file grown past INLINE_MAX: its bytes to a data file of
        its own (the journal's copy goes with the node's next record)."""
        buf = self.buffer(node)
        node.inline = False
        os.pwrite(self.fd(node), buf, 0)
        node.data, node.data_dirty = None, False

    def read(self, node: FileNode, off: int, n: int, fd: int | None = None) -> bytes:
        """``n`` bytes at ``off`` (holes and the part past the end read as
        zeros), through ``fd`` when given, else the node's own descriptor."""
        if node.inline:
            buf = node.data if node.data is not None else self.journal.data(node.id)
            data = bytes(buf[off:off + n])
        else:
            data = os.pread(self.fd(node) if fd is None else fd, n, off)
        return data if len(data) == n else data + bytes(n - len(data))

    def shrink(self, node: FileNode, size: int) -> None:
        """Cut the data file to ``size`` bytes when it is longer."""
        if node.inline:
            del self.buffer(node)[size:]
            node.data_dirty = True
            return
        fd = self.fd(node)
        if os.fstat(fd).st_size > size:
            os.ftruncate(fd, size)

    def fsync(self, node: FileNode, datasync: bool = False) -> None:
        """fsync(2) of the node's data file, whichever handle wrote it; a node
        without written data (or with inline bytes: the journal's) has
        nothing to sync here."""
        if node.inline:
            return
        if node.fd is None and node.extents:
            self.fd(node)
        if node.fd is not None:
            if datasync:
                os.fdatasync(node.fd)
            else:
                os.fsync(node.fd)

    def open_reader(self, node: FileNode) -> int | None:
        """A read-only descriptor of its own on a node's data file (for a
        commit's worker thread: the node's descriptor belongs to the event
        loop); None when the node never had data or keeps it inline.  The
        caller closes it."""
        if node.inline:
            return None
        try:
            return os.open(self.path(node.id), os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return None

    def release(self, node: FileNode) -> None:
        """Close the node's descriptor; remove the file once the node has
        left the tree (``node.linked`` false)."""
        if node.fd is not None:
            os.close(node.fd)
            node.fd = None
        if not node.linked:
            self.remove(node.id)

    def remove(self, nid: int) -> None:
        """Remove a data file (an open descriptor keeps it readable)."""
        try:
            os.unlink(self.path(nid))
        except FileNotFoundError:
            pass

    def remove_unowned(self, owned: Container[int]) -> int:
        """Remove data files no staged node owns (left by a crash); returns how many."""
        removed = 0
        for name in os.listdir(self.directory):
            if name.isdigit() and name == str(int(name)) and int(name) in owned:
                continue
            try:
                os.unlink(os.path.join(self.directory, name))
                removed += 1
            except OSError as exc:
                log.warning("cannot remove stale staging file %s: %s", name, exc)
        return removed
