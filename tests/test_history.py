"""The one tree walker (store/walk.py) and the history queries over it
(store/history.py), called directly on a real store: lookup, walk order,
files below a path, paths deeper than Python's recursion limit, diffs of
nested changes, log, show and provenance."""

from __future__ import annotations

import sys

import pytest

from trunkfs.store import history, walk
from trunkfs.store.diff import diff_trees
from trunkfs.store.errors import InvalidArgument, NotFound
from trunkfs.store.fsck import fsck
from trunkfs.store.objects import DIR, FILE, SYMLINK, Commit
from trunkfs.store.refs import Refs
from trunkfs.store.store import Store
from trunkfs.store.treeedit import TreeEditor

DEEP = 1500


@pytest.fixture
def refs(store: Store) -> Refs:
    return Refs(store)


def commit(store: Store, refs: Refs, repo: str, files: dict[str, bytes | str | None], *,
           branch: str = "main", message: str = "", provenance: list[dict] | None = None,
           mkdirs: tuple[str, ...] = ()) -> str:
    """Commit ``files`` (bytes: a file, str: a symlink target, None: remove)
    on top of the branch head, and move the branch."""
    info = refs.get_repo(repo)
    head, version = refs.read_branch(repo, branch)
    session = store.session()
    editor = TreeEditor(store, store.read_commit(head).tree if head else None)
    for path in mkdirs:
        editor.mkdir(path, 0o755, 7)
    for path, data in files.items():
        if data is None:
            editor.remove(path)
        elif isinstance(data, str):
            editor.put(path, {"type": SYMLINK, "mode": 0o777, "mtime": 5, "target": data})
        else:
            chunks, size = session.put_bytes(data)
            editor.put(path, {"type": FILE, "mode": 0o644, "mtime": 3, "size": size, "chunks": chunks})
    root = editor.write(session)
    session.flush()
    cid = store.write_commit(Commit(repo=repo, repo_id=info.id, tree=root["tree"],
                                    parents=[head] if head else [], message=message,
                                    provenance=provenance or [], size=root["size"],
                                    files=root["files"], dirs=root["dirs"]))
    refs.move_branch(repo, branch, cid, version)
    return cid


def root(store: Store, cid: str) -> dict:
    return store.read_commit(cid).root_entry()


# -- the walker ---------------------------------------------------------------------

SAMPLE = {"/b/y": b"y", "/a/x": b"xx", "/a/sub/z": b"zzz", "/c": b"c", "/l": "a/x"}


def test_lookup_finds_entries_and_says_which_part_is_missing(store: Store, refs: Refs) -> None:
    refs.create_repo("r")
    cid = commit(store, refs, "r", SAMPLE)
    top = root(store, cid)
    assert walk.lookup(store, top, []) is top
    assert walk.lookup(store, top, ["a", "sub", "z"])["size"] == 3
    assert walk.lookup(store, top, ["l"])["target"] == "a/x"
    with pytest.raises(NotFound, match=r"^r:/a/nope does not exist$"):
        walk.lookup(store, top, ["a", "nope", "deeper"], where="r:")
    with pytest.raises(NotFound, match=r"^r:/c is not a directory$"):
        walk.lookup(store, top, ["c", "x"], where="r:")


def test_walk_lists_parents_before_children_by_name(store: Store, refs: Refs) -> None:
    refs.create_repo("r")
    top = root(store, commit(store, refs, "r", SAMPLE))
    assert [p for p, _ in walk.walk(store, top)] == [
        "/a", "/a/sub", "/a/sub/z", "/a/x", "/b", "/b/y", "/c", "/l"]
    skip_a = walk.walk(store, top, descend=lambda path, entry: path != "/a")
    assert [p for p, _ in skip_a] == ["/a", "/b", "/b/y", "/c", "/l"]
    assert [p for p, _ in walk.children(store, walk.lookup(store, top, ["a"]), "/a")] == [
        "/a/sub", "/a/x"]
    # a file has no children; nor has a missing entry
    assert list(walk.children(store, walk.lookup(store, top, ["c"]))) == []
    assert walk.listing(store, None) == {}


