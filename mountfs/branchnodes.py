"""What an inode of a branch view is now: a staged node or a committed entry.

A branch view shows the branch head with the branch's staged changes over
it.  Every inode of a branch view is a place (parent inode, name) that
resolves either to a staged node (``staging.nodes``) or to a committed
entry.  Once a place has a staged node, the inode is bound to that node, so
it keeps its identity through renames and writes; an unlinked inode (an
orphan) keeps what it had, so open handles go on working.  A committed file
whose path holds other content after the branch moved (a put, a commit
elsewhere) becomes an orphan too: the path gets a new inode at its next
lookup, and the old inode keeps the old content.

Copy-up (:meth:`BranchNodes.upper`) stages only what a change touches: the
directories on its path, as deltas over the committed directories, and a
file's metadata and chunk list by reference.  What a staged directory shows
over the committed one is ``staging.overlay.lower_of``.
"""

from __future__ import annotations

import errno
from collections.abc import Mapping

import pyfuse3

from ..staging.area import StagingArea
from ..staging.nodes import FOLLOW, DirNode, FileNode, Node, node_from_entry
from ..staging.overlay import is_dir_like, lower_of
from ..store.walk import is_dir
from .attrs import attributes
from .inodes import BranchInode, Inode
from .view import ViewParts, fuse_error

WRITABLE_TIMEOUT = 1.0

Resolved = Node | dict


def same_identity(a: dict, b: dict) -> bool:
    """Whether two committed entries are the same inode: the same directory,
    the same content."""
    if a is b:
        return True
    if a["type"] != b["type"]:
        return False
    if a["type"] == "file":
        return a.get("chunks") == b.get("chunks")
    if a["type"] == "symlink":
        return a.get("target") == b.get("target")
    return True


def _size_mtime(x: Resolved) -> tuple[int, int] | None:
    """A regular file's size and mtime (None for anything else)."""
    if isinstance(x, FileNode):
        return x.size, x.mtime
    if isinstance(x, dict) and x["type"] == "file":
        return x.get("size", 0), x.get("mtime") or 0
    return None


def _resized(was: Resolved, now: Resolved) -> bool:
    """Whether a regular file an inode showed now has another size or mtime
    (a commit of it keeps both; a discard or a stage.put does not)."""
    old = _size_mtime(was)
    return old is not None and old != _size_mtime(now)


def link_of(x: Resolved) -> str | None:
    """The hard-link group of a staged node or a committed entry (never a directory's)."""
    if isinstance(x, Node):
        return x.link
    return x.get("link") if x["type"] != "dir" else None


