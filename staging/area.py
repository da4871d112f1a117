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
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager

import trio

from .conflicts import entry_sig
from .datafiles import DataFiles
from .journal import Batch, Journal, area_prefix
from ..store.objects import new_link_id
from .nodes import (DIR, FOLLOW, SPECIAL, DirNode, FileNode, LinkNode, Node, SpecialNode, node_from_entry,
                    node_from_record, now_ns)
from .quota import StagingQuota

log = logging.getLogger(__name__)

GROUP_COMMIT_S = 0.05


class StagingArea:
    def __init__(self, repo: str, branch: str, journal: Journal, datafiles: DataFiles,
                 quota: StagingQuota | None = None) -> None:
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
        self._dirty_files: set[FileNode] = set()
        self._inline_in_memory: list[FileNode] = []   # closed, their bytes still in ``_pending``
        self._pending: Batch | None = None
        self._last_write = 0.0

    @property
    def where(self) -> str:
        return f"{self.repo}@{self.branch}"

    # -- loading ---------------------------------------------------------------

    def load(self, head_tree: "Callable[[], str | None] | None" = None) -> None:
        """Read the journal; ``head_tree()`` tells the branch head's root tree,
        to finish a commit that was cut short after it moved the branch."""
        mark = self.journal.commit_mark(self.repo, self.branch)
        if mark is not None:
            if head_tree is not None and head_tree() == mark:
                log.info("the last commit of %s landed before the daemon stopped; "
                         "dropping its staging", self.where)
                self.journal.clear_area(self.repo, self.branch)
                return
            self.journal.clear_mark(self.repo, self.branch)
        records, entries = self.journal.load(self.repo, self.branch)
        nodes = {nid: node_from_record(rec) for nid, rec in records.items()}
        roots = [nodes[nid] for nid, rec in records.items() if rec.get("root")]
        for dir_id, name, child, base in entries:
            parent = nodes.get(dir_id)
            if isinstance(parent, DirNode) and (child is None or child in nodes):
                parent.delta[name] = nodes[child] if child is not None else None
                if base is not None:
                    parent.bases[name] = base
        self.root = roots[0] if roots and isinstance(roots[0], DirNode) else None
        self.links = {n.link: n for n in nodes.values() if n.link is not None and n.nlink > 0}
        reachable = {n.id for n in self.walk()}
        stray = [nid for nid in nodes if nid not in reachable]
        if stray:  # unlinked while open when the daemon stopped
            batch = Batch(self.prefix)
            for nid in stray:
                batch.drop_node(nid)
                self.datafiles.remove(nid)
            self.journal.write(batch)
        for node in self.walk():
            if isinstance(node, FileNode):
                if not node.charges and node.quota_bytes() > 0:   # journaled before quotas
                    node.charges[node.uid or 0] = node.quota_bytes()
                self.quota.count(node)
        log.info("staging of %s: %d staged nodes", self.where, len(reachable))

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

    def shown(self, entry: dict) -> "Node | dict":
        """What a committed entry shows in the branch view: its hard-link
        group's staged node, if the group has one."""
        link = entry.get("link")
        if link is not None and self.links:
            return self.links.get(link, entry)
        return entry

    # -- commit freeze -----------------------------------------------------------

    @asynccontextmanager
    async def mutation(self) -> AsyncIterator[None]:
        """Around every change: waits while a commit runs."""
        while self.committing is not None:
            await self.committing.wait()
        self._busy += 1
        try:
            yield
        finally:
            self._busy -= 1
            if self._busy == 0:
                self._idle.set()

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
        self._drop_inline()

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
            node = node_from_entry(self.journal.new_id(batch), entry)
            batch.node(node.record())
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
            node = node_from_entry(self.journal.new_id(batch), entry, nlink)
            self.links[link] = node
            batch.node(node.record())
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

    @staticmethod
    def _place(parent: DirNode, name: str, node: Node | None, base: str | None,
               batch: Batch) -> None:
        """parent/name becomes ``node`` (None: a whiteout), with its base."""
        batch.entry(parent.id, name, None if node is None else node.id, base)
        parent.delta[name] = node
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
            batch.drop_entry(parent.id, name)
            parent.delta.pop(name, None)
            parent.bases.pop(name, None)

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
                for name, child in n.delta.items():
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
        """Forget everything staged (after a commit or a full discard)."""
        for node in list(self.walk()):
            node.linked = False
            if isinstance(node, FileNode):
                self.quota.release(node)   # committed or discarded: no longer staged
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
        self.epoch += 1

    def forget_entry(self, parent: DirNode, name: str) -> None:
        """Drop the staged entry parent/name: the committed one shows again."""
        parent.dirs_version += 1
        node = parent.delta.pop(name, None)
        parent.bases.pop(name, None)
        batch = self._batch()
        batch.drop_entry(parent.id, name)
        if node is not None:
            self._forget(node, batch)
        self._write()
        self.epoch += 1
