"""What an open directory lists, read a page at a time by ``readdir``.

A committed directory is listed straight from its tree, by position: the
tree's entries are stored sorted by name and never change, so a readdir
offset is an index into them and an open directory holds the tree id, not
a copy of its million names (:class:`TreePages`).  What is built at
opendir (the mount root's repos, a branch directory with staged changes
over its tree) is a list (:class:`ListedEntries`).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, Protocol

from ..store.store import Store
from .view import Run

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
    """A committed directory listed from its tree by position; ``item``
    makes what ``entry_attr`` needs of an entry (the entry itself, or its name)."""

    __slots__ = ("store", "run", "tree", "item")

    def __init__(self, store: Store, run: Run, tree: str | None,
                 item: Callable[[dict], Any] | None = None) -> None:
        self.store, self.run, self.tree = store, run, tree
        self.item = item

    async def page(self, start: int, count: int) -> list[Item]:
        if not self.tree:
            return []
        entries = self.store.cached_tree(self.tree)
        if entries is None:
            entries = await self.run(self.store.read_tree, self.tree)
        item = self.item
        return [(os.fsencode(e["name"]), item(e) if item is not None else e)
                for e in entries[start:start + count]]
