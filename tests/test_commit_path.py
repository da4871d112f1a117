"""In-process tests of the one commit path (daemon/commits.py) over a real
store: the compare-and-swap loop, empty commits, aborted sessions, and the
order of what a commit tells its watchers."""

from __future__ import annotations

import os

import pytest
import trio

from tests.inprocess import CommitParts
from trunkfs.store.changes import CommitMeta, Edit, ReplaceRoot, author_of
from trunkfs.store import walk
from trunkfs.store.errors import Conflict, NothingToCommit
from trunkfs.store.store import Store
from trunkfs.store.treeedit import TreeEditor
from trunkfs.store.writer import WriteSession


class Parts(CommitParts):
    def __init__(self, store: Store) -> None:
        super().__init__(store)
        self.moves: list[tuple[str, str | None]] = []
        self.heads.add_listener(lambda repo, branch: self.moves.append((repo, branch)))


def file_entry(session: WriteSession, data: bytes) -> dict:
    ingest = session.ingest()
    ingest.write(data)
    chunks, size = ingest.finish()
    return {"type": "file", "mode": 0o644, "mtime": 0, "size": size, "chunks": chunks}


class PutFile:
    """A change that writes one file (its bytes in ``prepare``, once)."""

    def __init__(self, store: Store, path: str, data: bytes) -> None:
        self.store, self.path, self.data = store, path, data
        self.entry: dict | None = None
        self.builds = 0

    async def prepare(self, session: WriteSession) -> None:
        self.entry = file_entry(session, self.data)

    def build(self, base: dict | None, session: WriteSession) -> dict:
        self.builds += 1
        editor = TreeEditor(self.store, base["tree"] if base else None)
        assert self.entry is not None
        editor.put(self.path, self.entry)
        return editor.write(session)


def read(store: Store, commit_id: str, path: str) -> bytes:
    entry = walk.lookup(store, store.read_commit(commit_id).root_entry(), path.strip("/").split("/"))
    return b"".join(store.iter_file(entry))


async def test_commits_count_what_they_hold_and_move_the_branch(store: Store) -> None:
    parts = Parts(store)
    await parts.workers.run(parts.refs.create_repo, "r")
    meta = CommitMeta(message="first", author=author_of(os.getuid()))
    first = await parts.commits.commit("r", "main", PutFile(store, "/a/x.txt", b"xx"), meta)
    second = await parts.commits.commit("r", "main", PutFile(store, "/b.txt", b"bbbb"),
                                        CommitMeta(message="second", author=meta.author))
    head, _ = parts.refs.read_branch("r", "main")
    assert head == second.id and second.commit.parents == [first.id]
    assert (second.commit.size, second.commit.files) == (6, 2)
    assert read(store, second.id, "/a/x.txt") == b"xx" and read(store, second.id, "/b.txt") == b"bbbb"
    assert second.commit.author["name"] and second.commit.author["uid"] == os.getuid()
    assert second.new_bytes > 0
    assert parts.moves == [("r", "main"), ("r", "main")]
    # the root entry a commit gives is what the walker and the next commit build on
    root = second.commit.root_entry()
    assert root["type"] == "dir" and root["tree"] == second.commit.tree and root["files"] == 2


async def test_a_branch_moved_by_another_writer_is_built_on_again(store: Store) -> None:
    """Between reading the head and the compare-and-swap another process moves
    the branch: the change is built again on the new head, nothing is lost."""
    parts = Parts(store)
    await parts.workers.run(parts.refs.create_repo, "r")
    other = Parts(store)  # a second writer with its own heads cache and locks

    class RacedPut(PutFile):
        def build(self, base: dict | None, session: WriteSession) -> dict:
            if self.builds == 0:  # the other writer lands first, from this worker thread
                trio.from_thread.run(other.commits.commit, "r", "main",
                                     PutFile(store, "/theirs.txt", b"t"),
                                     CommitMeta(message="theirs", author=author_of(0)))
            return super().build(base, session)

    change = RacedPut(store, "/mine.txt", b"m")
    mine = await parts.commits.commit("r", "main", change, CommitMeta("mine", author_of(0)))
    assert change.builds == 2
    assert read(store, mine.id, "/theirs.txt") == b"t" and read(store, mine.id, "/mine.txt") == b"m"
    theirs = store.read_commit(mine.commit.parents[0])
    assert theirs.message == "theirs"


