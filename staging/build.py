"""Turning a staging area into tree entries and trees, for a commit.

Runs in a worker thread on a frozen area.  Files are cut again only around
their written ranges (``store.rechunk``); a file with no base is ingested
whole; a file with only new metadata keeps its chunks.  Directories are
written bottom-up over the branch head's trees (resolved through
:mod:`.overlay`), so a commit replays the staged changes on whatever the
head is when it lands.  The status diff is :mod:`.status`.
"""

from __future__ import annotations

import bisect
import itertools
import logging
import os
from collections.abc import Callable, Iterator

from ..store.links import link_names
from ..store.objects import dir_counts
from ..store.rechunk import rechunk
from ..store.store import Store
from ..store.treeedit import TreeEditor
from ..store.walk import listing
from ..store.writer import WriteSession
from .area import StagingArea
from .datafiles import DataFiles
from .journal import EntryStash
from .conflicts import ADOPT, HEAD, PathConflict, settle
from .nodes import FOLLOW, DirNode, FileNode, LinkNode, Node, SpecialNode
from .overlay import lower_of

log = logging.getLogger(__name__)

READ_BLOCK = 4 * 1024 * 1024

Entries = EntryStash | dict[int, dict]   # a staged node's tree entry, by node id


class BaseReader:
    """Reads byte ranges of a committed chunk list (whole chunks, last one kept)."""

    def __init__(self, store: Store, chunks: list) -> None:
        self.store = store
        self.chunks = chunks
        self.starts = [0, *itertools.accumulate(c[1] for c in chunks)]
        self._last: tuple[int, bytes] | None = None

    def _chunk(self, i: int) -> bytes:
        if self._last is not None and self._last[0] == i:
            return self._last[1]
        data = self.store.read_blob(bytes.fromhex(self.chunks[i][0]))
        self._last = (i, data)
        return data

    def read(self, off: int, end: int) -> bytes:
        """The base bytes [off, end) (fewer past the base's end)."""
        parts = []
        i = bisect.bisect_right(self.starts, off) - 1
        while off < end and i < len(self.chunks):
            data = self._chunk(i)
            start = self.starts[i]
            stop = min(end, start + len(data))
            parts.append(data[off - start:stop - start])
            off = stop
            i += 1
        return b"".join(parts)


def file_reader(datafiles: DataFiles, store: Store, node: FileNode,
                fd: int | None) -> Callable[[int, int], bytes]:
    """``read(off, n)`` of a staged file's content: written ranges from its
    data file (through ``fd``), the rest from its base chunks or zeros."""
    base = BaseReader(store, node.base_chunks)

    def read(off: int, n: int) -> bytes:
        out = []
        for kind, s, e in node.pieces(off, min(off + n, node.size)):
            if kind == "data":
                out.append(datafiles.read(node, s, e - s, fd) if fd is not None or node.inline
                           else bytes(e - s))
            elif kind == "base":
                out.append(base.read(s, e))
            else:
                out.append(bytes(e - s))
        return b"".join(out)
    return read


def file_chunks(datafiles: DataFiles, store: Store, session: WriteSession, node: FileNode,
                progress: Callable[[int], None] | None = None) -> list:
    """A staged file's chunk list: its base's when only metadata changed,
    else cut again around the changed ranges (or whole, without a base)."""
    if not node.content_changed:
        return node.base_chunks
    fd = datafiles.open_reader(node) if node.extents else None
    try:
        return _file_chunks(session, node, file_reader(datafiles, store, node, fd), progress)
    finally:
        if fd is not None:
            os.close(fd)


def _file_chunks(session: WriteSession, node: FileNode, read: Callable[[int, int], bytes],
                 progress: Callable[[int], None] | None) -> list:
    if node.base_limit == 0 or not node.base_chunks:
        ingest = session.ingest()
        for off in range(0, node.size, READ_BLOCK):
            block = read(off, min(READ_BLOCK, node.size - off))
            ingest.write(block)
            if progress:
                progress(len(block))
        chunks, _ = ingest.finish()
        return chunks
    chunks, reread = rechunk(session, node.base_chunks, node.size, node.dirty_ranges(), read)
    if progress:
        progress(reread)
    return chunks


def staged_bytes(area: StagingArea) -> int:
    """Bytes a commit has to read (for its progress bar)."""
    total = 0
    for node in area.read_all():
        if isinstance(node, FileNode) and node.content_changed:
            total += node.size if node.base_limit == 0 or not node.base_chunks else \
                sum(e - s for s, e in node.dirty_ranges())
    return total


def file_entries(area: StagingArea, store: Store, session: WriteSession,
                 progress: Callable[[int], None] | None = None) -> EntryStash:
    """The tree entry (without name) of every staged file and symlink, by
    node id: in memory up to the area's ``paged_entries``, in the journal
    beyond (``EntryStash``)."""
    out = area.journal.stash(area.repo, area.branch, keep=area.paged_entries)
    out.clear()
    for node in area.walk():
        if isinstance(node, FileNode):
            chunks = file_chunks(area.datafiles, store, session, node, progress)
            out.put(node.id, dict(node.entry_meta(), size=node.size, chunks=chunks))
        elif isinstance(node, LinkNode):
            out.put(node.id, dict(node.entry_meta(), target=node.target))
        elif isinstance(node, SpecialNode):
            out.put(node.id, node.entry_meta())
    out.flush()
    return out


