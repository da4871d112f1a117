"""In-process tests of merge and revert over a real store: the merge base,
the three-way merge by path (clean, conflicts, strategies, directories),
merge commits and fast-forwards through the one commit path, and reverts."""

from __future__ import annotations

import os
import random

import pytest
import trio

from tests.inprocess import CommitParts, PutFiles
from trunkfs.store import history, walk
from trunkfs.store.changes import CommitMeta, author_of
from trunkfs.store.errors import InvalidArgument, NothingToCommit, NotFound
from trunkfs.store.objects import EMPTY_TREE_ID, Commit
from trunkfs.store.merge import MergeConflict, is_ancestor, merge_base
from trunkfs.store.mergechange import MergeChange, RevertChange
from trunkfs.store.store import Store

REPO = "r"
BAD_NAME = os.fsdecode(b"caf\xe9.txt")   # not UTF-8: a lone surrogate in memory


class Repo(CommitParts):
    def __init__(self, store: Store) -> None:
        super().__init__(store, workers=2)
        self.refs.create_repo(REPO)
        self.author = author_of(os.getuid())

    def head(self, branch: str = "main") -> str | None:
        return self.refs.read_branch(REPO, branch)[0]

    def branch(self, name: str, start: str = "main") -> None:
        self.refs.create_branch(REPO, name, self.head(start))

    async def write(self, files: dict[str, bytes | None], branch: str = "main") -> str:
        done = await self.commits.commit(REPO, branch, PutFiles(self.store, files),
                                         CommitMeta(message=f"write {sorted(files)}", author=self.author))
        return done.id

    async def merge(self, source: str, into: str = "main", strategy: str | None = None) -> str:
        sid = self.head(source) or source
        change = MergeChange(self.store, f"{REPO}@{into}", sid, strategy)
        done = await self.commits.commit(REPO, into, change, CommitMeta(
            message=f"merge {source}", author=self.author, extra_parents=[sid]))
        return done.id

    async def revert(self, commit: str, branch: str = "main") -> str:
        change = RevertChange(self.store, f"{REPO}@{branch}", commit)
        done = await self.commits.commit(REPO, branch, change, CommitMeta(
            message=f"revert {commit[:12]}", author=self.author, allow_empty=False))
        return done.id

    def files(self, commit: str | None = None) -> dict[str, bytes]:
        """Every file of a commit (the head of main by default) with its bytes."""
        root = history.root_of(self.store, commit or self.head())
        return {p: b"".join(self.store.iter_file(e)) for p, e in walk.files_below(self.store, root)
                if e["type"] == "file"}


@pytest.fixture
def repo(store: Store) -> Repo:
    return Repo(store)


async def test_merge_base_over_both_histories(repo: Repo) -> None:
    root = await repo.write({"/a": b"1"})
    repo.branch("f")
    m1 = await repo.write({"/a": b"2"})
    f1 = await repo.write({"/b": b"1"}, "f")
    assert merge_base(repo.store, m1, f1) == root
    assert merge_base(repo.store, m1, root) == root and merge_base(repo.store, root, m1) == root
    assert merge_base(repo.store, m1, m1) == m1
    merged = await repo.merge("f")
    assert repo.store.read_commit(merged).parents == [m1, f1]
    f2 = await repo.write({"/c": b"1"}, "f")
    assert merge_base(repo.store, merged, f2) == f1     # through the merge's second parent
    assert is_ancestor(repo.store, f1, merged) and not is_ancestor(repo.store, f2, merged)
    repo.refs.create_branch(REPO, "other", None)
    lone = await repo.write({"/z": b"1"}, "other")
    assert merge_base(repo.store, lone, merged) is None