async def test_a_branch_that_keeps_moving_abandons_the_commit(store: Store) -> None:
    parts = Parts(store)
    await parts.workers.run(parts.refs.create_repo, "r")
    other = Parts(store)

    class AlwaysRaced(PutFile):
        def build(self, base: dict | None, session: WriteSession) -> dict:
            trio.from_thread.run(other.commits.commit, "r", "main",
                                 Edit(store, lambda e: e.put(f"/o{self.builds}", {
                                     "type": "symlink", "mode": 0o777, "mtime": 0, "target": "x"})),
                                 CommitMeta("other", author_of(0)))
            return super().build(base, session)

    before = len(list(store.backend.list("packs/")))
    with pytest.raises(Conflict, match="kept moving"):
        await parts.commits.commit("r", "main", AlwaysRaced(store, "/big.bin", os.urandom(1 << 20)),
                                   CommitMeta("mine", author_of(0)))
    head, _ = parts.refs.read_branch("r", "main")
    assert store.read_commit(head).message == "other"
    # the abandoned session's data may be in the store, unreferenced; the branch never saw it
    assert walk.listing(store, store.read_commit(head).root_entry()).get("big.bin") is None
    assert len(list(store.backend.list("packs/"))) >= before


async def test_nothing_to_commit_unless_allowed(store: Store) -> None:
    parts = Parts(store)
    await parts.workers.run(parts.refs.create_repo, "r")
    with pytest.raises(NothingToCommit):
        await parts.commits.commit("r", "main", Edit(store, lambda e: None),
                                   CommitMeta("empty", author_of(0), allow_empty=False))
    head, _ = parts.refs.read_branch("r", "main")
    assert head is None
    done = await parts.commits.commit("r", "main", Edit(store, lambda e: None),
                                      CommitMeta("empty", author_of(0)))
    assert done.commit.files == 0 and parts.refs.read_branch("r", "main")[0] == done.id


async def test_a_failing_change_leaves_the_branch_and_aborts_its_session(store: Store) -> None:
    parts = Parts(store)
    await parts.workers.run(parts.refs.create_repo, "r")
    first = await parts.commits.commit("r", "main", PutFile(store, "/a", b"a"),
                                       CommitMeta("first", author_of(0)))

    class Broken(PutFile):
        def build(self, base: dict | None, session: WriteSession) -> dict:
            raise RuntimeError("the change failed")

    with pytest.raises(RuntimeError, match="the change failed"):
        await parts.commits.commit("r", "main", Broken(store, "/b", os.urandom(64 << 10)),
                                   CommitMeta("broken", author_of(0)))
    assert parts.refs.read_branch("r", "main")[0] == first.id
    leftovers = [n for n in os.listdir(store.tmp_dir) if not n.startswith(".")]
    assert leftovers == [], leftovers  # the aborted session's pack file is gone


async def test_replace_root_and_the_commit_event(store: Store) -> None:
    parts = Parts(store)
    await parts.workers.run(parts.refs.create_repo, "out")
    events = parts.events.subscribe()
    session = store.session()
    editor = TreeEditor(store, None)
    editor.put("/one", file_entry(session, b"12"))
    editor.put("/two", file_entry(session, b"34"))
    root = editor.write(session)
    session.flush()
    done = await parts.commits.commit("out", "main", ReplaceRoot(root), CommitMeta(
        "output", author_of(0), origin={"kind": "pipeline", "pipeline": "p"},
        provenance=[{"repo": "in", "commit": "c" * 64}]))
    assert (done.commit.size, done.commit.files) == (4, 2)
    assert done.commit.provenance == [{"repo": "in", "commit": "c" * 64}]
    event = events.receive_nowait()
    assert event["type"] == "commit" and event["commit"] == done.id and event["jobs"] == []
    assert event["origin"] == {"kind": "pipeline", "pipeline": "p"}
