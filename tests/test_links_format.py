"""The tree format of hard links and special files: which format version a
tree is written in (trees without them byte for byte as before), the shape
checks, and the link walker's counts through TreeEditor edits."""

from __future__ import annotations

import json

from trunkfs.store.entrycheck import entry_problem
from trunkfs.store.links import link_census, link_names
from trunkfs.store.objects import (DIR, FILE, TREE_VERSION, TREE_VERSION_BYTES, TREE_VERSION_LINKS,
                                   decode_tree, encode_tree, new_link_id)
from trunkfs.store.treeedit import TreeEditor

PLAIN = {"name": "f", "type": FILE, "mode": 0o644, "mtime": 1, "size": 0, "chunks": []}


def version(raw: bytes) -> int:
    return json.loads(raw)["v"]


def test_format_versions_and_older_trees_unchanged():
    plain = encode_tree([PLAIN])
    assert version(plain) == TREE_VERSION
    assert plain == b'{"entries":[{"chunks":[],"mode":420,"mtime":1,"name":"f","size":0,"type":"file"}],"v":1}'
    assert version(encode_tree([dict(PLAIN, name="caf\udce9")])) == TREE_VERSION_BYTES
    link = new_link_id()
    for entries in ([dict(PLAIN, link=link)], [{"name": "p", "type": "fifo", "mode": 0o644, "mtime": 1}],
                    [{"name": "d", "type": DIR, "mode": 0o755, "mtime": 1, "tree": "ab" * 32, "links": 2}],
                    [dict(PLAIN, name="caf\udce9", link=link)]):
        raw = encode_tree(entries)
        assert version(raw) == TREE_VERSION_LINKS
        assert decode_tree(raw, "t") == entries


def test_entry_shapes():
    ok = [{"name": "c", "type": "char", "mode": 0o600, "mtime": 1, "rdev": 259},
          {"name": "b", "type": "block", "mode": 0o600, "mtime": 1, "rdev": 0},
          {"name": "s", "type": "socket", "mode": 0o755, "mtime": 1},
          {"name": "l", "type": "symlink", "mode": 0o777, "mtime": 1, "target": "x", "link": "0123456789abcdef"},
          dict(PLAIN, link=new_link_id())]
    for e in ok:
        assert entry_problem(e) is None, e
    bad = [{"name": "c", "type": "char", "mode": 0o600, "mtime": 1},
           {"name": "c", "type": "char", "mode": 0o600, "mtime": 1, "rdev": -1},
           {"name": "c", "type": "block", "mode": 0o600, "mtime": 1, "rdev": True},
           dict(PLAIN, link="0123456789ABCDEF"), dict(PLAIN, link="01234"), dict(PLAIN, link=None or 5),
           {"name": "d", "type": DIR, "mode": 0o755, "mtime": 1, "tree": "ab" * 32, "links": -1},
           {"name": "x", "type": "whiteout", "mode": 0, "mtime": 1}]
    for e in bad:
        assert entry_problem(e) is not None, e


def test_link_walker_counts_and_editor_keeps_the_directory_counts(store):
    session = store.session()
    g1, g2 = new_link_id(), new_link_id()
    editor = TreeEditor(store, None)
    for path, link in (("/a/one", g1), ("/a/b/c/two", g1), ("/three", g1), ("/x/p", g2), ("/y/p", g2),
                       ("/plain/f", None)):
        editor.put(path, dict(PLAIN, **({"link": link} if link else {})))
    for i in range(50):                       # a big directory without links is never read
        editor.put(f"/nolinks/f{i}", PLAIN)
    root = editor.write(session)
    assert root["links"] == 5
    listing = {e["name"]: e for e in store.read_tree(root["tree"])}
    assert listing["a"]["links"] == 2 and "links" not in listing["plain"] and "links" not in listing["nolinks"]
    assert link_census(store, root) == {g1: 3, g2: 2}
    assert sorted(p for p, _ in link_names(store, root, {g2})) == ["/x/p", "/y/p"]
    read: list[str] = []
    real = store.tree_index
    store.tree_index = lambda tree: read.append(tree) or real(tree)   # type: ignore[method-assign]
    try:
        link_census(store, root)
    finally:
        del store.tree_index
    assert listing["nolinks"]["tree"] not in read and listing["plain"]["tree"] not in read
    editor = TreeEditor(store, root["tree"])
    editor.remove("/three")
    editor.remove("/y/p")
    root2 = editor.write(session)
    assert root2["links"] == 3 and link_census(store, root2) == {g1: 2, g2: 1}
    session.flush()
