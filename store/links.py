"""The link walker: every name of the hard-link groups in a committed tree.

A hard-linked name is a complete entry that carries its group's ``link`` id
(``store/objects.py``); a directory's ``links`` counts such names below it.
So the names of every group, and ``st_nlink`` (how many names a group has
in one tree), come from reading only the directories that hold any: a tree
of a million files with no hard link costs one listing, its root's.

``st_nlink`` is counted, never stored: a tree edited by ``put``, a merge or
an older trunkfs stays right, since whatever names carry a link id in a
tree are that group's names in that tree.
"""

from __future__ import annotations

from collections.abc import Iterator

from .objects import DIR
from .store import Store
from .walk import listing


def link_names(store: Store, root: dict, groups: set[str] | None = None
               ) -> Iterator[tuple[str, dict]]:
    """(path, entry) of every hard-linked name below ``root`` (a directory
    entry; a commit's root is always read), of the ``groups`` given or of
    all.  Paths are ``/``-joined from the root, as ``store.walk`` makes them."""
    stack: list[tuple[str, dict]] = [("", root)]
    while stack:
        path, entry = stack.pop()
        for name, child in listing(store, entry).items():
            if child["type"] == DIR:
                if child.get("links", 0) > 0:
                    stack.append((f"{path}/{name}", child))
            elif "link" in child and (groups is None or child["link"] in groups):
                yield f"{path}/{name}", child


def link_census(store: Store, root: dict) -> dict[str, int]:
    """How many names each hard-link group has below ``root`` (its st_nlink)."""
    counts: dict[str, int] = {}
    for _, entry in link_names(store, root):
        counts[entry["link"]] = counts.get(entry["link"], 0) + 1
    return counts
