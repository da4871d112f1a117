"""The inode table: one inode number per place (parent inode, name) while
the kernel holds it, for every view of the mount; the names of one hard-link
group share one inode (its other places are ``more``, and the group's inode
is found by its key: the view and the link id).

Numbers are handed out from a counter and never reused, so identical content
shared by dedup never looks like a hard link: each place has its own inode.
When a branch moves and a path now holds other content, the path gets a new
inode, as a file replaced by rename would: the old inode (and the kernel's
page cache of it) keeps the old content for the handles opened before
(``branchnodes``).  Directories keep their inode.  An inode leaves the table
when the kernel's lookup count drops to zero and no handle holds it open.

The root of each view (``<mount>/<name>``) is placed under the mount root by
its name; its ``parent`` is None, as the mount root's is.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, cast

import pyfuse3

if TYPE_CHECKING:
    from ..staging.nodes import Node
    from .branchview import BranchView
    from .view import View

ROOT_INODE: int = pyfuse3.ROOT_INODE


_SLOTS: tuple[str, ...] = ("ino", "view", "parent", "name", "lookups", "handles", "entry", "more", "link")


class Inode:
    """What the daemon keeps per inode the kernel holds: a few references,
    no dict (104 bytes; 136 in a branch view).  A committed entry that is
    not a directory is not kept: it is found again by name in the
    (immutable) tree it was listed in, through the bounded tree cache
    (``source``, ``ViewParts.entry_of``); in a commit view that tree is the
    parent directory's.  Directories, view roots and orphans keep theirs
    (``entry``): they are few, and an orphan's tree may be gone."""

    # (a name, not a literal: the branch fields below are declared for the
    # type checker, and are slots of ``BranchInode`` only)
    __slots__ = _SLOTS
    src_tree: str | None = None  # branch views only: the tree its committed entry is listed in ...
    src_name: str | None = None  # ... under this name
    obj: Node | None = None      # the staged node bound to it (``branchnodes``)
    epoch: int = -1              # the staging area's epoch when ``obj`` was bound
    seen: tuple | None = None    # (head, staging generation) when the committed entry was resolved
    orphan: bool = False         # unlinked or replaced: keeps what it had

    def __init__(self, ino: int, view: View, parent: Inode | None, name: str, lookups: int = 0) -> None:
        self.ino = ino
        self.view = view              # the view that answers for this inode
        self.parent = parent          # None for the mount root and for each view's root
        self.name = name              # the name in the parent (in the mount root for a view's root)
        self.lookups = lookups        # the kernel's lookup count
        self.handles = 0              # open handles (the inode stays while any is open)
        self.entry: dict | None = None        # a committed entry kept whole (see above)
        self.more: list[tuple[Inode, str]] | None = None   # its other places (hard links)
        self.link: tuple | None = None  # (view, link id) when it is a hard-link group's inode

    def committed(self, entry: dict, tree: str | None) -> None:
        """The inode shows the committed ``entry``, listed in ``tree`` (its
        parent directory's: the entry is found there again)."""
        self.entry = entry if entry["type"] == "dir" or not tree else None

    def source(self) -> tuple[str | None, str]:
        """The tree its committed entry is listed in, and the name there."""
        p = self.parent
        return (p.entry.get("tree") if p is not None and p.entry is not None else None), self.name

    def drop_committed(self) -> None:
        self.entry = None

    @property
    def has_committed(self) -> bool:
        return self.entry is not None or self.source()[0] is not None


