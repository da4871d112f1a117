"""The inode table: one inode number per (view name, path) while the kernel
holds it.

Numbers are handed out from a counter and never reused, so identical content
shared by dedup never looks like a hard link.  When a branch moves and a
path now holds other content, the path gets a new inode, as a file replaced
by rename would: the old inode (and the kernel's page cache of it) keeps the
old content for the handles opened before.  Directories keep their inode.
An inode leaves the table when the kernel's lookup count drops to zero.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pyfuse3

ROOT_INODE = pyfuse3.ROOT_INODE


def same_identity(a: dict, b: dict) -> bool:
    """Whether two entries are the same inode: same directory, same content."""
    if a is b:
        return True
    if a["type"] != b["type"]:
        return False
    if a["type"] == "file":
        return a.get("chunks") == b.get("chunks")
    if a["type"] == "symlink":
        return a.get("target") == b.get("target")
    return True


@dataclass(frozen=True)
class View:
    """What ``<mount>/<name>`` shows: a branch (following it) or one commit."""

    name: str            # the directory name used in the mount root
    repo: str
    branch: str | None   # set for branch views
    commit: str | None   # set for commit views (full id)

    @property
    def immutable(self) -> bool:
        return self.branch is None


@dataclass(eq=False)
class Node:
    ino: int
    view: View | None            # None for the mount root
    path: tuple[str, ...]
    lookups: int = 0
    entry: dict | None = None     # the tree entry last resolved for this path
    entry_commit: str | None = None
    opened_content: object = None  # content seen at the last open (keep_cache decision)
    parent: int = ROOT_INODE
    name: bytes = b""


@dataclass
class InodeTable:
    _by_key: dict[tuple[str, tuple[str, ...]], Node] = field(default_factory=dict)
    _by_ino: dict[int, Node] = field(default_factory=dict)
    _next: int = ROOT_INODE + 1

    def __post_init__(self) -> None:
        root = Node(ROOT_INODE, None, (), lookups=1)
        self._by_ino[ROOT_INODE] = root

    def allocate(self) -> int:
        """A fresh inode number (for the write side's own table)."""
        ino = self._next
        self._next += 1
        return ino

    def get(self, ino: int) -> Node | None:
        return self._by_ino.get(ino)

    def node(self, view: View, path: tuple[str, ...], parent: int, name: bytes,
             entry: dict | None = None) -> Node:
        """The node of ``path`` in ``view``, allocating an inode if needed
        (also when ``entry`` holds other content than the current node)."""
        key = (view.name, path)
        node = self._by_key.get(key)
        if node is None or (entry is not None and node.entry is not None
                            and not same_identity(node.entry, entry)):
            node = Node(self._next, view, path, parent=parent, name=name)
            self._next += 1
            self._by_key[key] = node
            self._by_ino[node.ino] = node
        return node

    def forget(self, ino: int, count: int) -> None:
        node = self._by_ino.get(ino)
        if node is None or ino == ROOT_INODE:
            return
        node.lookups -= count
        if node.lookups <= 0:
            del self._by_ino[ino]
            key = (node.view.name, node.path)
            if self._by_key.get(key) is node:
                del self._by_key[key]

    def branch_views(self, repo: str, branch: str | None) -> list[View]:
        """The branch views of ``repo`` (of ``branch`` if given) the kernel holds."""
        return [n.view for (_, path), n in self._by_key.items()
                if path == () and n.view.repo == repo and not n.view.immutable
                and (branch is None or n.view.branch == branch)]

    def __len__(self) -> int:
        return len(self._by_ino)