async def test_the_merge_base_is_the_nearest_though_a_shorter_path_reaches_an_older_one(repo: Repo) -> None:
    x = await repo.write({"/x": b"0"})
    repo.branch("a")
    repo.branch("y")
    a = await repo.write({"/a": b"0"}, "a")
    y = await repo.write({"/y": b"0"}, "y")
    repo.branch("c", "a")
    for i in range(3):
        await repo.write({f"/c{i}": b"0"}, "c")
    c = await repo.merge("y", into="c")     # two parents from c to x, four to a
    assert merge_base(repo.store, a, c) == a and merge_base(repo.store, c, a) == a
    assert is_ancestor(repo.store, a, c) and is_ancestor(repo.store, y, c)
    assert not is_ancestor(repo.store, c, a) and merge_base(repo.store, y, a) == x


def test_merge_base_against_every_ancestor_on_random_histories(store: Store) -> None:
    """Random DAGs with commit times in any order (daemons' clocks apart):
    the merge base is always a common ancestor below no other one."""
    rng = random.Random(12)
    tree = EMPTY_TREE_ID.hex()
    for _ in range(20):
        ids: list[str] = []
        for i in range(40):
            parents = rng.sample(ids, min(len(ids), rng.choice([1, 1, 1, 2]))) if ids and rng.random() > 0.05 else []
            ids.append(store.write_commit(Commit(repo=REPO, repo_id="x", tree=tree, parents=parents,
                                                 message=f"{i} {rng.random()}", time=rng.uniform(0, 1e6))))

        def ancestors(cid: str) -> set[str]:
            seen, todo = {cid}, [cid]
            while todo:
                for p in store.read_commit(todo.pop()).parents:
                    if p not in seen:
                        seen.add(p)
                        todo.append(p)
            return seen
        for _ in range(30):
            a, b = rng.choice(ids), rng.choice(ids)
            common = ancestors(a) & ancestors(b)
            best = {c for c in common if not any(o != c and c in ancestors(o) for o in common)}
            base = merge_base(store, a, b)
            assert (base in best) if best else base is None, (a, b)
            assert is_ancestor(store, a, b) == (a in ancestors(b))


async def test_three_way_merge_takes_both_sides_changes(repo: Repo) -> None:
    await repo.write({"/same": b"s", "/ours": b"o0", "/theirs": b"t0", "/d/keep": b"k",
                      "/d/gone": b"g", "/both": b"b0"})
    repo.branch("f")
    m = await repo.write({"/ours": b"o1", "/d/new-here": b"n", "/both": b"b1"})
    f = await repo.write({"/theirs": b"t1", "/d/gone": None, "/e/x": b"x", "/both": b"b1"}, "f")
    merged = await repo.merge("f")
    assert repo.files() == {"/same": b"s", "/ours": b"o1", "/theirs": b"t1", "/d/keep": b"k",
                            "/d/new-here": b"n", "/e/x": b"x", "/both": b"b1"}
    commit = repo.store.read_commit(merged)
    assert commit.parents == [m, f]
    assert (commit.files, commit.size) == (7, 10)
    # diff across the merge, from each parent
    assert history.diff_commits(repo.store, m, merged).changes == [
        ("D", "/d/gone"), ("A", "/e/x"), ("M", "/theirs")]
    assert history.diff_commits(repo.store, f, merged).changes == [
        ("A", "/d/new-here"), ("M", "/ours")]
    assert [c["id"] for c in history.log(repo.store, merged)][:2] == [merged, m]


async def test_conflicts_change_nothing_and_name_every_path(repo: Repo) -> None:
    await repo.write({"/a": b"0", "/d/b": b"0", "/c": b"0", "/" + BAD_NAME: b"0", "/ok": b"0"})
    repo.branch("f")
    m = await repo.write({"/a": b"main", "/d/b": b"main", "/c": None, "/" + BAD_NAME: b"main",
                          "/ok": b"main"})
    await repo.write({"/a": b"f", "/d/b": b"f", "/c": b"f", "/" + BAD_NAME: b"f"}, "f")
    with pytest.raises(MergeConflict) as caught:
        await repo.merge("f")
    want = sorted(["/a", "/d/b", "/c", "/" + BAD_NAME])
    assert caught.value.details() == {"paths": want}
    assert caught.value.code == "conflict"
    for path in want:
        assert path in str(caught.value)
    assert "/ok" not in caught.value.details()["paths"]
    assert repo.head() == m


