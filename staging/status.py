"""The status diff: what a branch's staged view changes against its head.

Paths are printed as ``diff`` prints them, and in its order (depth first
by name, streamed as they are found): from the repo root with a
leading ``/`` (``A /new.txt``); a directory with nothing below it that is
added or removed shows as itself with a trailing ``/`` (``A /new/dir/``),
and a staged directory whose mode or owner changed is ``M /dir/``.  Staged
directories are resolved through :mod:`.overlay`; where a committed subtree
stands on both sides, the store's tree diff compares them.  Runs in a
worker thread.
"""

from __future__ import annotations

from collections.abc import Iterator

from ..store.diff import diff_trees
from ..store.objects import DIR
from ..store.store import Store
from ..store.walk import is_dir, listing
from .area import StagingArea
from .nodes import DirNode, FileNode, LinkNode, Node, SpecialNode
from .overlay import children, is_dir_like

Change = tuple[str, str]  # (A|M|D, path)


def changes(area: StagingArea, store: Store, head_root: dict | None) -> list[Change]:
    """[(A|M|D, /path)] of the staged view against the head (:func:`iter_changes`)."""
    return list(iter_changes(area, store, head_root))


def iter_changes(area: StagingArea, store: Store, head_root: dict | None) -> Iterator[Change]:
    """(A|M|D, /path) of the staged view against the head, one at a time,
    depth first by name as ``diff`` prints them (a directory's changes at
    its name, its own ``M /dir/`` first).  Only the directories on the way
    down are in hand, so a million staged files are never listed whole;
    an explicit stack, so any depth."""
    if area.root is None:
        return
    diff = _StatusDiff(store)
    stack: list[Iterator[Change | Iterator]] = [diff.compare(area.root, head_root, head_root or None, "")]
    while stack:
        for item in stack[-1]:
            if isinstance(item, tuple):
                yield item
            else:           # a directory below: its changes come first
                stack.append(item)
                break
        else:
            stack.pop()


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


Step = Iterator["Change | Step"]   # changes, and the steps of the directories below


class _StatusDiff:
    def __init__(self, store: Store) -> None:
        self.store = store

    def every(self, item: Node | dict, path: str, code: str, followed: dict | None = None) -> Step:
        """``code`` for everything at and below ``path`` (a staged node or a
        committed entry); an empty directory is listed as ``path/``."""
        below: dict[str, tuple[Node | dict, dict | None]]
        if isinstance(item, DirNode):
            below = children(self.store, item, followed)
        elif isinstance(item, dict) and item["type"] == DIR:
            below = {name: (e, None) for name, e in listing(self.store, item).items()}
        else:
            yield code, path
            return
        if not below:
            yield code, path + "/"
        for name in sorted(below):
            child, under = below[name]
            if is_dir_like(child):
                yield self.every(child, f"{path}/{name}", code, under)
            else:
                yield code, f"{path}/{name}"

    def compare(self, node: DirNode, followed: dict | None, head: dict | None, path: str) -> Step:
        """The staged directory ``node`` at ``path`` ("" for the root) against
        the head's entry there."""
        merged = children(self.store, node, followed)
        heads = listing(self.store, head)
        if path and is_dir(head):
            assert head is not None
            meta = node.entry_meta()
            if (meta["mode"] != (head.get("mode") or 0) or meta.get("uid") != head.get("uid")
                    or meta.get("gid") != head.get("gid")):
                yield "M", path + "/"
        for name in sorted(set(merged) | set(heads)):
            child_path = f"{path}/{name}"
            h = heads.get(name)
            if name not in merged:
                assert h is not None
                yield self.every(h, child_path, "D")
                continue
            m, under = merged[name]
            if isinstance(m, dict):  # a committed entry showing through
                if h == m:
                    continue
                if h is None:
                    yield self.every(m, child_path, "A")
                elif m["type"] == DIR and h["type"] == DIR:
                    yield diff_trees(self.store, h["tree"], m["tree"], child_path)
                else:
                    yield "M", child_path
            elif isinstance(m, DirNode):
                if is_dir(h):
                    yield self.compare(m, under, h, child_path)
                else:
                    if h is not None:
                        yield "D", child_path
                    yield self.every(m, child_path, "A", under)
            elif h is None:
                yield "A", child_path
            elif h.get("type") == DIR:
                yield self.every(h, child_path, "D")
                yield "A", child_path
            elif not _same(m, h):
                yield "M", child_path

