"""Differences between two trees, skipping every subtree whose id is equal.

Trees are read through the one tree walker (:mod:`trunkfs.store.walk`); the
descent keeps an explicit stack, so paths deeper than Python's recursion
limit compare too.
"""

from __future__ import annotations

from collections.abc import Iterator

from .objects import DIR, FILE, SPECIAL, SYMLINK
from .store import Store
from .entrycheck import entry_problem
from .walk import files_below, is_dir


def _same(a: dict, b: dict) -> bool:
    if a["type"] != b["type"] or a.get("mode") != b.get("mode"):
        return False
    if a["type"] == FILE:
        return a.get("chunks") == b.get("chunks")
    if a["type"] == SYMLINK:
        return a.get("target") == b.get("target")
    if a["type"] in SPECIAL:
        return a.get("rdev") == b.get("rdev")
    return a.get("tree") == b.get("tree")


def _dir(tree: str | None) -> dict:
    """A directory entry for a bare tree id (what the walker reads)."""
    return {"type": DIR, "tree": tree}


def _entries(store: Store, entry: dict) -> dict:
    tree = entry.get("tree")
    return store.unchecked_tree_index(tree) if tree else {}


def _checked(e: dict | None) -> dict | None:
    """A stored entry if it is well formed; None (as every reader leaves it out) if not."""
    return e if e is not None and entry_problem(e) is None else None


def _differing(store: Store, old: dict, new: dict, prefix: str
               ) -> Iterator[tuple[str, dict | None, dict | None]]:
    """``(path, old entry, new entry)`` of each name whose entries differ, by
    name.  Entries stored alike are skipped unchecked (well formed or not,
    they are alike on both sides); the others are checked first."""
    a, b = _entries(store, old), _entries(store, new)
    for name in sorted(a.keys() | b.keys()):
        ea, eb = a.get(name), b.get(name)
        if ea == eb:
            continue
        ea, eb = _checked(ea), _checked(eb)
        if ea is None and eb is None or ea is not None and eb is not None and _same(ea, eb):
            continue
        yield f"{prefix}/{name}", ea, eb


def diff_trees(store: Store, old: str | None, new: str | None, prefix: str = "") -> Iterator[tuple[str, str]]:
    """Yield ``(status, path)`` with status ``A``, ``M`` or ``D``; files and
    symlinks only, depth first by name (a directory replaced by a file: its
    files' ``D`` before the file's ``A``)."""
    if old == new:
        return
    stack = [_differing(store, _dir(old), _dir(new), prefix)]
    while stack:
        for path, ea, eb in stack[-1]:
            da, db = is_dir(ea), is_dir(eb)
            if ea is not None and eb is not None and da and db:
                stack.append(_differing(store, ea, eb, path))
                break
            if ea is not None:
                if da:
                    yield from (("D", p) for p, _ in files_below(store, ea, path))
                elif eb is None or db:
                    yield "D", path
            if eb is not None:
                if db:
                    yield from (("A", p) for p, _ in files_below(store, eb, path))
                elif ea is None or da:
                    yield "A", path
                else:
                    yield "M", path
        else:
            stack.pop()
