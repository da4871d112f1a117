"""The staged objects of a branch: directories, files and symlinks that differ
from the branch head, and what each of them records in the journal.

A staged directory is a *delta* over a lower directory: ``delta`` maps a name
to a staged node, or to ``None`` (a whiteout: the lower entry is gone).  Its
lower directory is either the same path in the parent's lower directory
(``FOLLOW``: it tracks the branch head, so ``trunkfs put`` shows through), a
pinned tree (a directory that was renamed), or nothing (made by mkdir).

A staged file is a sparse data file plus the byte ranges written into it
(``extents``); every other byte below ``base_limit`` comes from the base
version's chunks, and everything else reads as zeros.  Writing 4 KiB into a
1 GiB committed file stores 4 KiB.
"""

from __future__ import annotations

import bisect
import time
from dataclasses import dataclass, field
from typing import Protocol

FOLLOW = "follow"

FILE, DIR, SYMLINK = "file", "dir", "symlink"
SPECIAL = ("fifo", "socket", "char", "block")   # metadata only (``SpecialNode``)


def now_ns() -> int:
    return time.time_ns()


@dataclass(eq=False, slots=True, weakref_slot=True)
class Node:
    id: int
    kind: str
    mode: int
    uid: int | None = None
    gid: int | None = None
    mtime: int = 0
    ctime: int = 0
    xattrs: dict[str, bytes] = field(default_factory=dict)
    atime: int = 0          # kept while staged; a commit records mtime only
    linked: bool = True     # False once out of the tree (unlinked, replaced, committed)
    link: str | None = None  # hard-link group id (not a directory): every name shares the node
    nlink: int = 1          # names in the branch view (staged and committed ones)

    def meta_record(self) -> dict:
        rec = {"id": self.id, "kind": self.kind, "mode": self.mode, "mtime": self.mtime,
               "ctime": self.ctime, "atime": self.atime}
        if self.link is not None:
            rec["link"], rec["nlink"] = self.link, self.nlink
        if self.uid is not None:
            rec["uid"] = self.uid
        if self.gid is not None:
            rec["gid"] = self.gid
        if self.xattrs:
            rec["xattrs"] = {k: v.hex() for k, v in self.xattrs.items()}
        return rec

    def record(self) -> dict:
        return self.meta_record()

    def entry_meta(self) -> dict:
        """The fields of this node's tree entry other than content."""
        out: dict = {"type": self.kind, "mode": self.mode & 0o7777, "mtime": self.mtime}
        if self.uid is not None:
            out["uid"] = self.uid
        if self.gid is not None:
            out["gid"] = self.gid
        if self.xattrs:
            out["xattrs"] = {k: v.hex() for k, v in sorted(self.xattrs.items())}
        if self.link is not None and self.nlink > 1:
            out["link"] = self.link
        return out


class Pager(Protocol):
    def page_in(self, node: "DirNode") -> None: ...


@dataclass(eq=False, slots=True)
class DirNode(Node):
    """``delta`` and ``bases`` are paged: a directory read back from the
    journal has them only once something asks (``pager.page_in``), and the
    area pages a directory nobody changed lately out again (``paging``)."""
    lower: object = FOLLOW          # FOLLOW, a pinned dir entry (dict), or None
    paged_delta: "dict[str, Node | None] | None" = field(default_factory=dict)   # None: paged out
    paged_bases: dict[str, str] | None = field(default_factory=dict)   # name -> the lower entry's
                                    # signature when the name was first changed (``conflicts``)
    pager: Pager | None = None      # who pages them in (the area)
    used: bool = False              # asked for since the area last looked (``paging``)
    followed: tuple | None = None   # (head commit, lower entry) last resolved for FOLLOW
    dirs_version: int = 0           # bumped when a subdirectory comes or goes (st_nlink)
    nlink_cache: tuple | None = None

    @property
    def delta(self) -> "dict[str, Node | None]":
        """name -> staged node, or None for a whiteout (paged in on demand)."""
        d = self.paged_delta
        if d is None:
            assert self.pager is not None, "a paged-out directory without a pager"
            self.pager.page_in(self)
            d = self.paged_delta
            assert d is not None
        self.used = True
        return d

    @property
    def bases(self) -> dict[str, str]:
        b = self.paged_bases
        if b is None:
            _ = self.delta   # pages both in
            b = self.paged_bases
            assert b is not None
        return b

    def record(self) -> dict:
        rec = self.meta_record()
        rec["lower"] = self.lower
        return rec

    def overlay(self, lower: dict[str, dict]) -> dict[str, "Node | dict"]:
        """This directory's entries: the lower listing with the delta over it."""
        merged: dict[str, Node | dict] = dict(lower)
        for name, child in self.delta.items():
            if child is None:
                merged.pop(name, None)
            else:
                merged[name] = child
        return merged