class BranchNodes:
    """Resolution and copy-up for the inodes of one branch's views."""

    def __init__(self, parts: ViewParts, repo: str, branch: str, area: StagingArea) -> None:
        self.parts = parts
        self.heads = parts.heads
        self.repo = repo
        self.branch = branch
        self.area = area
        self._seen: tuple = ()

    # -- places ------------------------------------------------------------------------

    def child(self, parent: Inode, name: str, number: int | None = None) -> Inode:
        """The inode at parent/name, allocated if the place has none (with
        ``number``, the one it was listed with, if it is free)."""
        inodes = self.parts.inodes
        return inodes.at(parent.ino, name) or inodes.add(parent.view, parent, name, number)

    async def place(self, parent: Inode, name: str, number: int | None = None) -> tuple[Inode, Resolved]:
        """The inode at parent/name and what it resolves to, allocated if the
        place has none (``number``: as ``child``); the names of a hard-link
        group share one inode."""
        inodes = self.parts.inodes
        inode = self.child(parent, name, number)
        try:
            r = await self.resolve(inode)
            if inode.orphan:  # it was replaced on the branch just now
                inodes.release(inode)
                inode = self.child(parent, name)
                r = await self.resolve(inode)
        except BaseException:
            inodes.release(inode)
            raise
        link = link_of(r)
        if link is not None and inode.link is None:
            shared = inodes.group_inode((parent.view, link), inode)
            if shared is not inode and inode.lookups == 0 and inode.handles == 0:
                inodes.take(parent.ino, name)      # the fresh inode gives its place to the group's
                inodes.release(inode)
                inodes.alias(shared, parent, name)
                inode = shared
                if isinstance(r, Node):
                    inode.obj, inode.epoch = r, self.area.epoch
        return inode, r

    def inode_at(self, parent: Inode, name: str) -> Inode:
        """The inode to resolve parent/name with: a transient one if the kernel holds none."""
        return self.parts.inodes.at(parent.ino, name) or BranchInode(0, parent.view, parent, name)

    @staticmethod
    def keep(inode: Inode, what: Resolved) -> None:
        """``inode`` keeps showing ``what`` once its name is gone (unlink, rename over it)."""
        if isinstance(what, dict):
            inode.committed(what, None)
            inode.obj = None
        else:
            inode.obj = what
            if isinstance(inode, BranchInode):
                inode.hold()

    def detach(self, parent: Inode, name: str) -> None:
        """The inode at parent/name (if any) no longer names that place."""
        inodes = self.parts.inodes
        inode = inodes.take(parent.ino, name)
        if inode is not None and not inodes.placed(inode):   # a hard link keeps its other names
            inode.orphan = True
            if isinstance(inode, BranchInode):
                inode.hold()

    # -- resolution ------------------------------------------------------------------------

    async def head(self) -> str | None:
        return await self.parts.heads.head(self.repo, self.branch)

    async def head_root(self, head: str | None) -> dict:
        """The root entry of the branch head (an empty directory before the first commit)."""
        if head is None:
            return {"name": "", "type": "dir", "mode": 0o755, "mtime": self.parts.started,
                    "tree": None, "dirs": 0}
        return await self.parts.commit_root(head)

    def _seen_now(self, head: str | None) -> tuple:
        """(head, staging generation): one tuple shared by the inodes resolved under it."""
        key = (head, self.area.generation)
        if self._seen != key:
            self._seen = key
        return self._seen

    async def _committed(self, inode: Inode) -> dict | None:
        """The committed entry the inode showed last, if any."""
        return await self.parts.entry_of(inode) if inode.has_committed else None

    def _orphaned(self, inode: Inode, was: Resolved) -> Resolved:
        """The path holds other content now: the inode keeps ``was`` (whole),
        as after a rename over it; the path gets a new inode at its next lookup."""
        inode.orphan = True
        self.keep(inode, was)
        self.parts.inodes.unplace(inode)
        return was

    async def resolve(self, inode: Inode) -> Resolved:
        """What the inode is now: a staged node or a committed entry."""
        if inode.orphan:
            if inode.obj is not None:
                return inode.obj
            if inode.has_committed:
                return await self.parts.entry_of(inode)
            raise fuse_error(errno.ENOENT)
        area = self.area
        bound = inode.obj
        if bound is not None and inode.epoch == area.epoch:
            return bound
        seen = self._seen_now(await self.heads.head(self.repo, self.branch))
        if inode.seen == seen and inode.has_committed:
            return await self.parts.entry_of(inode)  # nothing above it changed since
        r: Resolved | None
        tree: str | None = None
        if inode.parent is None:
            r = area.root if area.root is not None else await self.head_root(seen[0])
        else:
            p = await self.resolve(inode.parent)
            r, tree = await self.child_in(inode.parent, p, inode.name)
            if r is None:
                raise fuse_error(errno.ENOENT)
        was = inode.obj if inode.obj is not None else await self._committed(inode)
        if was is not None and was is not r and inode.parent is not None and _resized(was, r):
            # changed other than through this inode (a discard, a stage.put):
            # the kernel keeps its own size and mtime of a file it caches
            # (writeback cache), so the path gets a new inode, as after a rename over it
            return self._orphaned(inode, was)
        if isinstance(r, Node):
            inode.obj, inode.epoch = r, area.epoch
            inode.drop_committed()
            return r
        inode.obj = None
        if isinstance(was, dict) and inode.parent is not None and not same_identity(was, r):
            # replaced on the branch (a put): this inode is the old file
            return self._orphaned(inode, was)
        inode.committed(r, tree)
        inode.seen = seen
        return r

    async def lower(self, inode: Inode, node: DirNode) -> dict | None:
        """The committed directory under the staged directory ``node`` at ``inode``."""
        followed: dict | None = None
        if node.lower == FOLLOW:
            head = await self.heads.head(self.repo, self.branch)
            if node.followed is not None and node.followed[0] == head:
                followed = node.followed[1]
            else:
                if inode.parent is None:
                    followed = await self.head_root(head)
                else:
                    pnode = await self.resolve(inode.parent)
                    followed = ((await self.lower_listing(inode.parent, pnode)).get(inode.name)
                                if isinstance(pnode, DirNode) else None)
                node.followed = (head, followed)
        return lower_of(node, followed)

    async def lower_listing(self, inode: Inode, node: DirNode) -> dict[str, dict]:
        """The entries of the committed directory under a staged one, by name."""
        return await self.parts.listing(await self.lower(inode, node))

    async def child_of(self, parent: Inode, p: Resolved, name: str) -> Resolved | None:
        """What ``name`` is in the directory ``p`` (resolved at ``parent``);
        a committed name of a staged hard-link group is the group's node."""
        return (await self.child_in(parent, p, name))[0]

    async def child_in(self, parent: Inode, p: Resolved, name: str) -> tuple[Resolved | None, str | None]:
        """:meth:`child_of`, with the tree a committed entry is listed in."""
        if isinstance(p, DirNode):
            if name in p.delta:
                return p.delta[name], None
            low = await self.lower(parent, p)
        elif isinstance(p, dict) and is_dir(p):
            low = p
        else:
            raise fuse_error(errno.ENOTDIR)
        found = (await self.parts.listing(low)).get(name)
        if found is None:
            return None, None
        return self.area.shown(found), low.get("tree") if low is not None else None

    async def listing(self, inode: Inode, d: Resolved) -> Mapping[str, Resolved]:
        """A directory's entries by name (staged over committed)."""
        if isinstance(d, DirNode):
            out: Mapping[str, Resolved] = d.overlay(await self.lower_listing(inode, d))
        elif isinstance(d, dict):
            out = await self.parts.listing(d)
        else:
            return {}
        if self.area.links:
            out = {name: self.area.shown(x) if isinstance(x, dict) else x for name, x in out.items()}
        return out

    async def head_nlink(self, entry: dict) -> int:
        """How many names a committed hard-linked entry's group has in the head."""
        head = await self.heads.head(self.repo, self.branch)
        if head is None or "link" not in entry:
            return 1
        return await self.parts.link_count(await self.head_root(head), entry["link"])

    async def staged(self, r: Resolved) -> Resolved:
        """A committed hard-linked entry as its group's staged node (staged
        now): a change to one name changes every name (unlink, rename over)."""
        if isinstance(r, dict) and link_of(r) is not None:
            return self.area.group(r, await self.head_nlink(r))
        return r

    async def nlink(self, inode: Inode, d: DirNode) -> int:
        """2 + subdirectories (find(1) relies on it), cached until one comes or goes."""
        low = await self.lower(inode, d)
        key = (low.get("tree") if low else None, d.dirs_version)
        if d.nlink_cache is not None and d.nlink_cache[0] == key:
            return d.nlink_cache[1]
        lower = await self.parts.listing(low)
        dirs = sum(1 for e in lower.values() if e["type"] == "dir")
        for name, child in d.delta.items():
            was = lower.get(name)
            dirs -= bool(was and was["type"] == "dir")
            dirs += isinstance(child, DirNode)
        d.nlink_cache = (key, 2 + dirs)
        return 2 + dirs

    async def attr(self, inode: Inode, r: Resolved | None = None) -> pyfuse3.EntryAttributes:
        if r is None:
            r = await self.resolve(inode)
        nlink: int | None = None
        if isinstance(r, DirNode):
            nlink = 1 if inode.orphan else await self.nlink(inode, r)
        elif isinstance(r, dict) and inode.orphan and r["type"] != "dir":
            nlink = 0
        elif isinstance(r, dict) and link_of(r) is not None:
            nlink = await self.head_nlink(r)
        return attributes(inode.ino, r, self.parts.uid, self.parts.gid, WRITABLE_TIMEOUT, nlink)

    # -- copy-up -------------------------------------------------------------------------------

    async def upper(self, inode: Inode) -> Node:
        """The staged node of ``inode``, staging it (and its directories) first."""
        r = await self.resolve(inode)
        if isinstance(r, Node):
            return r
        area = self.area
        if inode.orphan:  # a committed file unlinked while open, written through its handle
            node = node_from_entry(-inode.ino, r)   # never journaled: it has no name
            node.linked = False
            inode.obj = node
            return node
        if inode.parent is None:
            node = area.ensure_root(r)
        else:
            parent = await self.upper_dir(inode.parent)
            node = parent.delta.get(inode.name) or area.copy_up(parent, inode.name, r,
                                                                  await self.head_nlink(r))
        inode.obj, inode.epoch = node, area.epoch
        inode.drop_committed()
        return node

    async def upper_dir(self, inode: Inode) -> DirNode:
        node = await self.upper(inode)
        if not isinstance(node, DirNode):
            raise fuse_error(errno.ENOTDIR)
        return node

    async def upper_child(self, parent: Inode, pnode: DirNode, name: str, pin: bool) -> Node:
        """The staged node at pnode/name; a directory about to move is pinned
        to the committed tree it showed (it stops following the head's path)."""
        cur = pnode.delta.get(name)
        lower = (await self.lower_listing(parent, pnode)).get(name)
        if cur is None:
            if name in pnode.delta or lower is None:
                raise fuse_error(errno.ENOENT)
            cur = self.area.copy_up(pnode, name, lower, await self.head_nlink(lower))
        if pin and isinstance(cur, DirNode) and cur.lower == FOLLOW:
            self.area.pin(pnode, name, cur, lower)
        return cur
