"""What an open directory lists, read a page at a time by ``readdir``.

A committed directory is listed straight from its tree, by position: the
tree's entries are stored sorted by name and never change, so a readdir
offset is an index into them and an open directory holds the tree id, not
a copy of its million names (:class:`TreePages`).  What is built at
opendir (the mount root's repos, a branch directory with staged changes
over its tree) is a list (:class:`ListedEntries`).

A listing that sends files by name only (``nameonly``) wants each entry's
name and type and nothing else: :meth:`TreePages.names` takes them from the
record the index keeps of a checked tree (``store.nametable``), without
reading the tree.
"""

from __future__ import annotations

import sys
from typing import Any, Protocol

from ..store.nametable import KIND_CODES, NameTable, table_of
from ..store.store import Store
from .attrs import FORMATS
from .view import Run

_FS_ENCODING = sys.getfilesystemencoding()

Item = tuple[bytes, Any]   # (name, what the view's entry_attr needs for it)
ON_LOOP_ENTRIES = 4096     # a cached tree of more entries has its names table built in a thread

# the type an entry is listed with by name only, by its ``nametable`` kind code; 0 lists it
# whole (a directory: the walk goes into it; a hard-link name: its inode is its group's)
NAME_ONLY_FORMAT = [0] * 256
for _kind, _code in KIND_CODES.items():
    NAME_ONLY_FORMAT[_code] = 0 if _kind == "dir" else FORMATS[_kind]


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

    __slots__ = ("store", "run", "tree", "length", "table")

    def __init__(self, store: Store, run: Run, tree: str | None) -> None:
        self.store, self.run, self.tree = store, run, tree
        self.length = 0   # how many entries the tree has (known once a page was read)
        self.table: NameTable | None = None

    async def page(self, start: int, count: int) -> list[Item]:
        if not self.tree:
            return []
        entries = self.store.cached_tree(self.tree)
        if entries is None:
            entries = await self.run(self.store.read_tree, self.tree)
        self.length = len(entries)
        enc = _FS_ENCODING   # os.fsencode without its per-call work: a page is a hot loop
        return [(e["name"].encode(enc, "surrogateescape"), e) for e in entries[start:start + count]]

    async def names(self) -> NameTable:
        """Every entry's name and kind (``nametable``), kept for the
        directory's next readdir calls (``TrunkOperations._list_by_name``
        lets them go at the end)."""
        if self.table is None:
            if not self.tree:
                self.table = NameTable([], b"")
            else:
                entries = self.store.cached_tree(self.tree)
                if entries is None and _FS_ENCODING != "utf-8":   # the index keeps UTF-8
                    entries = await self.run(self.store.read_tree, self.tree)
                if entries is None:
                    self.table = await self.run(self.store.tree_names, self.tree)
                elif len(entries) <= ON_LOOP_ENTRIES:
                    self.table = table_of(entries, _FS_ENCODING)
                else:   # a huge directory's table is built off the event loop
                    self.table = await self.run(table_of, entries, _FS_ENCODING)
            self.length = len(self.table.names)
        return self.table