def test_files_below_a_directory_and_a_file(store: Store, refs: Refs) -> None:
    refs.create_repo("r")
    top = root(store, commit(store, refs, "r", SAMPLE, mkdirs=("/empty",)))
    assert [p for p, _ in walk.files_below(store, top)] == ["/a/sub/z", "/a/x", "/b/y", "/c", "/l"]
    a = walk.lookup(store, top, ["a"])
    assert [p for p, _ in walk.files_below(store, a, "/a")] == ["/a/sub/z", "/a/x"]
    c = walk.lookup(store, top, ["c"])
    assert list(walk.files_below(store, c, "/c")) == [("/c", c)]
    assert list(walk.files_below(store, walk.lookup(store, top, ["empty"]))) == []


def deep_commit(store: Store, refs: Refs, repo: str, leaf: bytes, depth: int = DEEP) -> tuple[str, list[str]]:
    """A commit holding one file ``depth`` directories down (``d/d/.../f``),
    its trees written bottom-up by hand (TreeEditor recurses)."""
    info = refs.get_repo(repo)
    head, version = refs.read_branch(repo, "main")
    session = store.session()
    chunks, size = session.put_bytes(leaf)
    entry = {"name": "f", "type": FILE, "mode": 0o644, "mtime": 1, "size": size, "chunks": chunks}
    for _ in range(depth):
        tree = session.put_tree([entry])
        entry = {"name": "d", "type": DIR, "mode": 0o755, "mtime": 1, "tree": tree,
                 "size": size, "files": 1, "dirs": int(entry["type"] == DIR)}
    top = session.put_tree([entry])
    session.flush()
    cid = store.write_commit(Commit(repo=repo, repo_id=info.id, tree=top,
                                    parents=[head] if head else [], size=size, files=1, dirs=1))
    refs.move_branch(repo, "main", cid, version)
    return cid, ["d"] * depth + ["f"]


def test_paths_deeper_than_the_recursion_limit(store: Store, refs: Refs) -> None:
    assert DEEP > sys.getrecursionlimit()
    refs.create_repo("r")
    c1, parts = deep_commit(store, refs, "r", b"old")
    c2, _ = deep_commit(store, refs, "r", b"new")
    deep_path = "/" + "/".join(parts)
    top = root(store, c2)
    leaf = walk.lookup(store, top, parts)
    assert b"".join(store.iter_file(leaf)) == b"new"
    paths = [p for p, _ in walk.walk(store, top)]
    assert len(paths) == DEEP + 1 and paths[-1] == deep_path
    assert [p for p, _ in walk.files_below(store, top)] == [deep_path]
    assert list(diff_trees(store, store.read_commit(c1).tree, store.read_commit(c2).tree)) == [
        ("M", deep_path)]
    assert list(diff_trees(store, None, store.read_commit(c2).tree)) == [("A", deep_path)]
    at = history.resolve(refs, "r", "main")
    below = list(history.entries_below(store, history.lookup(store, at, [])))
    assert below[0][0] == "" and below[-1][0] == deep_path[1:]
    assert history.list_path(store, at, parts).entries[0]["size"] == 3
    report = fsck(store)
    assert report.ok and report.files == 2 and report.commits == 2


# -- diff ---------------------------------------------------------------------------

