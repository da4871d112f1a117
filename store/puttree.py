"""The entries of one ``put``, written to trees as they arrive and grafted
onto the branch head at commit.

A put of a million files must not hold a million entries until its commit.
The entries go into a tree of their own (``TreeEditor`` over nothing) as
they arrive; every ``SEAL_EVERY`` entries the directories the stream has
left are written to the session and dropped from memory (``seal``), so a
put in path order holds the directories on one path.

The commit may build its tree more than once (another writer moved the
head: ``daemon.commits``), so the put's own tree is kept apart from the
head and grafted onto each head it is tried against (``graft``): where
the head has nothing (or no directory) at a path, the put's subtree is
placed whole by its tree id; where both have a directory, the graft goes
down into it, in path order, sealing as it goes.  A directory the put
named itself takes the mode and mtime it sent; one it only passed through
keeps the head's.
"""

from __future__ import annotations

from collections.abc import Iterator

from .errors import NotFound
from .names import join_path, split_path
from .objects import DIR
from .treeedit import TreeEditor
from .walk import is_dir
from .writer import WriteSession

SEAL_EVERY = 16384   # entries placed between two seals


class PutTree:
    def __init__(self, session: WriteSession) -> None:
        self.session = session
        self.editor = TreeEditor(session.store, None, read_tree=session.read_tree)
        self.named: dict[str, tuple[int | None, int | None]] = {}   # path -> (mode, mtime) of dirs it sent
        self.placed = 0
        self.root: dict | None = None

    def mkdir(self, path: str, mode: int | None, mtime: int | None) -> None:
        self.editor.mkdir(path, mode, mtime)
        self.named[path] = (mode, mtime)
        self.placed += 1

    def place(self, path: str, entry: dict) -> None:
        """``entry`` itself (it may still get its size and chunks) at ``path``."""
        parts = split_path(path)
        entry["name"] = parts[-1] if parts else ""
        self.editor.place(parts, entry)
        self.placed += 1

    def due(self) -> bool:
        return self.placed >= SEAL_EVERY

    def seal(self, keep: str) -> int:
        """Write the directories off the path ``keep`` (complete entries only:
        call once every file placed so far has its chunks)."""
        self.placed = 0
        return self.editor.seal(self.session, split_path(keep))

    def finish(self) -> None:
        """Write what is left; the put's trees are stored (readable) after this."""
        self.root = self.editor.write(self.session)
        self.editor = TreeEditor(self.session.store, None)   # its directories are written: let them go
        self.session.trees.flush()

    def graft(self, base: dict | None, removes: list[str]) -> dict:
        """The root entry of ``base`` with ``removes`` gone and this put over it."""
        assert self.root is not None, "finish() first"
        if (base is None or not base.get("tree")) and not removes:
            return self.root
        store, session = self.session.store, self.session
        editor = TreeEditor(store, base["tree"] if base else None, read_tree=session.read_tree)
        for path in removes:
            try:
                editor.remove(path)
            except NotFound:      # gone already: the result is the one asked for
                pass
        if "/" in self.named:
            editor.mkdir("/", *self.named["/"])
        placed = 0
        # depth first through the put's tree; each directory's children in order
        stack: list[Iterator[tuple[str, dict]]] = [iter([("/", self.root)])]
        first = True
        while stack:
            for path, entry in stack[-1]:
                if first:
                    first = False
                elif is_dir(entry):
                    here = editor.get(path)
                    if here is None or here.get("type") != DIR:
                        editor.place(split_path(path), entry)   # the put's subtree, whole
                        placed += 1
                        continue
                    editor.mkdir(path, *self.named.get(path, (None, None)))
                else:
                    editor.place(split_path(path), entry)
                    placed += 1
                    continue
                if placed >= SEAL_EVERY:
                    editor.seal(session, split_path(path))
                    placed = 0
                children = session.read_tree(entry["tree"]) if entry.get("tree") else []
                stack.append(_paths(split_path(path), children))
                break
            else:
                stack.pop()
        return editor.write(session)


def _paths(parts: list[str], entries: list[dict]) -> Iterator[tuple[str, dict]]:
    """(path, entry) of each of a directory's entries, as they are reached."""
    for e in entries:
        yield join_path([*parts, e["name"]]), e
