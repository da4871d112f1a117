"""Differences between two trees, skipping every subtree whose id is equal."""

from __future__ import annotations

from collections.abc import Iterator

from .objects import DIR
from .store import Store


def _same(a: dict, b: dict) -> bool:
    if a["type"] != b["type"] or a.get("mode") != b.get("mode"):
        return False
    if a["type"] == "file":
        return a.get("chunks") == b.get("chunks")
    if a["type"] == "symlink":
        return a.get("target") == b.get("target")
    return a.get("tree") == b.get("tree")


def _files_below(store: Store, tree: str, prefix: str) -> Iterator[str]:
    for e in store.read_tree(tree):
        path = f"{prefix}/{e['name']}"
        if e["type"] == DIR:
            yield from _files_below(store, e["tree"], path)
        else:
            yield path


def diff_trees(store: Store, old: str | None, new: str | None, prefix: str = "") -> Iterator[tuple[str, str]]:
    """Yield ``(status, path)`` with status ``A``, ``M`` or ``D``; files and symlinks only."""
    if old == new:
        return
    a = {e["name"]: e for e in store.read_tree(old)} if old else {}
    b = {e["name"]: e for e in store.read_tree(new)} if new else {}
    for name in sorted(a.keys() | b.keys()):
        ea, eb = a.get(name), b.get(name)
        path = f"{prefix}/{name}"
        if ea is not None and eb is not None and _same(ea, eb):
            continue
        da = ea is not None and ea["type"] == DIR
        db = eb is not None and eb["type"] == DIR
        if da and db:
            yield from diff_trees(store, ea["tree"], eb["tree"], path)
            continue
        if ea is not None:
            if da:
                yield from (("D", p) for p in _files_below(store, ea["tree"], path))
            elif eb is None or db:
                yield "D", path
        if eb is not None:
            if db:
                yield from (("A", p) for p in _files_below(store, eb["tree"], path))
            elif ea is None or da:
                yield "A", path
            else:
                yield "M", path