def test_diff_of_nested_changes_in_walk_order(store: Store, refs: Refs) -> None:
    refs.create_repo("r")
    c1 = commit(store, refs, "r", {"/a/b/c/same": b"s", "/a/b/c/changed": b"1", "/a/gone/x": b"x",
                                   "/a/gone/y/z": b"z", "/f2d": b"file", "/d2f/in": b"i",
                                   "/link": "a", "/keep/k": b"k"})
    c2 = commit(store, refs, "r", {"/a/b/c/changed": b"2", "/a/gone": None, "/a/b/new/n": b"n",
                                   "/f2d": None, "/d2f": None, "/link": "b"})
    c3 = commit(store, refs, "r", {"/f2d/inside": b"now a dir", "/d2f": b"now a file"})
    t1, t2, t3 = (store.read_commit(c).tree for c in (c1, c2, c3))
    assert list(diff_trees(store, t1, t2)) == [
        ("M", "/a/b/c/changed"), ("A", "/a/b/new/n"), ("D", "/a/gone/x"), ("D", "/a/gone/y/z"),
        ("D", "/d2f/in"), ("D", "/f2d"), ("M", "/link")]
    # a file replaced by a directory and the other way round, in one step
    assert list(diff_trees(store, t1, t3)) == [
        ("M", "/a/b/c/changed"), ("A", "/a/b/new/n"), ("D", "/a/gone/x"), ("D", "/a/gone/y/z"),
        ("D", "/d2f/in"), ("A", "/d2f"), ("D", "/f2d"), ("A", "/f2d/inside"), ("M", "/link")]
    assert list(diff_trees(store, t2, t2)) == []
    assert list(diff_trees(store, t1, None)) == [
        ("D", p) for p in ["/a/b/c/changed", "/a/b/c/same", "/a/gone/x", "/a/gone/y/z",
                           "/d2f/in", "/f2d", "/keep/k", "/link"]]


def test_diff_by_refs_and_against_the_parent(store: Store, refs: Refs) -> None:
    refs.create_repo("r")
    c1 = commit(store, refs, "r", {"/x": b"1"})
    c2 = commit(store, refs, "r", {"/x": b"2", "/y": b"y"})
    assert history.diff(store, refs, "r", "main", None).to_json() == {
        "from": c1, "to": c2, "changes": [{"status": "M", "path": "/x"}, {"status": "A", "path": "/y"}]}
    assert history.diff(store, refs, "r", c2, c1[:8]).to_json() == {
        "from": c2, "to": c1, "changes": [{"status": "M", "path": "/x"}, {"status": "D", "path": "/y"}]}
    first = history.diff(store, refs, "r", c1, None)
    assert (first.old, first.new, first.changes) == (None, c1, [("A", "/x")])
    refs.create_branch("r", "empty", None)
    assert history.diff(store, refs, "r", "empty", None).to_json() == {
        "from": None, "to": None, "changes": []}


# -- history queries ----------------------------------------------------------------------

def test_resolve_lookup_and_listing(store: Store, refs: Refs) -> None:
    refs.create_repo("r")
    cid = commit(store, refs, "r", SAMPLE)
    at = history.resolve(refs, "r", "main")
    assert at == history.Resolved("r", cid, "main")
    assert history.resolve(refs, "r", cid[:10]) == history.Resolved("r", cid, None)
    assert history.resolve(refs, "r", None).branch == "main"
    with pytest.raises(NotFound):
        history.resolve(refs, "nope", "main")

    listing = history.list_path(store, at, ["a"])
    assert listing.to_json() == {"commit": cid, "path": "/a", "entries": [
        {"name": "sub", "type": DIR, "mode": 0o755, "mtime": listing.entries[0]["mtime"],
         "size": 3, "files": 1},
        {"name": "x", "type": FILE, "mode": 0o644, "mtime": 3, "size": 2,
         "content": history.content_id(history.lookup(store, at, ["a", "x"]))}]}
    assert len(listing.entries[1]["content"]) == 32        # a file's content id: its chunk list's
    assert history.list_path(store, at, ["l"]).entries == [
        {"name": "l", "type": SYMLINK, "mode": 0o777, "mtime": 5, "target": "a/x"}]
    assert [e["name"] for e in history.list_path(store, at, []).entries] == ["a", "b", "c", "l"]

    assert history.lookup(store, at, []) == store.read_commit(cid).root_entry()
    assert history.lookup_file(store, at, ["a", "x"])["size"] == 2
    with pytest.raises(InvalidArgument, match=r"^r:/a is a directory, not a file$"):
        history.lookup_file(store, at, ["a"])
    with pytest.raises(InvalidArgument, match=r"^r:/l is a symlink, not a file$"):
        history.lookup_file(store, at, ["l"])
    with pytest.raises(NotFound, match=r"^r:/a/x is not a directory$"):
        history.lookup(store, at, ["a", "x", "y"])


