"""The status diff: what a branch's staged view changes against its head.

Paths are printed as ``diff`` prints them: from the repo root with a
leading ``/`` (``A /new.txt``); a directory with nothing below it that is
added or removed shows as itself with a trailing ``/`` (``A /new/dir/``),
and a staged directory whose mode or owner changed is ``M /dir/``.  Staged
directories are resolved through :mod:`.overlay`; where a committed subtree
stands on both sides, the store's tree diff compares them.  Runs in a
worker thread.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from ..store.diff import diff_trees
from ..store.objects import DIR
from ..store.store import Store
from ..store.walk import is_dir, listing
from .area import StagingArea
from .nodes import DirNode, FileNode, LinkNode, Node, SpecialNode
from .overlay import children

Change = tuple[str, str]  # (A|M|D, path)


def changes(area: StagingArea, store: Store, head_root: dict | None) -> list[Change]:
    """[(A|M|D, /path)] of the staged view against the head, sorted by path."""
    if area.root is None:
        return []
    diff = _StatusDiff(store)
    diff.compare(area.root, head_root, head_root or None, "")
    while diff.todo:            # the work below, deferred: no recursion, any depth
        diff.todo.pop()()
    return sorted(diff.out, key=lambda c: c[1])


def _same(node: Node, head: dict) -> bool:
    """Whether a staged file or symlink equals a committed entry."""
    if head.get("type") != node.kind:
        return False
    meta = node.entry_meta()
    for key in ("mode", "uid", "gid", "xattrs"):
        if meta.get(key) != head.get(key) and not (key == "mode" and meta["mode"] == (head.get("mode") or 0)):
            return False
    if isinstance(node, LinkNode):
        return node.target == head.get("target")
    if isinstance(node, SpecialNode):
        return meta.get("rdev") == head.get("rdev")
    assert isinstance(node, FileNode)
    return not node.content_changed and node.base_chunks == head.get("chunks", []) \
        and meta["mtime"] == head.get("mtime")


class _StatusDiff:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.out: list[Change] = []
        self.todo: list[Callable[[], None]] = []   # subdirectories still to visit

    def every(self, item: Node | dict, path: str, code: str, followed: dict | None = None) -> None:
        """``code`` for everything at and below ``path`` (a staged node or a
        committed entry); an empty directory is listed as ``path/``."""
        if isinstance(item, DirNode):
            below = children(self.store, item, followed)
            if not below:
                self.out.append((code, path + "/"))
            for name, (child, under) in below.items():
                self.todo.append(partial(self.every, child, f"{path}/{name}", code, under))
        elif isinstance(item, dict) and item["type"] == DIR:
            entries = listing(self.store, item)
            if not entries:
                self.out.append((code, path + "/"))
            for name, e in entries.items():
                self.todo.append(partial(self.every, e, f"{path}/{name}", code))
        else:
            self.out.append((code, path))

    def compare(self, node: DirNode, followed: dict | None, head: dict | None, path: str) -> None:
        """The staged directory ``node`` at ``path`` ("" for the root) against
        the head's entry there."""
        merged = children(self.store, node, followed)
        heads = listing(self.store, head)
        if path and is_dir(head):
            assert head is not None
            meta = node.entry_meta()
            if (meta["mode"] != (head.get("mode") or 0) or meta.get("uid") != head.get("uid")
                    or meta.get("gid") != head.get("gid")):
                self.out.append(("M", path + "/"))
        for name in sorted(set(merged) | set(heads)):
            child_path = f"{path}/{name}"
            h = heads.get(name)
            if name not in merged:
                assert h is not None
                self.every(h, child_path, "D")
                continue
            m, under = merged[name]
            if isinstance(m, dict):  # a committed entry showing through
                if h == m:
                    continue
                if h is None:
                    self.every(m, child_path, "A")
                elif m["type"] == DIR and h["type"] == DIR:
                    self.out.extend(diff_trees(self.store, h["tree"], m["tree"], child_path))
                else:
                    self.out.append(("M", child_path))
            elif isinstance(m, DirNode):
                if is_dir(h):
                    self.todo.append(partial(self.compare, m, under, h, child_path))
                else:
                    if h is not None:
                        self.every(h, child_path, "D")
                    self.every(m, child_path, "A", under)
            elif h is None:
                self.out.append(("A", child_path))
            elif h.get("type") == DIR:
                self.every(h, child_path, "D")
                self.out.append(("A", child_path))
            elif not _same(m, h):
                self.out.append(("M", child_path))
