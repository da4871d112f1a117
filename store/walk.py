"""The one tree walker.  Every reader of committed trees goes through these
functions: history queries (path lookup, ls, get), diff, fsck, datums, the
staging status and build, and the mount's path resolution.

Entries are the dicts of ``store.objects`` (a directory entry has ``tree``);
paths are ``/``-joined, starting with ``/`` below the root (``""`` is the
root itself).  Trees are read through the store's tree cache.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

from .errors import NotFound
from .objects import DIR
from .store import Store

_NO_ENTRIES: dict[str, dict] = {}


def is_dir(entry: dict | None) -> bool:
    return entry is not None and entry.get("type") == DIR


def listing(store: Store, entry: dict | None) -> dict[str, dict]:
    """A directory entry's children by name ({} for a file, an empty or a
    missing directory).  Shared with the store's cache: do not modify."""
    if entry is None or entry.get("type") != DIR or not entry.get("tree"):
        return _NO_ENTRIES
    return store.tree_index(entry["tree"])


def children(store: Store, entry: dict | None, path: str = "") -> Iterator[tuple[str, dict]]:
    """(path, entry) of each child of a directory entry, by name.  Sorts
    the names alone and looks each entry up as it is reached: a caller
    that stops early (a page, a capped diff) pays for what it took, and
    no list of a large directory's (name, entry) pairs is built, which
    would wake the garbage collector over every cached tree."""
    index = listing(store, entry)
    for name in sorted(index):
        yield f"{path}/{name}", index[name]


def walk(store: Store, entry: dict | None, path: str = "",
         descend: Callable[[str, dict], bool] | None = None) -> Iterator[tuple[str, dict]]:
    """Every entry below a directory entry, depth first, each directory
    before what it holds, by name.  ``descend(path, dir entry)`` False skips
    what a directory holds.  An explicit stack: paths may be deeper than
    Python's recursion limit."""
    stack = [children(store, entry, path)]
    while stack:
        for p, e in stack[-1]:
            yield p, e
            if is_dir(e) and (descend is None or descend(p, e)):
                stack.append(children(store, e, p))
                break
        else:
            stack.pop()


def files_below(store: Store, entry: dict, path: str = "") -> Iterator[tuple[str, dict]]:
    """Every non-directory at or below ``entry`` (the entry itself if it is
    not a directory)."""
    if not is_dir(entry):
        yield path, entry
        return
    for p, e in walk(store, entry, path):
        if not is_dir(e):
            yield p, e


def lookup(store: Store, root: dict, parts: Sequence[str], where: str = "") -> dict:
    """The entry at ``parts`` below ``root``; NotFound saying which part is missing."""
    entry = root
    for i, name in enumerate(parts):
        if not is_dir(entry):
            raise NotFound(f"{where}/{'/'.join(parts[:i])} is not a directory")
        child = listing(store, entry).get(name)
        if child is None:
            raise NotFound(f"{where}/{'/'.join(parts[:i + 1])} does not exist")
        entry = child
    return entry