async def test_a_conflict_message_shows_twenty_paths_and_a_count(repo: Repo) -> None:
    await repo.write({f"/f{i:02}": b"0" for i in range(25)})
    repo.branch("f")
    await repo.write({f"/f{i:02}": b"m" for i in range(25)})
    await repo.write({f"/f{i:02}": b"t" for i in range(25)}, "f")
    with pytest.raises(MergeConflict) as caught:
        await repo.merge("f")
    assert len(caught.value.details()["paths"]) == 25
    assert "/f19" in str(caught.value) and "/f20" not in str(caught.value)
    assert "and 5 more" in str(caught.value)


@pytest.mark.parametrize("strategy", ["ours", "theirs"])
async def test_a_strategy_settles_every_conflict_one_way(repo: Repo, strategy: str) -> None:
    await repo.write({"/a": b"0", "/d/b": b"0", "/c": b"0"})
    repo.branch("f")
    m = await repo.write({"/a": b"main", "/d/b": b"main", "/main-only": b"m"})
    f = await repo.write({"/a": b"f", "/d/b": None, "/f-only": b"f"}, "f")
    sid = repo.head("f")
    change = MergeChange(repo.store, "r@main", sid or "", strategy)
    done = await repo.commits.commit(REPO, "main", change, CommitMeta(
        message="m", author=repo.author, extra_parents=[f]))
    assert change.resolved == ["/a", "/d/b"]
    assert done.commit.parents == [m, f]
    if strategy == "ours":
        assert repo.files() == {"/a": b"main", "/d/b": b"main", "/c": b"0", "/main-only": b"m",
                                "/f-only": b"f"}
    else:
        assert repo.files() == {"/a": b"f", "/c": b"0", "/main-only": b"m", "/f-only": b"f"}


async def test_directories_merge_by_path(repo: Repo) -> None:
    await repo.write({"/d/x": b"0", "/d/y": b"0", "/e/x": b"0", "/g/x": b"0"})
    repo.branch("f")
    # main deletes d whole and adds to g; f adds a file in d, edits g/x, deletes e
    await repo.write({"/d": None, "/g/new": b"n"})
    await repo.write({"/d/z": b"f", "/g/x": b"1", "/e": None}, "f")
    await repo.merge("f")
    assert repo.files() == {"/d/z": b"f", "/g/new": b"n", "/g/x": b"1"}


async def test_deleting_a_directory_whose_file_the_other_side_changed_conflicts(repo: Repo) -> None:
    await repo.write({"/d/x": b"0", "/d/y": b"0"})
    repo.branch("f")
    await repo.write({"/d": None})
    await repo.write({"/d/x": b"1"}, "f")
    with pytest.raises(MergeConflict) as caught:
        await repo.merge("f")
    assert caught.value.details() == {"paths": ["/d/x"]}


async def test_a_file_against_a_directory_conflicts_at_its_path(repo: Repo) -> None:
    await repo.write({"/p": b"0"})
    repo.branch("f")
    await repo.write({"/p": b"1"})
    await repo.write({"/p": None}, "f")
    await repo.write({"/p/inner": b"d"}, "f")
    with pytest.raises(MergeConflict) as caught:
        await repo.merge("f")
    assert caught.value.details() == {"paths": ["/p"]}


async def test_merging_deep_paths(repo: Repo) -> None:
    deep = "/" + "/".join(["d"] * 1200)    # deeper than Python's recursion limit
    await repo.write({deep + "/x": b"0", deep + "/y": b"0"})
    repo.branch("f")
    await repo.write({deep + "/x": b"1"})
    await repo.write({deep + "/y": b"1"}, "f")
    await repo.merge("f")
    assert repo.files() == {deep + "/x": b"1", deep + "/y": b"1"}


