"""Turning a staging area into trees (commit) and into a change list (status).

Runs in a worker thread on a frozen area.  Files are cut again only around
their written ranges (``store.rechunk``); a file with no base is ingested
whole; a file with only new metadata keeps its chunks.  Directories are
written bottom-up over the branch head's trees, so a commit replays the
staged changes on whatever the head is when it lands.
"""

from __future__ import annotations

import bisect
import itertools
import logging
import os
from collections.abc import Callable

from ..store.diff import diff_trees
from ..store.objects import DIR, entry_files, entry_size
from ..store.rechunk import rechunk
from ..store.store import Store
from ..store.walk import listing
from ..store.writer import WriteSession
from .area import StagingArea
from .nodes import DirNode, FileNode, LinkNode, Node
from .overlay import lower_of

log = logging.getLogger(__name__)

READ_BLOCK = 4 * 1024 * 1024


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


def file_reader(area: StagingArea, store: Store, node: FileNode, fd: int | None) -> Callable[[int, int], bytes]:
    base = BaseReader(store, node.base_chunks)

    def read(off: int, n: int) -> bytes:
        out = []
        for kind, s, e in node.pieces(off, min(off + n, node.size)):
            if kind == "data":
                out.append(area.read_data(node, s, e - s, fd) if fd is not None else bytes(e - s))
            elif kind == "base":
                out.append(base.read(s, e))
            else:
                out.append(bytes(e - s))
        return b"".join(out)
    return read


def file_chunks(area: StagingArea, store: Store, session: WriteSession, node: FileNode,
                progress: Callable[[int], None] | None = None) -> list:
    if not node.content_changed:
        return node.base_chunks
    fd = area.open_data(node) if node.extents else None
    try:
        return _file_chunks(area, store, session, node, file_reader(area, store, node, fd), progress)
    finally:
        if fd is not None:
            os.close(fd)


def _file_chunks(area: StagingArea, store: Store, session: WriteSession, node: FileNode,
                 read: Callable[[int, int], bytes], progress: Callable[[int], None] | None) -> list:
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
    for node in area.walk():
        if isinstance(node, FileNode) and node.content_changed:
            total += node.size if node.base_limit == 0 or not node.base_chunks else \
                sum(e - s for s, e in node.dirty_ranges())
    return total


def file_entries(area: StagingArea, store: Store, session: WriteSession,
                 progress: Callable[[int], None] | None = None) -> dict[int, dict]:
    """The tree entry (without name) of every staged file and symlink."""
    out: dict[int, dict] = {}
    for node in area.walk():
        if isinstance(node, FileNode):
            chunks = file_chunks(area, store, session, node, progress)
            out[node.id] = dict(node.entry_meta(), size=node.size, chunks=chunks)
        elif isinstance(node, LinkNode):
            out[node.id] = dict(node.entry_meta(), target=node.target)
    return out


def _listing(store: Store, entry: dict | None) -> dict[str, dict]:
    return listing(store, entry)


def build_tree(area: StagingArea, store: Store, session: WriteSession, head_root: dict | None,
               entries: dict[int, dict]) -> dict:
    """Write the trees of the staged view over ``head_root``; returns the root entry."""
    def build(node: DirNode, followed: dict | None) -> dict:
        lower = _listing(store, lower_of(node, followed))
        listing = [dict(build(x, lower.get(name)), name=name) if isinstance(x, DirNode)
                   else dict(entries[x.id], name=name) if isinstance(x, Node) else x
                   for name, x in node.overlay(lower).items()]
        return dict(node.entry_meta(), tree=session.put_tree(listing),
                    size=sum(entry_size(e) for e in listing),
                    files=sum(entry_files(e) for e in listing),
                    dirs=sum(e["type"] == DIR for e in listing))
    return build(area.root, head_root)


# -- status ----------------------------------------------------------------------------


def _same(node: Node, head: dict) -> bool:
    """Whether a staged file or symlink equals a committed entry."""
    if head.get("type") != node.kind:
        return False
    meta = node.entry_meta()
    for key in ("mode", "uid", "gid", "xattrs"):
        if meta.get(key) != head.get(key) and not (key == "mode" and meta["mode"] == (head.get("mode") or 0)):
            return False
    if isinstance(node, LinkNode):
        return node.target == head.get("target")
    assert isinstance(node, FileNode)
    return not node.content_changed and node.base_chunks == head.get("chunks", []) \
        and meta["mtime"] == head.get("mtime")


def changes(area: StagingArea, store: Store, head_root: dict | None) -> list[tuple[str, str]]:
    """[(A|M|D, path)] of the staged view against the head, sorted by path."""
    out: list[tuple[str, str]] = []

    def every(entry_or_node, path: str, code: str, followed: dict | None = None) -> None:
        if isinstance(entry_or_node, DirNode):
            listing = merged_listing(entry_or_node, followed)
            if not listing:
                out.append((code, path + "/"))
            for name, child in sorted(listing.items()):
                every(child[0], f"{path}/{name}", code, child[1])
        elif isinstance(entry_or_node, dict) and entry_or_node["type"] == DIR:
            listing = _listing(store, entry_or_node)
            if not listing:
                out.append((code, path + "/"))
            for name, e in sorted(listing.items()):
                every(e, f"{path}/{name}", code)
        else:
            out.append((code, path))

    def merged_listing(node: DirNode, followed: dict | None) -> dict[str, tuple]:
        lower = _listing(store, lower_of(node, followed))
        return {name: (x, lower.get(name) if isinstance(x, Node) else None)
                for name, x in node.overlay(lower).items()}

    def compare(node: DirNode, followed: dict | None, head: dict | None, path: str) -> None:
        merged = merged_listing(node, followed)
        heads = _listing(store, head)
        if head is not None and head.get("type") == DIR:
            meta = node.entry_meta()
            if path and (meta["mode"] != (head.get("mode") or 0) or meta.get("uid") != head.get("uid")
                         or meta.get("gid") != head.get("gid")):
                out.append(("M", path + "/"))
        for name in sorted(set(merged) | set(heads)):
            child_path = f"{path}/{name}" if path else name
            h = heads.get(name)
            if name not in merged:
                every(h, child_path, "D")
                continue
            m, followed_child = merged[name]
            if isinstance(m, dict):
                if h == m:
                    continue
                if h is None:
                    every(m, child_path, "A")
                elif m["type"] == DIR and h["type"] == DIR:
                    out.extend(diff_trees(store, h["tree"], m["tree"], child_path))
                else:
                    out.append(("M", child_path))
                continue
            if isinstance(m, DirNode):
                if h is not None and h.get("type") == DIR:
                    compare(m, followed_child, h, child_path)
                else:
                    if h is not None:
                        every(h, child_path, "D")
                    every(m, child_path, "A", followed_child)
            elif h is None:
                out.append(("A", child_path))
            elif h.get("type") == DIR:
                every(h, child_path, "D")
                out.append(("A", child_path))
            elif not _same(m, h):
                out.append(("M", child_path))

    if area.root is not None:
        compare(area.root, head_root, head_root if head_root else None, "")
    return sorted(out, key=lambda c: c[1])
