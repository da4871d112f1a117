"""One branch's staging area: the staged nodes in memory, every change
journaled in batches; file data goes to the data files (``datafiles``).

All methods run on the daemon's event loop thread (they never block for
long: a journal batch, a pwrite into the page cache).  Commits freeze the
area: a mutation that arrives while a commit runs waits for it and lands in
the next commit.  File bytes count against the writer's staging quota
(``quota``): a write or a truncate that would go beyond it changes nothing.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from typing import TypeVar

import trio

from .conflicts import entry_sig
from .datafiles import DataFiles
from .journal import Batch, IdSet, Journal, area_prefix
from ..store.objects import new_link_id
from .nodes import (DIR, FILE, FOLLOW, SPECIAL, DirNode, FileNode, LinkNode, Node, SpecialNode, node_from_entry,
                    node_from_record, now_ns)
from .quota import StagingQuota

log = logging.getLogger(__name__)

N = TypeVar("N", bound=Node)

GROUP_COMMIT_S = 0.05
PAGED_ENTRIES = 50_000   # staged entries kept paged in per area (``paging``)


class StagingArea:
    def __init__(self, repo: str, branch: str, journal: Journal, datafiles: DataFiles,
                 quota: StagingQuota | None = None, paged_entries: int = PAGED_ENTRIES) -> None:
        self.repo = repo
        self.branch = branch
        self.journal = journal
        self.datafiles = datafiles
        self.quota = StagingQuota() if quota is None else quota   # shared by every area
        self.prefix = area_prefix(repo, branch)
        self.root: DirNode | None = None
        # hard-link groups with a staged node, by link id: every name of the
        # group shows that node, the committed names too (``shown``)
        self.links: dict[str, Node] = {}
        self.epoch = 0                 # bumped whenever a node may have moved or gone
        self.generation = 0            # bumped at every change (resolution caches key on it)
        self.committing: trio.Event | None = None
        self._busy = 0
        self._idle = trio.Event()
        self._mutation = Mutation(self)    # one for every change: it keeps no state of its own
        self._dirty_files: set[FileNode] = set()
        self._inline_in_memory: list[FileNode] = []   # closed, their bytes still in ``_pending``
        self._pending: Batch | None = None
        self._last_write = 0.0
        # paging (docs/staging.md, "Paging"): one object per node id while
        # anything holds it; the directories whose entries are in memory, in
        # the order they came in; what the batch not yet journaled changed
        self.nodes: weakref.WeakValueDictionary[int, Node] = weakref.WeakValueDictionary()
        self.paged_entries = paged_entries
        self._paged: OrderedDict[int, DirNode] = OrderedDict()
        self._paged_count = 0          # entries of the directories in ``_paged``
        self._paging = threading.RLock()   # status and commits page in from worker threads
        self._pending_dirs: set[DirNode] = set()
        self._pending_nodes: list[Node] = []
        self.all_in_memory = True      # no staged node only in the journal (``read_all``)

    @property
    def where(self) -> str:
        return f"{self.repo}@{self.branch}"

    # -- loading ---------------------------------------------------------------

    def load(self, head_tree: "Callable[[], str | None] | None" = None) -> None:
        """Read the journal; ``head_tree()`` tells the branch head's root tree,
        to finish a commit that was cut short after it moved the branch.
        Only the root and the hard-link groups stay in memory; the records
        are read one at a time (to count the quota), so a start costs the
        same memory for ten staged files or a million."""
        mark = self.journal.commit_mark(self.repo, self.branch)
        if mark is not None:
            if head_tree is not None and head_tree() == mark:
                log.info("the last commit of %s landed before the daemon stopped; "
                         "dropping its staging", self.where)
                self.journal.clear_area(self.repo, self.branch)
                return
            self.journal.clear_mark(self.repo, self.branch)
        ids, kept = IdSet(0), IdSet(0)
        count = 0
        for nid, rec in self.journal.records(self.repo, self.branch):
            node = _from_record(rec)
            ids.add(nid)
            count += 1
            self.all_in_memory = False
            if rec.get("root") and isinstance(node, DirNode) and self.root is None:
                self.root = self._register(node)
                kept.add(nid)
            elif node.link is not None and node.nlink > 0:
                self.links[node.link] = self._register(node)
                kept.add(nid)
            if isinstance(node, FileNode):
                self.quota.count(node)
        batch = Batch(self.prefix)
        for dir_id, name, child, _base in self.journal.entries(self.repo, self.branch):
            if dir_id not in ids or (child is not None and child not in ids):
                batch.drop_entry(dir_id, name)   # half of a change an older version left
            elif child is not None:
                kept.add(child)
        stray = [nid for nid in self.journal.record_ids(self.repo, self.branch) if nid not in kept]
        for nid in stray:   # unlinked while open when the daemon stopped
            batch.drop_node(nid)
            gone = self.node(nid)
            if isinstance(gone, FileNode):
                self.quota.release(gone)
            self.datafiles.remove(nid)
        self.journal.write(batch)
        log.info("staging of %s: %d staged nodes", self.where, count - len(stray))

    def walk(self) -> Iterator[Node]:
        """Every staged node once: the tree's, and the hard-link groups'
        (a group may have no staged name: only committed ones)."""
        stack: list[Node] = list(self.links.values())
        if self.root is not None:
            stack.append(self.root)
        seen: set[int] = set()
        while stack:
            node = stack.pop()
            if node.link is not None:
                if node.id in seen:
                    continue
                seen.add(node.id)
            yield node
            if isinstance(node, DirNode):
                stack.extend(c for c in node.delta.values() if c is not None)

    # -- paging ------------------------------------------------------------------

    def _register(self, node: N) -> N:
        """The one object of this node id from now on (``nodes``)."""
        self.nodes[node.id] = node
        if isinstance(node, DirNode):
            node.pager = self
            if node.paged_delta is not None:
                with self._paging:
                    self._paged[node.id] = node
                    self._paged_count += len(node.paged_delta)
        return node

    def _load_node(self, nid: int) -> Node | None:
        """The node ``nid`` as the journal has it (None if it has none)."""
        rec = self.journal.record(self.repo, self.branch, nid)
        return self._register(_from_record(rec)) if rec is not None else None

    def node(self, nid: int) -> Node | None:
        """The node ``nid``: its object if one is alive, else read from the journal."""
        return self.nodes.get(nid) or self._load_node(nid)

    def page_in(self, d: DirNode) -> None:
        """Read a paged-out directory's entries back from the journal (every
        change to them is there: a directory whose change waits in the batch
        is never paged out, and neither is a node the batch names)."""
        with self._paging:
            if d.paged_delta is not None:
                return
            delta: dict[str, Node | None] = {}
            bases: dict[str, str] = {}
            for _dir, name, child, base in self.journal.entries(self.repo, self.branch, d.id):
                if child is not None:
                    node = self.node(child)
                    if node is None:
                        log.warning("staging of %s: entry %r of directory %d names node %d, "
                                    "which the journal lacks; left out", self.where, name, d.id, child)
                        continue
                    delta[name] = node
                else:
                    delta[name] = None
                if base is not None:
                    bases[name] = base
            d.paged_delta, d.paged_bases = delta, bases
            self._paged[d.id] = d
            self._paged_count += len(delta)
            self.trim(keep=d)

    def trim(self, keep: DirNode | None = None) -> None:
        """Page directories out, oldest first, while more than
        ``paged_entries`` entries are in memory (to three quarters of it).
        Not the root, nor one asked for since the last look (it gets a
        second chance), nor one with a change still waiting for the journal."""
        if self._paged_count <= self.paged_entries:
            return
        with self._paging:
            goal = self.paged_entries * 3 // 4
            looks = len(self._paged)
            while self._paged_count > goal and looks > 0:
                looks -= 1
                nid, d = self._paged.popitem(last=False)
                if d.paged_delta is None:
                    continue
                if d is keep or d is self.root or d.used or d in self._pending_dirs:
                    d.used = False
                    self._paged[nid] = d
                    continue
                self._paged_count -= len(d.paged_delta)
                d.paged_delta = d.paged_bases = None
                self.all_in_memory = False

    def read_all(self) -> Iterator[Node]:
        """Every staged node, for a look at the whole area (what a commit
        will read, what gc must keep) from the event loop: the tree's own
        objects when it holds them all, else each node as the journal has
        it (what waits is written first), without paging the tree in."""
        if self.all_in_memory:
            yield from self.walk()
            return
        self.flush_files()
        for _nid, rec in self.journal.records(self.repo, self.branch):
            yield _from_record(rec)

    def paging_stats(self) -> dict[str, int]:
        """Staged directories and entries in memory, against the limit."""
        return {"dirs": len(self._paged), "entries": self._paged_count, "limit": self.paged_entries,
                "nodes": len(self.nodes)}

    def shown(self, entry: dict) -> "Node | dict":
        """What a committed entry shows in the branch view: its hard-link
        group's staged node, if the group has one."""
        link = entry.get("link")
        if link is not None and self.links:
            return self.links.get(link, entry)
        return entry

    # -- commit freeze -----------------------------------------------------------

    def mutation(self) -> "Mutation":
        """Around every change: waits while a commit runs."""
        return self._mutation

    async def freeze(self) -> None:
        """Stop new mutations and wait for those under way."""
        while self.committing is not None:
            await self.committing.wait()
        self.committing = trio.Event()
        while self._busy:
            self._idle = trio.Event()
            await self._idle.wait()
        self.flush_files()

    @asynccontextmanager
    async def frozen(self) -> AsyncIterator["StagingArea"]:
        """The area with no mutation under way and none starting (a commit)."""
        await self.freeze()
        try:
            yield self
        finally:
            self.thaw()

    def thaw(self) -> None:
        event, self.committing = self.committing, None
        if event is not None:
            event.set()

    # -- journal -----------------------------------------------------------------

    def _batch(self) -> Batch:
        """The batch of changes not yet in the journal (one per area).  Every
        change goes through here, so it also moves ``generation``."""
        self.generation += 1
        if self._pending is None:
            self._pending = Batch(self.prefix)
        return self._pending

    def _write(self, sync: bool = False) -> None:
        """Changes reach the journal in batches: at once when ``sync`` (fsync)
        or when the last write is older than GROUP_COMMIT_S, else by the
        manager's flusher within that time.  One RocksDB write per burst
        instead of one per FUSE call."""
        now = time.monotonic()
        if sync or now - self._last_write > GROUP_COMMIT_S:
            self.write_pending(sync)

    @property
    def has_pending(self) -> bool:
        return self._pending is not None

    def write_pending(self, sync: bool = False) -> None:
        batch, self._pending = self._pending, None
        self._last_write = time.monotonic()
        if batch is not None:
            self.journal.write(batch, sync)
        elif sync:
            self.journal.sync()
        self._pending_dirs.clear()
        self._pending_nodes.clear()
        self._drop_inline()
        self.trim()

    def _drop_inline(self) -> None:
        """Closed small files' inline bytes leave memory once the journal has them."""
        for node in self._inline_in_memory:
            if node.opens == 0 and not node.data_dirty and node.inline:
                node.data = None
        self._inline_in_memory.clear()

    def ensure_root(self, entry: dict | None) -> DirNode:
        """The staged root directory, made (over ``entry``, the head's root) on first use."""
        if self.root is None:
            batch = self._batch()
            nid = self.journal.new_id(batch)
            if entry is not None:
                root = node_from_entry(nid, dict(entry, type="dir"))
                assert isinstance(root, DirNode)
            else:
                t = now_ns()
                root = DirNode(nid, "dir", 0o755, mtime=t, ctime=t, lower=FOLLOW)
            self.root = root
            self._register(root)
            self._put_node(batch, root)
            self._write()
            return root
        return self.root

    def _record(self, node: Node) -> dict:
        rec = node.record()
        if node is self.root:
            rec["root"] = True
        return rec

    def _put_node(self, batch: Batch, node: Node) -> None:
        """A node's record into ``batch``, with a small file's inline bytes
        when they changed (so no record names bytes the journal lacks)."""
        batch.node(self._record(node))
        self._pending_nodes.append(node)   # alive until the batch is in the journal
        if isinstance(node, FileNode) and node.data_dirty and node.inline and node.data is not None:
            batch.data(node.id, bytes(node.data))
            node.data_dirty = False

    def save(self, node: Node, sync: bool = False) -> None:
        """Journal a node's metadata (and a file's extents and size).  A node
        out of the tree (unlinked but still open) has nothing to journal."""
        self._dirty_files.discard(node)
        if node.linked:
            self._put_node(self._batch(), node)
        self._write(sync)

    def mark_dirty(self, node: FileNode) -> None:
        """A file's record changed; journal it with its extents later."""
        if node.linked:
            self._dirty_files.add(node)

    def save_if_dirty(self, node: FileNode) -> None:
        if node in self._dirty_files:
            self.save(node)

    def flush_files(self, sync: bool = False) -> None:
        """Journal the extents of every file written since its last save,
        and every change still waiting for the journal."""
        if self._dirty_files:
            batch = self._batch()
            for node in self._dirty_files:
                self._put_node(batch, node)
            self._dirty_files.clear()
        self.write_pending(sync)

    # -- namespace changes ---------------------------------------------------------

    def copy_up(self, parent: DirNode, name: str, entry: dict, nlink: int = 1) -> Node:
        """Stage a committed entry (by reference: no data is copied).  A
        hard-linked one (``nlink`` names in the head) stages its group: every
        name of it shows the one staged node."""
        node = self.group(entry, nlink) if "link" in entry else None
        batch = self._batch()
        if node is None:
            node = self._register(node_from_entry(self.journal.new_id(batch), entry))
            self._put_node(batch, node)
        self._place(parent, name, node, self._base(parent, name, entry), batch)
        self._write()
        return node

    def group(self, entry: dict, nlink: int) -> Node:
        """The staged node of a committed hard-linked entry's group, staged
        (not placed at any name: each committed name shows it) if it has none."""
        link = entry["link"]
        node = self.links.get(link)
        if node is None:
            batch = self._batch()
            node = self._register(node_from_entry(self.journal.new_id(batch), entry, nlink))
            self.links[link] = node
            self._put_node(batch, node)
            self._write()
        return node

    def add_name(self, parent: DirNode, name: str, node: Node) -> None:
        """link(2): ``node`` (staged, not a directory) gets one more name."""
        batch = self._batch()
        if node.link is None:
            node.link = new_link_id()
            self.links[node.link] = node
        node.nlink += 1
        node.ctime = now_ns()
        self._put_node(batch, node)
        self._place(parent, name, node, self._base(parent, name, None), batch)
        self._touch_dir(parent, batch)
        self._write()

    @staticmethod
    def _base(parent: DirNode, name: str, lower: dict | None) -> str | None:
        """The base of parent/name about to change (``conflicts``): the one
        remembered when it first changed, else ``lower``'s, what it shows now."""
        if name in parent.delta:
            return parent.bases.get(name)
        return entry_sig(lower)

    def _place(self, parent: DirNode, name: str, node: Node | None, base: str | None,
               batch: Batch) -> None:
        """parent/name becomes ``node`` (None: a whiteout), with its base."""
        self._pending_dirs.add(parent)   # first: not paged out until the batch is written
        batch.entry(parent.id, name, None if node is None else node.id, base)
        delta = parent.delta
        if name not in delta:
            self._paged_count += 1
        delta[name] = node
        if base is None:
            parent.bases.pop(name, None)
        else:
            parent.bases[name] = base

    def pin(self, parent: DirNode, name: str, node: DirNode, lower: dict | None) -> None:
        """A staged directory about to move stops following the head: it keeps
        ``lower`` (the committed directory it shows), which becomes its base."""
        node.lower = lower if lower is not None and lower.get("type") == DIR else None
        node.followed = None
        batch = self._batch()
        self._put_node(batch, node)
        self._place(parent, name, node, entry_sig(lower), batch)
        self._write()

    def new_node(self, kind: str, mode: int, uid: int, gid: int, target: str = "", rdev: int = 0) -> Node:
        """A fresh node, not in the tree yet (see :meth:`link`)."""
        t = now_ns()
        batch = self._batch()
        nid = self.journal.new_id(batch)
        mode &= 0o7777
        node: Node
        if kind == "dir":
            node = DirNode(nid, kind, mode, uid, gid, mtime=t, ctime=t, lower=None)
        elif kind == "symlink":
            node = LinkNode(nid, kind, mode, uid, gid, mtime=t, ctime=t, target=target)
        elif kind in SPECIAL:
            node = SpecialNode(nid, kind, mode, uid, gid, mtime=t, ctime=t, rdev=rdev)
        else:
            node = FileNode(nid, kind, mode, uid, gid, mtime=t, ctime=t)
        self._register(node)
        self._pending_nodes.append(node)   # not in the journal until placed
        self._write()  # the id counter, when it moved
        return node

    def link(self, parent: DirNode, name: str, node: Node) -> None:
        """Place a node made by :meth:`new_node` (or unlinked) at parent/name."""
        batch = self._batch()
        replaced = parent.delta.get(name)
        self._put_node(batch, node)
        self._place(parent, name, node, self._base(parent, name, None), batch)
        self._touch_dir(parent, batch)
        if replaced is not None and replaced is not node:
            self._forget(replaced, batch)
        self._write()

    def unlink(self, parent: DirNode, name: str, lower: dict | None) -> Node | None:
        """Remove parent/name (a whiteout when ``lower``, the lower directory's
        entry there, exists)."""
        node = self._node_at(parent, name, lower)
        batch = self._batch()
        self._vacate(parent, name, lower, batch)
        if node is not None:
            self._forget(node, batch)
        self._touch_dir(parent, batch)
        self._write()
        self.epoch += 1
        return node

    def move(self, sparent: DirNode, sname: str, slower: dict | None,
             dparent: DirNode, dname: str, node: Node, dlower: dict | None) -> Node | None:
        """rename(2) of a staged node; returns the node it replaced.
        ``slower`` and ``dlower`` are the lower directories' entries at
        the source and the target."""
        batch = self._batch()
        replaced = self._node_at(dparent, dname, dlower)
        dbase = self._base(dparent, dname, dlower)
        self._vacate(sparent, sname, slower, batch)
        self._place(dparent, dname, node, dbase, batch)
        if replaced is not None and replaced is not node:
            self._forget(replaced, batch)
        node.ctime = now_ns()
        self._put_node(batch, node)
        self._touch_dir(sparent, batch)
        if dparent is not sparent:
            self._touch_dir(dparent, batch)
        self._write()
        self.epoch += 1
        return replaced

    def _vacate(self, parent: DirNode, name: str, lower: dict | None, batch: Batch) -> None:
        """Nothing at parent/name any more: a whiteout over the lower entry, if any."""
        if lower is not None:
            self._place(parent, name, None, self._base(parent, name, lower), batch)
        else:
            self._unplace(parent, name, batch)

    def _unplace(self, parent: DirNode, name: str, batch: Batch) -> Node | None:
        """parent/name is no longer staged (not even a whiteout); returns
        what it held."""
        self._pending_dirs.add(parent)   # first, as in ``_place``
        batch.drop_entry(parent.id, name)
        delta = parent.delta
        if name in delta:
            self._paged_count -= 1
        parent.bases.pop(name, None)
        return delta.pop(name, None)

    def exchange(self, aparent: DirNode, aname: str, anode: Node,
                 bparent: DirNode, bname: str, bnode: Node) -> None:
        batch = self._batch()
        abase, bbase = aparent.bases.get(aname), bparent.bases.get(bname)  # both staged already
        self._place(aparent, aname, bnode, abase, batch)
        self._place(bparent, bname, anode, bbase, batch)
        t = now_ns()
        for n in (anode, bnode):
            n.ctime = t
            self._put_node(batch, n)
        self._touch_dir(aparent, batch)
        if bparent is not aparent:
            self._touch_dir(bparent, batch)
        self._write()
        self.epoch += 1

    def _touch_dir(self, d: DirNode, batch: Batch) -> None:
        d.mtime = d.ctime = now_ns()
        self._put_node(batch, d)

    def _node_at(self, parent: DirNode, name: str, lower: dict | None) -> Node | None:
        """The staged node parent/name shows: its own, or (for a committed
        name, ``lower``) its hard-link group's; None for a committed entry."""
        if name in parent.delta:
            return parent.delta[name]
        shown = self.shown(lower) if lower is not None else None
        return shown if isinstance(shown, Node) else None

    def _forget(self, node: Node, batch: Batch) -> None:
        """One name of a node left the tree: drop the node (and what is below
        it) from the journal, unless it has other hard-link names."""
        stack = [node]
        while stack:
            n = stack.pop()
            if n.link is not None:
                n.nlink -= 1
                n.ctime = now_ns()
                if n.nlink > 0:
                    self._put_node(batch, n)
                    continue
                self.links.pop(n.link, None)
            n.linked = False
            batch.drop_node(n.id)
            if isinstance(n, DirNode):
                below = list(n.delta.items())
                with self._paging:
                    if self._paged.pop(n.id, None) is not None:
                        self._paged_count -= len(below)
                for name, child in below:
                    batch.drop_entry(n.id, name)
                    if child is not None:
                        stack.append(child)
            elif isinstance(n, FileNode):
                self._dirty_files.discard(n)
                if n.inline and n.opens:
                    self.datafiles.buffer(n)   # its journal copy goes; its handles keep reading it
                if n.opens == 0:   # else its bytes count until it is closed
                    self.datafiles.release(n)
                    self.quota.release(n)

    # -- file data (the bytes go to ``datafiles``, the ranges to the node) --------

    def data_fd(self, node: FileNode) -> int:
        """The node's data file, opened on first use."""
        return self.datafiles.fd(node)

    def release_data(self, node: FileNode) -> None:
        """Close a file node's data file; remove it once the node is gone."""
        self.datafiles.release(node)
        if not node.linked:
            self.quota.release(node)
        elif node.data is not None:
            self._inline_in_memory.append(node)
            if self._pending is None:
                self._drop_inline()

    def write(self, node: FileNode, off: int, data: bytes, uid: int = 0) -> int:
        """pwrite(2) of ``data`` into a staged file, on behalf of ``uid``
        (QuotaExceeded, and nothing written, beyond its quota)."""
        self.quota.charge(node, uid, node.write_cost(off, off + len(data)), self.where)
        try:
            n = self.datafiles.write(node, off, data)
        except BaseException:
            self.quota.settle(node, uid)   # charged, not written
            raise
        if n:
            node.add_extent(off, off + n)
            if off + n > node.size:
                node.size = off + n
            node.mtime = node.ctime = now_ns()
            self.mark_dirty(node)
        if n < len(data):
            self.quota.settle(node, uid)
        return n

    def truncate(self, node: FileNode, size: int, uid: int = 0) -> None:
        """Set a staged file's size on behalf of ``uid``: growing it counts
        against its quota (QuotaExceeded, nothing changed, beyond it)."""
        self.quota.charge(node, uid, size - node.size, self.where)
        if size < node.size and (node.fd is not None or node.extents):
            self.datafiles.shrink(node, size)
        node.truncate(size)
        self.quota.settle(node, uid)
        node.mtime = node.ctime = now_ns()
        self.save(node)

    def fsync(self, node: FileNode, datasync: bool = False) -> None:
        """fsync(2): the data file (whichever handle wrote it), then the journal."""
        self.datafiles.fsync(node, datasync)
        self.save(node, sync=True)

    def read_data(self, node: FileNode, off: int, n: int, fd: int | None = None) -> bytes:
        """Bytes of the data file (holes and the part past its end read as zeros)."""
        return self.datafiles.read(node, off, n, fd)

    def open_data(self, node: FileNode) -> int | None:
        """A descriptor of its own on a node's data file (for a commit's
        worker thread: the node's own descriptor belongs to the event loop)."""
        return self.datafiles.open_reader(node)

    # -- after a commit or a discard ----------------------------------------------------

    def drop_all(self) -> None:
        """Forget everything staged (after a commit or a full discard).  The
        nodes nothing holds are settled from their journal records, one at
        a time; the ones still held (open files, the mount's inodes) leave
        the tree and keep what they show."""
        self.flush_files()
        if self.all_in_memory:
            live = {node.id: node for node in self.walk()}
        else:
            live = dict(self.nodes.items())
            for nid, rec in self.journal.records(self.repo, self.branch):
                if nid not in live and rec.get("kind") == FILE:
                    settled = _from_record(rec)
                    assert isinstance(settled, FileNode)
                    self.quota.release(settled)   # committed or discarded: no longer staged
                    if not settled.inline:
                        self.datafiles.remove(nid)
        for node in live.values():
            if not node.linked:
                continue
            node.linked = False
            if isinstance(node, FileNode):
                self.quota.release(node)
                if node.opens == 0:
                    self.datafiles.release(node)
                else:
                    if node.inline:
                        self.datafiles.buffer(node)   # the journal's copy goes
                    self.datafiles.remove(node.id)  # the open fd keeps it readable
        self._dirty_files.clear()
        self._pending = None
        self.journal.clear_area(self.repo, self.branch)
        self.generation += 1
        self.root = None
        self.links = {}
        with self._paging:
            self._paged.clear()
            self._paged_count = 0
        self.nodes = weakref.WeakValueDictionary()
        self.all_in_memory = True
        self.epoch += 1

    def forget_entry(self, parent: DirNode, name: str) -> None:
        """Drop the staged entry parent/name: the committed one shows again."""
        parent.dirs_version += 1
        batch = self._batch()
        node = self._unplace(parent, name, batch)
        if node is not None:
            self._forget(node, batch)
        self._write()
        self.epoch += 1


def _from_record(rec: dict) -> Node:
    """A node as its journal record has it; a file journaled before quotas
    were counted is charged to its owner."""
    node = node_from_record(rec)
    if isinstance(node, FileNode) and not node.charges and node.quota_bytes() > 0:
        node.charges[node.uid or 0] = node.quota_bytes()
    return node


class Mutation:
    """``async with area.mutation()``: one change of the staging area, which
    waits while a commit runs and holds a commit off while under way.  A
    class rather than an ``asynccontextmanager``: it runs around most FUSE
    requests of a branch view (six for each small file a ``tar x`` writes),
    and the async generator cost about 5 µs each time."""

    __slots__ = ("area",)

    def __init__(self, area: StagingArea) -> None:
        self.area = area

    async def __aenter__(self) -> None:
        area = self.area
        while area.committing is not None:
            await area.committing.wait()
        area._busy += 1

    async def __aexit__(self, *exc_info: object) -> None:
        area = self.area
        area._busy -= 1
        if area._busy == 0:
            area._idle.set()
