"""Differences between two trees, skipping every subtree whose id is equal.

Trees are read through the one tree walker (:mod:`trunkfs.store.walk`); the
descent keeps an explicit stack, so paths deeper than Python's recursion
limit compare too.  Two trees read from the store (not in the tree cache)
are compared as bytes where that is exact (:mod:`.rawtree`): only the
entries that differ are decoded.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import cast

from .objects import DIR, FILE, SPECIAL, SYMLINK, unchecked_entries
from .rawtree import changed_entries, entry_spans, merge_sorted
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


def _tree_pairs(store: Store, ta: str | None, tb: str | None
                ) -> Iterator[tuple[str, dict | None, dict | None]]:
    """:func:`_pairs` of the trees ``ta`` and ``tb`` (None: no tree).  Both in
    the tree cache: their entries are compared.  Else both are read as stored
    and compared as bytes where that is exact (:mod:`.rawtree`)."""
    a = store.cached_tree(ta) if ta else []
    b = store.cached_tree(tb) if tb else []
    if (a is None or b is None) and ta and tb:
        (ra, na), (rb, nb) = store.tree_bytes(ta), store.tree_bytes(tb)
        sa = entry_spans(ra, na) if na is not None else None
        sb = entry_spans(rb, nb) if nb is not None else None
        found = changed_entries(sa, sb) if sa is not None and sb is not None else None
        if found is not None:
            for ea, eb in found:
                yield (ea if ea is not None else eb)["name"], ea, eb   # type: ignore[index]
            return
        a = a if a is not None else unchecked_entries(ra, ta)
        b = b if b is not None else unchecked_entries(rb, tb)
    # (a tree missing from the cache has an id)
    yield from _pairs(a if a is not None else store.unchecked_tree_entries(cast(str, ta)),
                      b if b is not None else store.unchecked_tree_entries(cast(str, tb)))


def _sorted_names(entries: list) -> list[str] | None:
    """The names of ``entries`` if every one is an object with a string name
    and they are strictly in order (as every tree is stored), else None."""
    try:
        names = [e["name"] for e in entries]
    except (TypeError, KeyError):
        return None
    # (C loops: this runs over every entry of every tree a diff reads)
    if set(map(type, names)) - {str} or sorted(names) != names or len(set(names)) != len(names):
        return None
    return names


def _pairs(a: list, b: list) -> Iterator[tuple[str, dict | None, dict | None]]:
    """(name, entry in ``a``, entry in ``b``) for each name whose entries are
    not stored alike, in name order: a merge of the two sorted lists, or
    one pass when both list the same names (a tree whose files changed).
    A tree stored out of order or with odd entries is compared by name."""
    an, bn = _sorted_names(a), _sorted_names(b)
    if an is None or bn is None:
        yield from _pairs_by_name(a, b)
        return
    if an == bn:
        for ea, eb in zip(a, b):
            if ea != eb:
                yield ea["name"], ea, eb
        return
    for i, j in merge_sorted(an, bn):
        if i is not None and j is not None:
            if a[i] != b[j]:
                yield an[i], a[i], b[j]
        elif i is not None:
            yield an[i], a[i], None
        elif j is not None:
            yield bn[j], None, b[j]


def _pairs_by_name(a: list, b: list) -> Iterator[tuple[str, dict | None, dict | None]]:
    ia = {e["name"]: e for e in a if isinstance(e, dict) and isinstance(e.get("name"), str)}
    ib = {e["name"]: e for e in b if isinstance(e, dict) and isinstance(e.get("name"), str)}
    for name in sorted(ia.keys() | ib.keys()):
        ea, eb = ia.get(name), ib.get(name)
        if ea != eb:
            yield name, ea, eb


def _checked(e: dict | None) -> dict | None:
    """A stored entry if it is well formed; None (as every reader leaves it out) if not."""
    return e if e is not None and entry_problem(e) is None else None


def _differing(store: Store, old: dict, new: dict, prefix: str
               ) -> Iterator[tuple[str, dict | None, dict | None]]:
    """``(path, old entry, new entry)`` of each name whose entries differ, by
    name.  Entries stored alike are skipped unchecked (well formed or not,
    they are alike on both sides); the others are checked first."""
    for name, ea, eb in _tree_pairs(store, old.get("tree"), new.get("tree")):
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