class BranchInode(Inode):
    """An inode of a branch view: its fields of the staging layer are slots
    here (a commit view's inodes leave them out: 48 bytes less each).

    The staged node an inode is bound to is held by its id, not the object
    (``obj``): a staged node nothing else holds leaves memory when its
    directory is paged out (``staging.area``), though the kernel still
    holds the inode, and is found again by id (``StagingArea.nodes``) or,
    once gone from memory, through the path.  An orphan, or a node out of
    the tree or never journaled, is held itself: nothing could find it again."""

    __slots__ = ("src_tree", "src_name", "bound", "epoch", "seen", "orphan")

    def __init__(self, ino: int, view: View, parent: Inode | None, name: str, lookups: int = 0) -> None:
        super().__init__(ino, view, parent, name, lookups)
        self.src_tree = self.src_name = None
        self.bound: Node | int | None = None   # the node, or its id (see above)
        self.epoch = -1
        self.seen = None
        self.orphan = False

    @property
    def obj(self) -> Node | None:
        bound = self.bound
        if bound.__class__ is int:
            return cast("BranchView", self.view).area.nodes.get(bound)
        return cast("Node | None", bound)

    @obj.setter
    def obj(self, node: Node | None) -> None:
        if node is None or self.orphan or not node.linked or node.id <= 0:
            self.bound = node
        else:
            self.bound = node.id

    def hold(self) -> None:
        """Hold the bound node itself from now on (it is about to leave the
        tree, or the inode to be orphaned)."""
        if self.bound.__class__ is int:
            self.bound = self.obj

    def committed(self, entry: dict, tree: str | None) -> None:
        """The inode shows the committed ``entry``, listed in ``tree`` (a
        branch's directories move: the tree is kept, not the parent's)."""
        if tree and entry["type"] != "dir":
            self.entry, self.src_tree, self.src_name = None, tree, entry["name"]
        else:
            self.entry, self.src_tree, self.src_name = entry, None, None

    def source(self) -> tuple[str | None, str]:
        return self.src_tree, self.src_name or ""

    def drop_committed(self) -> None:
        self.entry = self.src_tree = self.src_name = None

    @property
    def has_committed(self) -> bool:
        return self.entry is not None or self.src_tree is not None


