"""Differential test of tree editing and diff: random sequences of puts,
mkdirs and removals applied to TreeEditor and to a plain dict model."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from trunkfs.store.backends.local import LocalBackend
from trunkfs.store.diff import diff_trees
from trunkfs.store.errors import NotFound
from trunkfs.store.objects import DIR, FILE
from trunkfs.store.store import Store
from trunkfs.store.treeedit import TreeEditor

NAMES = st.sampled_from(["a", "b", "c", "d"])
PATHS = st.lists(NAMES, min_size=1, max_size=3).map(lambda p: "/" + "/".join(p))
CONTENT = st.sampled_from([b"", b"x", b"hello", b"x" * 5000])


def walk(store: Store, tree: str | None, prefix: str = "") -> dict[str, object]:
    out: dict[str, object] = {}
    if tree is None:
        return out
    for e in store.read_tree(tree):
        path = f"{prefix}/{e['name']}"
        if e["type"] == DIR:
            out[path] = DIR
            out.update(walk(store, e["tree"], path))
        else:
            out[path] = b"".join(store.iter_file(e))
    return out


class TreeModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.tmp = Path(tempfile.mkdtemp(prefix="trunkfs-model-"))
        self.store = Store(LocalBackend(str(self.tmp / "store")), str(self.tmp / "index"),
                           str(self.tmp / "tmp")).open()
        self.model: dict[str, object] = {}   # path -> bytes or DIR
        self.tree: str | None = None
        self.committed: dict[str, object] = {}

    def teardown(self) -> None:
        self.store.close()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def _apply(self, fn) -> bool:
        editor = TreeEditor(self.store, self.tree)
        session = self.store.session()
        try:
            fn(editor, session)
        except NotFound:
            session.abort()
            return False
        root = editor.write(session)
        session.flush()
        old = self.tree
        self.tree = root["tree"]
        files = {p: v for p, v in self.model.items() if v != DIR}
        assert root["files"] == len(files)
        assert root["size"] == sum(len(v) for v in files.values())
        # the diff against the previous version matches the model's
        expected = {}
        before = {p: v for p, v in self.committed.items() if v != DIR}
        for p in before.keys() | files.keys():
            if p not in files:
                expected[p] = "D"
            elif p not in before:
                expected[p] = "A"
            elif before[p] != files[p]:
                expected[p] = "M"
        assert dict((p, s) for s, p in diff_trees(self.store, old, self.tree)) == expected
        self.committed = dict(self.model)
        return True

    def _drop_below(self, path: str) -> None:
        for p in [p for p in self.model if p == path or p.startswith(path + "/")]:
            del self.model[p]

    def _make_parents(self, path: str) -> None:
        parts = path.strip("/").split("/")
        for i in range(1, len(parts)):
            parent = "/" + "/".join(parts[:i])
            if self.model.get(parent) not in (None, DIR):
                self._drop_below(parent)
            self.model[parent] = DIR

    @rule(path=PATHS, data=CONTENT)
    def put(self, path: str, data: bytes) -> None:
        def edit(editor: TreeEditor, session) -> None:
            chunks, size = session.put_bytes(data)
            editor.put(path, {"type": FILE, "mode": 0o644, "mtime": 1, "size": size, "chunks": chunks})
        self._make_parents(path)
        self._drop_below(path)
        self.model[path] = data
        assert self._apply(edit)

    @rule(path=PATHS)
    def mkdir(self, path: str) -> None:
        self._make_parents(path)
        if self.model.get(path) != DIR:
            self._drop_below(path)
            self.model[path] = DIR
        assert self._apply(lambda editor, session: editor.mkdir(path))

    @rule(path=PATHS)
    def remove(self, path: str) -> None:
        exists = path in self.model
        self._drop_below(path)
        done = self._apply(lambda editor, session: editor.remove(path))
        assert done == exists

    @invariant()
    def tree_matches_model(self) -> None:
        assert walk(self.store, self.tree) == self.model


TreeModel.TestCase.settings = settings(max_examples=40, stateful_step_count=15, deadline=None,
                                       suppress_health_check=[HealthCheck.too_slow])
test_tree_editing_matches_a_dict_model = TreeModel.TestCase