def build_tree(area: StagingArea, store: Store, session: WriteSession, head_root: dict | None,
               entries: Entries, force: bool = False) -> dict:
    """Write the trees of the staged view over ``head_root``; returns the
    root entry.  ``entries`` are the staged files' and symlinks' entries
    (:func:`file_entries`); the area must have a root.  Each staged name the
    head also changed since it was staged is settled by
    :func:`.conflicts.settle` (PathConflict naming every path that both
    changed; with ``force`` the staged version wins).  Children are written
    before their parent from an explicit stack, so any depth writes."""
    if area.root is None:
        raise ValueError(f"nothing is staged in {area.where}")
    conflicts: list[str] = []
    # a frame: a staged directory, its merged children, the finished entries
    # of those children by name (a subdirectory's filled in when it is written)
    root = _Frame(area.root, lower_of(area.root, head_root), store,
                  tracked=not force and area.root.lower == FOLLOW)
    root.settle(entries, conflicts)
    stack = [root]
    while stack:
        frame = stack[-1]
        pending = frame.next_subdir()
        if pending is not None:
            name, node, under = pending
            adopt = name in frame.adopt
            sub = _Frame(node, under if adopt else lower_of(node, under), store, frame, name,
                         tracked=frame.tracked and (adopt or node.lower == FOLLOW))
            sub.settle(entries, conflicts)
            stack.append(sub)
            continue
        stack.pop()
        if conflicts:
            continue   # nothing of it is written
        listing = [dict(frame.done[name], name=name) if isinstance(x, DirNode)
                   else _named(entries[x.id], name) if isinstance(x, Node) else x
                   for name, (x, _) in frame.merged.items()]
        entry = dict(frame.node.entry_meta(), tree=session.put_tree(listing), **dir_counts(listing))
        if frame.parent is None:
            return relink(store, session, entry, area.links, entries) if area.links else entry
        frame.parent.done[frame.name] = entry
    raise PathConflict(area.where, conflicts)


def _named(entry: dict, name: str) -> dict:
    """A staged file's entry under ``name``.  A node staged under one name
    has its entry named in place (a commit of many small files holds one
    dict per file, not two: the listing's and the tree cache's are the
    entries' own; a retry on a newer head names it the same again); a
    hard-linked one, staged under several names, gets a copy per name."""
    if "link" in entry:
        return dict(entry, name=name)
    entry["name"] = name
    return entry


def relink(store: Store, session: WriteSession, root: dict, groups: dict[str, Node],
           entries: Entries) -> dict:
    """Every name of a staged hard-link group in the tree under ``root``
    takes the group's staged entry: a write through one name, a chmod or a
    link count that fell to one reaches the names the staging never touched
    (the link walker reads only the directories holding hard links)."""
    editor: TreeEditor | None = None
    for path, old in link_names(store, root, set(groups)):
        new = entries[groups[old["link"]].id]
        if dict(new, name=old["name"]) != old:
            editor = editor or TreeEditor(store, root["tree"])
            editor.put(path, new)
    if editor is None:
        return root
    out = editor.write(session)
    kept = {k: v for k, v in root.items() if k not in ("tree", "size", "files", "dirs", "links")}
    return dict(kept, **{k: v for k, v in out.items() if k in ("tree", "size", "files", "dirs", "links")})


class _Frame:
    """One staged directory on :func:`build_tree`'s stack: its children
    (staged ones over those of ``lower``, the committed directory beneath
    it, each with the entry ``lower`` has under that name).  A frame is
    ``tracked`` when ``lower`` is the head's directory at its path: its
    changed names are then settled against the head."""

    __slots__ = ("node", "lower", "merged", "parent", "name", "path", "tracked", "done",
                 "adopt", "_subdirs")

    def __init__(self, node: DirNode, lower: dict | None, store: Store, parent: "_Frame | None" = None,
                 name: str = "", tracked: bool = False) -> None:
        self.node, self.parent, self.name, self.tracked = node, parent, name, tracked
        self.path: str = f"{parent.path}/{name}" if parent is not None else ""
        self.lower = listing(store, lower)
        self.merged = {n: (x, self.lower.get(n)) for n, x in node.overlay(self.lower).items()}
        self.done: dict[str, dict] = {}
        self.adopt: set[str] = set()    # made directories laid over the head's
        self._subdirs: Iterator[tuple[str, DirNode, dict | None]] = iter(())

    def settle(self, entries: Entries, conflicts: list[str]) -> None:
        """Settle the changed names against the head (tracked frames only)."""
        if self.tracked:
            for name, staged in self.node.delta.items():
                head = self.lower.get(name)
                how = settle(self.node, name, staged, None if staged is None or isinstance(
                    staged, DirNode) else entries.get(staged.id), head)
                if how is None:
                    conflicts.append(f"{self.path}/{name}")
                elif how == HEAD:
                    if head is None:
                        self.merged.pop(name, None)
                    else:
                        self.merged[name] = (head, head)
                elif how == ADOPT:
                    self.adopt.add(name)
        self._subdirs = iter([(n, x, under) for n, (x, under) in self.merged.items()
                              if isinstance(x, DirNode)])

    def next_subdir(self) -> "tuple[str, DirNode, dict | None] | None":
        return next(self._subdirs, None)
