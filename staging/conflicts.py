"""Staged changes against a branch head that moved: replay or conflict.

A branch's staging follows its head: a commit made elsewhere (another
daemon, a ``put``) shows through every name the staging did not change.
For the names it did change, each staged directory remembers the entry its
lower directory had there when the name was first changed
(``DirNode.bases``: a signature, or "" when there was nothing).  When the
staging is committed over a head, every such name is settled per path, as a
three-way merge with that remembered entry as the base:

* the head still has the base there: the staged version goes in;
* the staged version is the base again (changed, then changed back): the
  head's goes in;
* head and staged version are the same: it goes in;
* otherwise both sides changed the path: a conflict.  The commit fails
  naming every such path, and the staging stays as it was.

Directories: a staged directory that follows the head is settled name by
name below it; one made by ``mkdir`` where the head now has a directory is
laid over it (both sides' files kept, same names settled as above); a
renamed directory whose source or target the head changed is a conflict.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping

from ..store.errors import Conflict
from ..store.walk import is_dir
from .nodes import FOLLOW, DirNode, Node

_SIG_KEYS = ("type", "mode", "uid", "gid", "xattrs", "mtime", "size", "chunks", "target", "tree", "rdev")


def entry_sig(entry: Mapping | None) -> str:
    """A short signature of a tree entry's content and metadata (not its
    name); "" for no entry."""
    if entry is None:
        return ""
    norm: dict = {}
    for key in _SIG_KEYS:
        value = entry.get(key)
        if value is None or value == {} or value == []:
            continue
        norm[key] = int(value) & 0o7777 if key == "mode" else value
    text = json.dumps(norm, sort_keys=True, separators=(",", ":"))
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()


class PathConflict(Conflict):
    """Staged paths that the branch head also changed since they were staged."""

    SHOWN = 20

    def __init__(self, where: str, paths: list[str]) -> None:
        self.paths = sorted(paths)
        shown = ", ".join(self.paths[:self.SHOWN])
        more = f" and {len(self.paths) - self.SHOWN} more" if len(self.paths) > self.SHOWN else ""
        super().__init__(
            f"commit to {where} conflicts: the branch changed {len(self.paths)} staged path(s) "
            f"since they were staged: {shown}{more}; nothing was committed and the staging is "
            f"intact (discard those paths, or commit with --force to keep the staged versions)")

    def details(self) -> dict:
        return {"paths": self.paths}


KEEP, HEAD, ADOPT = "keep", "head", "adopt"


def settle(node: DirNode, name: str, staged: Node | None, staged_entry: dict | None,
           head: dict | None) -> str | None:
    """How the changed name ``node``/``name`` goes into a commit over
    ``head`` (the head's entry there): KEEP the staged version, take the
    HEAD's, ADOPT (a made directory laid over the head's), or None for a
    conflict.  ``staged_entry`` is the staged file's or symlink's entry."""
    base = node.bases.get(name)
    head_sig = entry_sig(head)
    if base is None or head_sig == base:
        return KEEP          # the head did not touch it (or the journal predates bases)
    if isinstance(staged, DirNode):
        if staged.lower == FOLLOW:      # settled name by name below, unless the head made it a file
            return KEEP if head is None or is_dir(head) else None
        if staged.lower is None and base == "":
            return KEEP if head is None else ADOPT if is_dir(head) else None
        return None          # a renamed directory over something the head changed
    staged_sig = "" if staged is None else entry_sig(staged_entry)
    if staged_sig == base:
        return HEAD
    if staged_sig == head_sig:
        return KEEP
    return None