@dataclass(eq=False, slots=True)
class LinkNode(Node):
    target: str = ""

    def record(self) -> dict:
        rec = self.meta_record()
        rec["target"] = self.target
        return rec


@dataclass(eq=False, slots=True)
class SpecialNode(Node):
    """A FIFO, socket or device: metadata only (the kernel answers its opens;
    the mount is ``nodev``, so a device node never opens a device)."""
    rdev: int = 0

    def record(self) -> dict:
        rec = self.meta_record()
        rec["rdev"] = self.rdev
        return rec

    def entry_meta(self) -> dict:
        out = Node.entry_meta(self)   # (slots: the zero-argument super() does not work)
        if self.kind in ("char", "block"):
            out["rdev"] = self.rdev
        return out


@dataclass(eq=False, slots=True)
class FileNode(Node):
    base_chunks: list = field(default_factory=list)   # [[chunk id hex, length], ...]
    base_limit: int = 0     # bytes below this not in an extent come from the base
    size: int = 0
    extents: list[list[int]] = field(default_factory=list)  # sorted, disjoint [start, end)
    fd: int | None = None   # the open data file, when it has one
    opens: int = 0          # open handles on this node
    charges: dict[int, int] = field(default_factory=dict)   # uid -> bytes it paid (``quota``)
    inline: bool = False    # its written bytes live in the journal, not a data file (``datafiles``)
    data: bytearray | None = None   # those bytes in memory (while it is in use)
    data_dirty: bool = False        # ``data`` changed since it was journaled

    @property
    def base_size(self) -> int:
        return sum(c[1] for c in self.base_chunks)

    def record(self) -> dict:
        rec = self.meta_record()
        rec.update(base=self.base_chunks, limit=self.base_limit, size=self.size, ext=self.extents)
        if self.inline:
            rec["il"] = 1
        if self.charges:
            rec["q"] = {str(uid): n for uid, n in self.charges.items()}
        return rec

    def quota_bytes(self) -> int:
        """What this file costs against a staging quota: every byte that is
        not its committed base (written, or a hole a truncate grew)."""
        return self.size - self.base_limit + self._written_below(0, self.base_limit)

    def write_cost(self, off: int, end: int) -> int:
        """How much :meth:`quota_bytes` grows when [off, end) is written."""
        if end <= off:
            return 0
        grown = max(0, end - self.size)
        top = min(end, self.base_limit)
        if off >= top:
            return grown
        return grown + (top - off) - self._written_below(off, top)

    def _written_below(self, lo: int, hi: int) -> int:
        """Bytes of [lo, hi) in an extent."""
        ext = self.extents
        i = max(0, bisect.bisect_right(ext, [lo, float("inf")]) - 1)
        n = 0
        while i < len(ext) and ext[i][0] < hi:
            s, e = max(ext[i][0], lo), min(ext[i][1], hi)
            if e > s:
                n += e - s
            i += 1
        return n

    def add_extent(self, start: int, end: int) -> None:
        """Mark [start, end) as written (merging with neighbours)."""
        ext = self.extents
        i = bisect.bisect_left(ext, [start, start])
        if i > 0 and ext[i - 1][1] >= start:
            i -= 1
        j = i
        while j < len(ext) and ext[j][0] <= end:
            start = min(start, ext[j][0])
            end = max(end, ext[j][1])
            j += 1
        ext[i:j] = [[start, end]]

    def truncate(self, size: int) -> None:
        if size < self.size:
            self.base_limit = min(self.base_limit, size)
            ext = self.extents
            while ext and ext[-1][0] >= size:
                ext.pop()
            if ext and ext[-1][1] > size:
                ext[-1][1] = size
        self.size = size

    def pieces(self, off: int, end: int) -> list[tuple[str, int, int]]:
        """Where the bytes [off, end) come from: ("data"|"base"|"zero", start, stop)."""
        out: list[tuple[str, int, int]] = []
        ext = self.extents
        i = max(0, bisect.bisect_right(ext, [off, float("inf")]) - 1)
        pos = off
        while pos < end:
            while i < len(ext) and ext[i][1] <= pos:
                i += 1
            if i < len(ext) and ext[i][0] <= pos:
                stop = min(end, ext[i][1])
                out.append(("data", pos, stop))
            else:
                nxt = min(end, ext[i][0]) if i < len(ext) else end
                if pos < self.base_limit:
                    stop = min(nxt, self.base_limit)
                    out.append(("base", pos, stop))
                else:
                    stop = nxt
                    out.append(("zero", pos, stop))
            pos = stop
        return out

    def dirty_ranges(self) -> list[tuple[int, int]]:
        """Ranges that differ from the base (for re-chunking)."""
        ranges = [(s, e) for s, e in self.extents]
        if self.base_limit < min(self.size, self.base_size):
            ranges.append((self.base_limit, min(self.size, self.base_size)))
        return ranges

    @property
    def content_changed(self) -> bool:
        return bool(self.extents) or self.size != self.base_size or self.base_limit < self.base_size


