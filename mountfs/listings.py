"""What an open directory lists, read a page at a time by ``readdir``.

A committed directory is listed straight from its tree, by position: the
tree's entries are stored sorted by name and never change, so a readdir
offset is an index into them and an open directory holds the tree id, not
a copy of its million names (:class:`TreePages`).  What is built at
opendir (the mount root's repos, a branch directory with staged changes
over its tree) is a list (:class:`ListedEntries`).
"""

from __future__ import annotations

import sys
from typing import Any, Protocol

from ..store.store import Store
from .view import Run

_FS_ENCODING = sys.getfilesystemencoding()

Item = tuple[bytes, Any]   # (name, what the view's entry_attr needs for it)


class DirListing(Protocol):
    async def page(self, start: int, count: int) -> list[Item]:
        """Entries [start, start + count) of the listing (fewer at its end)."""
        ...


class ListedEntries:
    """A listing built when the directory was opened."""

    def __init__(self, items: list[Item]) -> None:
        self.items = items

    async def page(self, start: int, count: int) -> list[Item]:
        return self.items[start:start + count]


class TreePages:
    """A committed directory listed from its tree by position: items are
    (name, the tree's entry)."""

    __slots__ = ("store", "run", "tree", "length")

    def __init__(self, store: Store, run: Run, tree: str | None) -> None:
        self.store, self.run, self.tree = store, run, tree
        self.length = 0   # how many entries the tree has (known once a page was read)

    async def page(self, start: int, count: int) -> list[Item]:
        if not self.tree:
            return []
        entries = self.store.cached_tree(self.tree)
        if entries is None:
            entries = await self.run(self.store.read_tree, self.tree)
        self.length = len(entries)
        enc = _FS_ENCODING   # os.fsencode without its per-call work: a page is a hot loop
        return [(e["name"].encode(enc, "surrogateescape"), e) for e in entries[start:start + count]]
