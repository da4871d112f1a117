"""Editing a tree: apply puts, mkdirs and removals to a base tree and write
only the directories that changed (bottom-up), reusing every unchanged
subtree by id.  :meth:`TreeEditor.seal` writes the changed directories off
one path early and keeps only their entries (a tree id each), so an edit
of a million entries arriving in path order holds a few directories in
memory, not the million."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

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
    def __init__(self, store: Store, root_tree: str | None,
                 read_tree: Callable[[str], list[dict]] | None = None) -> None:
        self.store = store
        # how a directory is read when an edit reaches it: a session's own
        # reader also reads the trees it wrote (``WriteSession.read_tree``)
        self._read_tree = read_tree or store.read_tree
        meta = {"name": "", "type": DIR, "mode": 0o755, "mtime": _now_ns()}
        if root_tree:
            meta["tree"] = root_tree
            self.root = self._load(meta)
        else:
            self.root = _Dir({}, meta)
            self.root.dirty = True

    def _load(self, entry: dict) -> _Dir:
        entries: dict[str, dict | _Dir] = {e["name"]: e for e in self._read_tree(entry["tree"])}
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
        """Place a copy of an entry at ``path``, replacing what is there."""
        parts = split_path(path)
        self.place(parts, dict(entry, name=parts[-1] if parts else ""))

    def place(self, parts: Sequence[str], entry: dict) -> None:
        """Place ``entry`` itself (named ``parts[-1]``; a directory's by its
        tree) at ``parts``, replacing what is there; it is not copied, and
        changes made to it before :meth:`write` are written."""
        if not parts:
            raise InvalidArgument("cannot replace the root directory with a file")
        chain, parent = self._walk(list(parts[:-1]), create=True)
        parent.entries[parts[-1]] = entry
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

    def seal(self, session: WriteSession, keep: Sequence[str]) -> int:
        """Write every changed directory that is not on the path ``keep``
        (nor above it) and keep only its entry; return how many were
        written.  An edit that reaches one later reads it again."""
        on_path: list[_Dir] = []
        node = self.root
        for name in keep:
            child = node.entries.get(name)
            if not isinstance(child, _Dir):
                break
            on_path.append(child)
            node = child
        keep_ids = {id(self.root), *map(id, on_path)}
        written = 0
        # post-order over (parent, name, dir), an explicit stack: any depth
        stack: list[tuple[_Dir, str, _Dir, bool]] = [
            (self.root, name, child, False) for name, child in self.root.entries.items()
            if isinstance(child, _Dir)]
        while stack:
            parent, name, d, children_done = stack.pop()
            if not children_done:
                stack.append((parent, name, d, True))
                stack.extend((d, n, c, False) for n, c in d.entries.items() if isinstance(c, _Dir))
                continue
            if id(d) in keep_ids:
                continue
            if d.dirty or "tree" not in d.meta:
                if any(isinstance(c, _Dir) for c in d.entries.values()):
                    continue      # a directory below is on the path: this one stays open
                self._write_node(d, session)
                written += 1
            parent.entries[name] = d.meta
        return written

    @staticmethod
    def _write_node(node: _Dir, session: WriteSession) -> None:
        """Write one directory whose changed children are written already."""
        entries = [child.meta if isinstance(child, _Dir) else child for child in node.entries.values()]
        meta = {k: v for k, v in node.meta.items() if k != "links"}
        meta.update(tree=session.put_tree(entries), **dir_counts(entries))
        node.meta = meta
        node.dirty = False