class InodeTable:
    def __init__(self) -> None:
        self._by_ino: dict[int, Inode] = {}
        self._places: dict[int, dict[str, Inode]] = {}   # parent inode -> name -> inode
        self._links: dict[tuple, Inode] = {}             # (view, link id) -> the group's inode
        self._next = ROOT_INODE + 1
        # directory inode -> (the tree it listed name-only, the first number
        # of the block kept for that tree's entries): see ``listed_block``
        self._blocks: dict[int, tuple[str, int]] = {}
        # every request starts here: the dict's own method, no call of ours
        self.get: Callable[[int], Inode | None] = self._by_ino.get

    def add_root(self, view: View) -> Inode:
        """The mount root's inode, held for the life of the mount."""
        root = Inode(ROOT_INODE, view, None, "", lookups=1)
        self._by_ino[ROOT_INODE] = root
        return root

    def at(self, parent_ino: int, name: str) -> Inode | None:
        """The inode placed at parent/name, if any."""
        names = self._places.get(parent_ino)
        return names.get(name) if names is not None else None

    def names_in(self, parent_ino: int) -> dict[str, Inode] | None:
        """The inodes placed in directory ``parent_ino`` by name (shared: not
        to be changed), or None: none was."""
        return self._places.get(parent_ino)

    def children(self, parent_ino: int) -> list[Inode]:
        return list(self._places.get(parent_ino, {}).values())

    def add(self, view: View, parent: Inode | None, name: str, number: int | None = None) -> Inode:
        """A new inode at parent/name (a view's root: ``parent`` None).  An
        inode placed there before stays known by its number until forgotten.
        ``number``: the one it was listed with (``listed_block``), unless an
        inode still has it."""
        if number is None or number in self._by_ino:
            number = self._next
            self._next += 1
        inode = (BranchInode if view.staged else Inode)(number, view, parent, name)
        self._by_ino[inode.ino] = inode
        self._put(inode)
        return inode

    def listed_block(self, dir_ino: int, tree: str, count: int) -> int:
        """The first of ``count`` inode numbers kept for the entries of
        ``tree`` listed by name only in directory ``dir_ino``: entry i is
        listed with d_ino base + i and gets that number when looked up, so
        ``d_ino`` and ``st_ino`` agree though no inode existed at listing.
        Numbers are never handed out twice."""
        block = self._blocks.get(dir_ino)
        if block is not None and block[0] == tree:
            return block[1]
        base = self._next
        self._next += max(count, 1)
        self._blocks[dir_ino] = (tree, base)
        return base

    def block_of(self, dir_ino: int) -> tuple[str, int] | None:
        """(tree, first number) of the entries ``dir_ino`` listed by name only."""
        return self._blocks.get(dir_ino)

    def place(self, inode: Inode, parent: Inode | None, name: str) -> None:
        """``inode`` gets the place parent/name (rename): its one place, or
        one more when it still names another (a hard link)."""
        if self.placed(inode) and parent is not None:
            self.alias(inode, parent, name)
            return
        inode.parent, inode.name = parent, name
        self._put(inode)

    def alias(self, inode: Inode, parent: Inode, name: str) -> None:
        """One more place for ``inode``: another name of its hard-link group."""
        self._places.setdefault(parent.ino, {})[name] = inode
        inode.more = [*(inode.more or ()), (parent, name)]

    def placed(self, inode: Inode) -> bool:
        """Whether ``inode`` still names a place."""
        return self.at(_parent_ino(inode), inode.name) is inode

    def take(self, parent_ino: int, name: str) -> Inode | None:
        """Remove and return the inode placed at parent/name; it stays known
        by its number (open handles, the kernel's lookups).  An inode with
        other places keeps them (its first other place becomes its own)."""
        names = self._places.get(parent_ino)
        if names is None:
            return None
        inode = names.pop(name, None)
        if not names:
            del self._places[parent_ino]
        if inode is not None and inode.more:
            if _parent_ino(inode) == parent_ino and inode.name == name:
                inode.parent, inode.name = inode.more.pop(0)
            else:
                inode.more = [(p, n) for p, n in inode.more if not (p.ino == parent_ino and n == name)]
            inode.more = inode.more or None
        return inode

    def unplace(self, inode: Inode) -> None:
        """``inode`` names none of its places any more."""
        for parent, name in inode.more or ():
            if self.at(parent.ino, name) is inode:
                names = self._places[parent.ino]
                del names[name]
                if not names:
                    del self._places[parent.ino]
        inode.more = None
        key = _parent_ino(inode)
        if self.at(key, inode.name) is inode:
            self.take(key, inode.name)

    def group_inode(self, key: tuple, inode: Inode) -> Inode:
        """The inode of the hard-link group ``key`` (view, link id): the one
        the kernel holds for it, or ``inode``, which becomes it (when there
        is none, or the one there lost all its names)."""
        shared = self._links.get(key)
        if shared is None or shared.orphan:
            inode.link = key
            self._links[key] = inode
            return inode
        return shared

    def forget(self, ino: int, count: int) -> None:
        inode = self._by_ino.get(ino)
        if inode is None or ino == ROOT_INODE:
            return
        inode.lookups -= count
        self.release(inode)

    def release(self, inode: Inode) -> None:
        """Drop ``inode`` if the kernel holds it no more and no handle is open."""
        if inode.lookups > 0 or inode.handles > 0 or inode.ino == ROOT_INODE:
            return
        if self._by_ino.get(inode.ino) is inode:
            del self._by_ino[inode.ino]
            if self._blocks:
                self._blocks.pop(inode.ino, None)
        if inode.link is not None and self._links.get(inode.link) is inode:
            del self._links[inode.link]
        self.unplace(inode)

    def _put(self, inode: Inode) -> None:
        self._places.setdefault(_parent_ino(inode), {})[inode.name] = inode

    def __len__(self) -> int:
        return len(self._by_ino)


def _parent_ino(inode: Inode) -> int:
    return inode.parent.ino if inode.parent is not None else ROOT_INODE