def test_entries_below_have_relative_paths_parents_first(store: Store, refs: Refs) -> None:
    refs.create_repo("r")
    commit(store, refs, "r", SAMPLE)
    at = history.resolve(refs, "r", "main")
    a = history.lookup(store, at, ["a"])
    assert [(p, e["type"]) for p, e in history.entries_below(store, a)] == [
        ("", DIR), ("sub", DIR), ("sub/z", FILE), ("x", FILE)]
    x = history.lookup(store, at, ["a", "x"])
    assert list(history.entries_below(store, x)) == [("", x)]


def test_an_empty_branch_is_an_empty_root(store: Store, refs: Refs) -> None:
    refs.create_repo("r")
    at = history.resolve(refs, "r", "main")
    assert at.commit is None
    assert history.list_path(store, at, []).to_json() == {"commit": None, "path": "/", "entries": []}
    assert list(history.entries_below(store, history.lookup(store, at, []))) == [
        ("", history.empty_root())]
    with pytest.raises(NotFound, match=r"^r:/x does not exist$"):
        history.lookup(store, at, ["x"])
    assert history.log(store, at.commit) == []
    with pytest.raises(NotFound, match="has no commits yet"):
        history.show(store, at)
    assert history.provenance(store, at) == []


def test_log_follows_first_parents_with_a_limit_and_show(store: Store, refs: Refs) -> None:
    refs.create_repo("r")
    ids = [commit(store, refs, "r", {"/f": bytes([i])}, message=f"m{i}") for i in range(4)]
    full = history.log(store, ids[-1])
    assert [c["id"] for c in full] == ids[::-1]
    assert [c["message"] for c in full] == ["m3", "m2", "m1", "m0"]
    assert full[0]["parents"] == [ids[2]] and full[-1]["parents"] == []
    assert set(full[0]) == {"id", "repo", "parents", "message", "author", "time", "origin",
                            "provenance", "tree", "size", "files", "daemon"}
    assert [c["id"] for c in history.log(store, ids[-1], limit=2)] == [ids[3], ids[2]]
    shown = history.show(store, history.resolve(refs, "r", ids[1][:12]))
    assert shown == dict(full[2], branch=None)
    assert history.show(store, history.resolve(refs, "r", "main"))["branch"] == "main"


def test_provenance_walks_upstream_through_the_dag(store: Store, refs: Refs) -> None:
    for name in ("raw", "other", "clean", "model"):
        refs.create_repo(name)
    raw = commit(store, refs, "raw", {"/r": b"r"})
    other = commit(store, refs, "other", {"/o": b"o"})
    clean = commit(store, refs, "clean", {"/c": b"c"},
                   provenance=[{"repo": "raw", "commit": raw}])
    model = commit(store, refs, "model", {"/m": b"m"},
                   provenance=[{"repo": "clean", "commit": clean}, {"repo": "other", "commit": other},
                               {"repo": "raw", "commit": raw}])
    steps = history.provenance(store, history.resolve(refs, "model", "main"))
    assert [(s["depth"], s["repo"], s["commit"]) for s in steps] == [
        (0, "model", model), (1, "clean", clean), (2, "raw", raw), (1, "other", other)]
    assert steps[1]["provenance"] == [{"repo": "raw", "commit": raw}]
    assert steps[0]["origin"] == {"kind": "user"}


def test_repo_summaries(store: Store, refs: Refs) -> None:
    refs.create_repo("b")
    refs.create_repo("a")
    cid = commit(store, refs, "a", {"/f": b"12345"})
    refs.create_branch("a", "dev", cid)
    summaries = history.repo_summaries(store, refs)
    assert [(s["name"], s["branches"], s["head"], s["size"]) for s in summaries] == [
        ("a", ["dev", "main"], cid, 5), ("b", ["main"], None, 0)]