async def test_merging_what_the_branch_has_is_nothing_to_commit(repo: Repo) -> None:
    await repo.write({"/a": b"0"})
    repo.branch("f")
    await repo.write({"/a": b"1"})
    with pytest.raises(NothingToCommit):
        await repo.merge("f")


async def test_fast_forward_moves_the_branch_and_announces_it(repo: Repo) -> None:
    base = await repo.write({"/a": b"0"})
    repo.branch("f")
    f = await repo.write({"/a": b"1"}, "f")
    feed = repo.events.subscribe()
    refused = await repo.commits.fast_forward(REPO, "main", f, lambda head: head is None)
    assert refused is None and repo.head() == base
    done = await repo.commits.fast_forward(REPO, "main", f,
                                           lambda head: is_ancestor(repo.store, head, f))
    again = await repo.commits.fast_forward(REPO, "main", f, lambda head: True)
    assert again is not None and again.id == f   # there already: not announced twice
    events = []
    while True:
        try:
            events.append(feed.receive_nowait())
        except trio.WouldBlock:
            break
    assert done is not None and done.id == f and repo.head() == f
    assert [e["commit"] for e in events if e.get("type") == "commit"] == [f]
    assert events[-1].get("fast_forward") is True


async def test_revert_undoes_one_commit(repo: Repo) -> None:
    await repo.write({"/a": b"0", "/b": b"0"})
    bad = await repo.write({"/a": b"bad", "/c": b"new", "/b": None})
    await repo.write({"/d": b"later"})
    reverted = await repo.revert(bad)
    assert repo.files() == {"/a": b"0", "/b": b"0", "/d": b"later"}
    assert len(repo.store.read_commit(reverted).parents) == 1
    with pytest.raises(NothingToCommit):    # already undone
        await repo.revert(bad)


async def test_revert_conflicts_when_a_later_commit_touched_the_path(repo: Repo) -> None:
    await repo.write({"/a": b"0", "/b": b"0"})
    bad = await repo.write({"/a": b"bad", "/b": b"1"})
    later = await repo.write({"/a": b"fixed"})
    with pytest.raises(MergeConflict) as caught:
        await repo.revert(bad)
    assert caught.value.details() == {"paths": ["/a"]}
    assert repo.head() == later


async def test_revert_of_a_first_commit_and_of_a_commit_elsewhere(repo: Repo) -> None:
    first = await repo.write({"/a": b"0"})
    await repo.write({"/b": b"0"})
    await repo.revert(first)
    assert repo.files() == {"/b": b"0"}
    repo.branch("f")
    other = await repo.write({"/c": b"0"}, "f")
    with pytest.raises(InvalidArgument):
        await repo.revert(other)
    with pytest.raises(NotFound):
        RevertChange(repo.store, "r@main", "0" * 64)


async def test_a_merge_built_for_one_head_merges_again_over_a_newer_one(repo: Repo) -> None:
    await repo.write({"/a": b"0"})
    repo.branch("f")
    f = await repo.write({"/f": b"1"}, "f")
    seen = repo.head()
    change = MergeChange(repo.store, "r@main", f)
    change.check_head(seen)                         # as a first attempt would
    later = await repo.write({"/later": b"1"})      # another writer wins the swap
    done = await repo.commits.commit(REPO, "main", change, CommitMeta(
        message="m", author=repo.author, extra_parents=[f]))
    assert done.commit.parents == [later, f]
    assert repo.files() == {"/a": b"0", "/f": b"1", "/later": b"1"}


async def test_reverting_a_merge_undoes_what_it_brought(repo: Repo) -> None:
    await repo.write({"/a": b"0"})
    repo.branch("f")
    await repo.write({"/f": b"1", "/a": b"f"}, "f")
    await repo.write({"/m": b"1"})
    merged = await repo.merge("f")
    await repo.revert(merged)
    assert repo.files() == {"/a": b"0", "/m": b"1"}