def node_from_record(rec: dict) -> Node:
    xattrs = rec.get("xattrs")
    common = dict(id=rec["id"], kind=rec["kind"], mode=rec["mode"], uid=rec.get("uid"),
                  gid=rec.get("gid"), mtime=rec.get("mtime", 0), ctime=rec.get("ctime", 0),
                  atime=rec.get("atime", 0),
                  xattrs={k: bytes.fromhex(v) for k, v in xattrs.items()} if xattrs else {})
    kind = rec["kind"]
    if kind == DIR:   # its entries are paged in when asked for
        return DirNode(**common, lower=rec.get("lower", FOLLOW), paged_delta=None, paged_bases=None)
    common.update(link=rec.get("link"), nlink=rec.get("nlink", 1))
    if kind == SYMLINK:
        return LinkNode(**common, target=rec.get("target", ""))
    if kind in SPECIAL:
        return SpecialNode(**common, rdev=rec.get("rdev", 0))
    charges = rec.get("q")
    return FileNode(**common, base_chunks=rec.get("base", []), base_limit=rec.get("limit", 0),
                    size=rec.get("size", 0), extents=[list(e) for e in rec.get("ext", ())],
                    charges={int(uid): int(n) for uid, n in charges.items()} if charges else {},
                    inline=bool(rec.get("il")))


def node_from_entry(nid: int, entry: dict, nlink: int = 1) -> Node:
    """A staged copy of a committed entry (copy-up): content by reference;
    ``nlink`` is how many names its hard-link group has (``store.links``)."""
    t = entry.get("mtime") or 0
    common = dict(id=nid, kind=entry["type"], mode=entry.get("mode") or 0, uid=entry.get("uid"),
                  gid=entry.get("gid"), mtime=t, ctime=t, atime=t,
                  xattrs={k: bytes.fromhex(v) for k, v in entry.get("xattrs", {}).items()})
    if entry["type"] == DIR:
        return DirNode(**common, lower=FOLLOW)
    common.update(link=entry.get("link"), nlink=nlink if "link" in entry else 1)
    if entry["type"] == SYMLINK:
        return LinkNode(**common, target=entry.get("target", ""))
    if entry["type"] in SPECIAL:
        return SpecialNode(**common, rdev=entry.get("rdev", 0))
    chunks = [list(c) for c in entry.get("chunks", [])]
    size = int(entry.get("size", 0))
    return FileNode(**common, base_chunks=chunks, base_limit=size, size=size)
