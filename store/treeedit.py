"""Editing a tree: apply puts, mkdirs and removals to a base tree and write
only the directories that changed (bottom-up), reusing every unchanged
subtree by id."""

from __future__ import annotations

import time

from .errors import InvalidArgument, NotFound
from .names import join_path, split_path
from .objects import DIR, dir_counts
from .store import Store
from .writer import WriteSession


class _Dir:
    __slots__ = ("entries", "meta", "dirty")

    def __init__(self, entries: dict[str, "dict | _Dir"], meta: dict) -> None:
        self.entries = entries
        self.meta = meta  # name, mode, mtime, and "tree" when unchanged
        self.dirty = False


def _now_ns() -> int:
    return time.time_ns()


class TreeEditor:
    def __init__(self, store: Store, root_tree: str | None) -> None:
        self.store = store
        meta = {"name": "", "type": DIR, "mode": 0o755, "mtime": _now_ns()}
        if root_tree:
            meta["tree"] = root_tree
            self.root = self._load(meta)
        else:
            self.root = _Dir({}, meta)
            self.root.dirty = True

    def _load(self, entry: dict) -> _Dir:
        entries: dict[str, dict | _Dir] = {e["name"]: e for e in self.store.read_tree(entry["tree"])}
        return _Dir(entries, dict(entry))

    def _child_dir(self, parent: _Dir, name: str, create: bool, path: list[str]) -> _Dir:
        cur = parent.entries.get(name)
        if isinstance(cur, _Dir):
            return cur
        if cur is not None and cur["type"] == DIR:
            node = self._load(cur)
            parent.entries[name] = node
            return node
        if not create:
            raise NotFound(f"{join_path(path)} is not a directory")
        node = _Dir({}, {"name": name, "type": DIR, "mode": 0o755, "mtime": _now_ns()})
        node.dirty = True
        parent.entries[name] = node
        return node

    def _walk(self, parts: list[str], create: bool) -> tuple[list[_Dir], _Dir]:
        chain = [self.root]
        node = self.root
        for i, name in enumerate(parts):
            node = self._child_dir(node, name, create, parts[: i + 1])
            chain.append(node)
        return chain, node

    @staticmethod
    def _touch(chain: list[_Dir]) -> None:
        for d in chain:
            d.dirty = True

    def get(self, path: str) -> "dict | None":
        parts = split_path(path)
        if not parts:
            return self.root.meta
        try:
            _, parent = self._walk(parts[:-1], create=False)
        except NotFound:
            return None
        cur = parent.entries.get(parts[-1])
        return cur.meta if isinstance(cur, _Dir) else cur

    def put(self, path: str, entry: dict) -> None:
        """Place a file or symlink entry at ``path``, replacing what is there."""
        parts = split_path(path)
        if not parts:
            raise InvalidArgument("cannot replace the root directory with a file")
        chain, parent = self._walk(parts[:-1], create=True)
        parent.entries[parts[-1]] = dict(entry, name=parts[-1])
        self._touch(chain)

    def mkdir(self, path: str, mode: int | None = None, mtime: int | None = None) -> None:
        """Make sure ``path`` is a directory (merging into an existing one)."""
        parts = split_path(path)
        chain, node = self._walk(parts, create=True) if parts else ([self.root], self.root)
        if not parts:
            pass
        else:
            parent = chain[-2]
            cur = parent.entries.get(parts[-1])
            if not isinstance(cur, _Dir):  # a file was in the way: replace it
                node = _Dir({}, {"name": parts[-1], "type": DIR, "mode": 0o755, "mtime": _now_ns()})
                parent.entries[parts[-1]] = node
                chain[-1] = node
        if mode is not None:
            node.meta["mode"] = mode
        if mtime is not None:
            node.meta["mtime"] = mtime
        self._touch(chain)

    def remove(self, path: str) -> None:
        parts = split_path(path)
        if not parts:
            raise InvalidArgument("cannot remove the root directory")
        try:
            chain, parent = self._walk(parts[:-1], create=False)
        except NotFound:
            raise NotFound(f"{join_path(parts)} does not exist") from None
        if parts[-1] not in parent.entries:
            raise NotFound(f"{join_path(parts)} does not exist")
        del parent.entries[parts[-1]]
        self._touch(chain)

    def write(self, session: WriteSession) -> dict:
        """Write every changed directory, children before parents; return the
        root entry (tree, size, files).  An explicit stack, not recursion, so
        a chain of directories of any depth writes."""
        stack: list[tuple[_Dir, bool]] = [(self.root, False)]
        while stack:
            node, children_done = stack.pop()
            if not node.dirty and "tree" in node.meta:
                continue
            if not children_done:
                stack.append((node, True))
                stack.extend((child, False) for child in node.entries.values() if isinstance(child, _Dir))
                continue
            self._write_node(node, session)
        return self.root.meta

    @staticmethod
    def _write_node(node: _Dir, session: WriteSession) -> None:
        """Write one directory whose changed children are written already."""
        entries = [child.meta if isinstance(child, _Dir) else child for child in node.entries.values()]
        meta = {k: v for k, v in node.meta.items() if k != "links"}
        meta.update(tree=session.put_tree(entries), **dir_counts(entries))
        node.meta = meta
        node.dirty = False
