"""The overlay resolver: what a staged directory shows over the committed one
beneath it.  The mount (reads of branch views), the commit build and the
status diff all resolve staged directories through these functions.

A staged directory's lower directory is, by ``DirNode.lower``: ``FOLLOW``,
the same path in the branch head (``followed``, the entry its parent's
lower directory has under this name); a pinned committed entry, for a
directory that was renamed; or None, for a directory made by mkdir.
"""

from __future__ import annotations

from ..store.store import Store
from ..store.walk import is_dir, listing
from .nodes import FOLLOW, DirNode, Node


def is_dir_like(x: Node | dict | None) -> bool:
    """Whether a staged node or a committed entry is a directory."""
    return isinstance(x, DirNode) or (isinstance(x, dict) and is_dir(x))


def lower_of(node: DirNode, followed: dict | None) -> dict | None:
    """The committed directory entry under a staged directory."""
    if node.lower == FOLLOW:
        return followed if is_dir(followed) else None
    return node.lower if isinstance(node.lower, dict) else None


def merged(store: Store, node: DirNode, followed: dict | None) -> dict[str, Node | dict]:
    """The staged directory's entries: the lower listing with the delta over it."""
    return node.overlay(listing(store, lower_of(node, followed)))


def children(store: Store, node: DirNode, followed: dict | None
             ) -> dict[str, tuple[Node | dict, dict | None]]:
    """The staged directory's entries (as :func:`merged`), each with the
    committed entry its lower directory has under that name: what a staged
    subdirectory that follows resolves against (``followed`` one level down)."""
    lower = listing(store, lower_of(node, followed))
    return {name: (x, lower.get(name)) for name, x in node.overlay(lower).items()}
