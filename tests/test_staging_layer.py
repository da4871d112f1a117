"""In-process tests of the staging layer (no FUSE, no subprocess): a real
store, a real StagingManager and journal; changes made through the
StagingArea API the way the branch view makes them; the status diff, the
tree a commit builds (checked with the store's tree walker), a reload from
the journal, and the data files of nodes that leave the tree."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest
import trio
import trio.testing

from tests.inprocess import CommitParts, PutFiles
from trunkfs.store.changes import CommitMeta, Edit, author_of
from trunkfs.staging import build
from trunkfs.staging.area import PAGED_ENTRIES, StagingArea
from trunkfs.staging.commit import StagedChange
from trunkfs.staging.conflicts import PathConflict
from trunkfs.staging.manager import StagingManager
from trunkfs.staging.nodes import FOLLOW, DirNode, FileNode, Node
from trunkfs.staging.overlay import children, lower_of
from trunkfs.staging.status import changes
from trunkfs.store import walk
from trunkfs.store.diff import diff_trees
from trunkfs.store.backends.factory import open_backend
from trunkfs.store.errors import NothingToCommit
from trunkfs.store.store import Store

MiB = 1 << 20
REPO, BRANCH = "r", "main"


class Layer(CommitParts):
    """A real store, the commit path and a staging manager over one state directory."""

    def __init__(self, workdir: Path, paged_entries: int = PAGED_ENTRIES) -> None:
        self.workdir = workdir
        self.paged_entries = paged_entries
        super().__init__(Store(open_backend(f"file://{workdir / 'store'}"), str(workdir / "index"),
                               str(workdir / "tmp")).open())
        self.refs.create_repo(REPO)
        self.manager = self.open_manager()

    def head_tree(self, repo: str, branch: str) -> str | None:
        head, _ = self.refs.read_branch(repo, branch)
        return self.store.read_commit(head).tree if head else None

    def open_manager(self) -> StagingManager:
        return StagingManager(str(self.workdir / "state"), self.head_tree,
                              paged_entries=self.paged_entries)

    def reopen(self) -> None:
        """Close the manager (as the daemon does when it stops) and load it again."""
        self.manager.close()
        self.manager = self.open_manager()

    @property
    def area(self) -> StagingArea:
        return self.manager.area(REPO, BRANCH)

    @property
    def data_dir(self) -> Path:
        return Path(self.manager.datafiles.directory)

    def head_root(self) -> dict | None:
        head, _ = self.refs.read_branch(REPO, BRANCH)
        return self.store.read_commit(head).root_entry() if head else None

    def status(self) -> list[tuple[str, str]]:
        return changes(self.area, self.store, self.head_root())

    # -- committed content --------------------------------------------------------

    async def put(self, files: dict[str, bytes]) -> str:
        """Commit ``files`` directly, not through staging."""
        done = await self.commits.commit(REPO, BRANCH, PutFiles(self.store, files),
                                         CommitMeta("put", author_of(0)))
        return done.id

    async def commit(self, force: bool = False) -> str:
        """Commit the staged changes, as the daemon's commit handler does."""
        area = self.area
        async with area.frozen():
            change = StagedChange(area, self.store, self.workers.run, force=force)
            try:
                done = await self.commits.commit(REPO, BRANCH, change,
                                                 CommitMeta("staged", author_of(0), allow_empty=False))
            except BaseException:
                change.aborted()
                raise
            area.drop_all()
        return done.id

    def tree(self, commit_id: str) -> dict[str, object]:
        """Every path of a commit: file bytes, symlink targets, "dir"."""
        out: dict[str, object] = {}
        root = self.store.read_commit(commit_id).root_entry()
        for path, e in walk.walk(self.store, root):
            if e["type"] == "dir":
                out[path] = "dir"
            elif e["type"] == "symlink":
                out[path] = ("->", e["target"])
            else:
                out[path] = b"".join(self.store.iter_file(e))
        return out

    # -- changes through the area, resolved as the branch view resolves them ------

    def _dir(self, parts: list[str]) -> tuple[DirNode, dict | None]:
        """The staged directory at ``parts`` (copied up), with the committed
        entry it follows."""
        area = self.area
        followed = self.head_root()
        node: Node = area.ensure_root(followed)
        for name in parts:
            assert isinstance(node, DirNode)
            x, under = children(self.store, node, followed)[name]
            node = x if isinstance(x, Node) else area.copy_up(node, name, x)
            followed = under
        assert isinstance(node, DirNode)
        return node, followed

    def _parent(self, path: str) -> tuple[DirNode, str, dict | None]:
        """(staged parent directory, name, the lower directory's entry there)."""
        parts = path.strip("/").split("/")
        parent, followed = self._dir(parts[:-1])
        lower = walk.listing(self.store, lower_of(parent, followed))
        return parent, parts[-1], lower.get(parts[-1])

    def node(self, path: str, pin: bool = False) -> Node:
        """The staged node at ``path``, copied up from the head when needed;
        ``pin`` a directory about to move to what it shows now."""
        parent, name, _ = self._parent(path)
        cur = parent.delta.get(name)
        if cur is None:
            _, followed = self._dir(path.strip("/").split("/")[:-1])
            lower = walk.listing(self.store, lower_of(parent, followed)).get(name)
            assert lower is not None, f"{path} does not exist"
            cur = self.area.copy_up(parent, name, lower)
        if pin and isinstance(cur, DirNode) and cur.lower == FOLLOW:
            _, followed = self._dir(path.strip("/").split("/")[:-1])
            self.area.pin(parent, name, cur, walk.listing(self.store, lower_of(parent, followed)).get(name))
        return cur

    def mkdir(self, path: str) -> DirNode:
        parent, name, _ = self._parent(path)
        node = self.area.new_node("dir", 0o755, 0, 0)
        self.area.link(parent, name, node)
        assert isinstance(node, DirNode)
        return node

    def create(self, path: str, data: bytes = b"") -> FileNode:
        parent, name, _ = self._parent(path)
        node = self.area.new_node("file", 0o644, 0, 0)
        assert isinstance(node, FileNode)
        self.area.link(parent, name, node)
        self.write(path, 0, data, node)
        return node

    def symlink(self, path: str, target: str) -> None:
        parent, name, _ = self._parent(path)
        self.area.link(parent, name, self.area.new_node("symlink", 0o777, 0, 0, target))

    def write(self, path: str, off: int, data: bytes, node: FileNode | None = None) -> FileNode:
        """open, pwrite, close: as a handle on the branch view does."""
        node = node or self.file(path)
        node.opens += 1
        self.area.write(node, off, data)
        self.close(node)
        return node

    def close(self, node: FileNode) -> None:
        node.opens -= 1
        if node.opens == 0:
            self.area.save_if_dirty(node)
            self.area.release_data(node)

    def file(self, path: str) -> FileNode:
        node = self.node(path)
        assert isinstance(node, FileNode)
        return node

    def truncate(self, path: str, size: int) -> None:
        self.area.truncate(self.file(path), size)

    def unlink(self, path: str) -> Node | None:
        parent, name, lower = self._parent(path)
        return self.area.unlink(parent, name, lower)

    def move(self, src: str, dst: str) -> None:
        node = self.node(src, pin=True)
        sparent, sname, slower = self._parent(src)
        dparent, dname, dlower = self._parent(dst)
        self.area.move(sparent, sname, slower, dparent, dname, node, dlower)

    def content(self, node: FileNode) -> bytes:
        """A staged file's bytes, read as the branch view reads them."""
        base = build.BaseReader(self.store, node.base_chunks)
        out = []
        for kind, s, e in node.pieces(0, node.size):
            out.append(self.area.read_data(node, s, e - s) if kind == "data"
                       else base.read(s, e) if kind == "base" else bytes(e - s))
        if node.opens == 0:
            self.area.release_data(node)
        return b"".join(out)


@pytest.fixture(params=["in-memory", "paged"])
def layer(workdir: Path, request: pytest.FixtureRequest):
    """Each test twice: with the staged tree in memory, and with every
    directory but the few in use paged out to the journal (a limit of 2
    entries), so each change also works on a directory read back."""
    lay = Layer(workdir, PAGED_ENTRIES if request.param == "in-memory" else 2)
    try:
        yield lay
    finally:
        lay.manager.close()
        lay.store.close()


def data_files(layer: Layer) -> set[str]:
    """The nodes with staged bytes stored: a data file, or inline bytes in the journal."""
    layer.area.flush_files()
    return set(os.listdir(layer.data_dir)) | {str(i) for i in layer.manager.journal.inline_ids()}


# -- status and commit of new files --------------------------------------------------------

async def test_new_files_dirs_and_symlinks_are_listed_and_committed(layer: Layer) -> None:
    layer.create("/a.txt", b"alpha\n")
    layer.mkdir("/d")
    layer.mkdir("/d/e")
    layer.create("/d/e/f.bin", b"f" * 70_000)
    layer.mkdir("/empty")
    layer.mkdir("/empty/inner")
    layer.symlink("/link", "a.txt")
    assert layer.status() == [("A", "/a.txt"), ("A", "/d/e/f.bin"), ("A", "/empty/inner/"),
                              ("A", "/link")]
    cid = await layer.commit()
    assert layer.tree(cid) == {"/a.txt": b"alpha\n", "/d": "dir", "/d/e": "dir",
                               "/d/e/f.bin": b"f" * 70_000, "/empty": "dir",
                               "/empty/inner": "dir", "/link": ("->", "a.txt")}
    commit = layer.store.read_commit(cid)
    assert (commit.files, commit.size) == (2, 6 + 70_000)  # files only, as the store counts
    assert layer.area.root is None and layer.status() == []
    assert data_files(layer) == set()


async def test_status_comes_in_the_order_diff_prints_the_commit(layer: Layer) -> None:
    """Depth first by name, as ``diff`` prints the commit it becomes (not
    sorted as whole paths: /a/x comes before /a-b and /a.txt), so status
    can send each change as it finds it."""
    await layer.put({"/a/x": b"x", "/a/y": b"y", "/b": b"b", "/c/d/e": b"e"})
    before = layer.head_root()
    layer.create("/a.txt", b"t")
    layer.create("/a-b", b"t")
    layer.write("/a/x", 0, b"X")
    layer.mkdir("/a/sub")
    layer.create("/a/sub/new", b"n")
    layer.unlink("/b")
    layer.mkdir("/b")
    layer.create("/b/in", b"i")
    layer.unlink("/c/d/e")
    found = layer.status()
    assert found == [("A", "/a/sub/new"), ("M", "/a/x"), ("A", "/a-b"), ("A", "/a.txt"),
                     ("D", "/b"), ("A", "/b/in"), ("D", "/c/d/e")]
    await layer.commit()
    after = layer.head_root()
    assert before is not None and after is not None
    assert list(diff_trees(layer.store, before["tree"], after["tree"])) == found


async def test_nothing_staged_commits_nothing(layer: Layer) -> None:
    await layer.put({"/x": b"x"})
    layer.file("/x")  # copied up, unchanged
    assert layer.status() == []
    with pytest.raises(NothingToCommit):
        await layer.commit()
    assert layer.area.root is not None  # still staged


# -- range copy-on-write over a committed file ----------------------------------------------

async def test_a_range_write_into_a_committed_file_stages_and_recuts_only_that_range(layer: Layer) -> None:
    data = bytearray(random.Random(1).randbytes(6 * MiB))
    base = await layer.put({"/big.bin": bytes(data)})
    base_chunks = {c[0] for c in walk.lookup(layer.store, layer.head_root() or {}, ["big.bin"])["chunks"]}
    assert len(base_chunks) >= 3
    node = layer.write("/big.bin", 3 * MiB, b"P" * 4096)
    data[3 * MiB:3 * MiB + 4096] = b"P" * 4096
    assert node.extents == [[3 * MiB, 3 * MiB + 4096]] and node.base_limit == 6 * MiB
    staged = layer.data_dir / str(node.id)
    assert staged.stat().st_blocks * 512 <= 64 * 1024, "a 4 KiB write copied more than its range"
    assert layer.content(node) == bytes(data)
    assert layer.status() == [("M", "/big.bin")]
    cid = await layer.commit()
    assert layer.tree(cid)["/big.bin"] == bytes(data)
    new_chunks = {c[0] for c in walk.lookup(layer.store, layer.head_root() or {}, ["big.bin"])["chunks"]}
    assert len(new_chunks & base_chunks) >= len(base_chunks) - 2, "chunks away from the write were cut again"
    assert layer.tree(base)["/big.bin"] != bytes(data)
    assert not staged.exists()


async def test_truncate_and_a_write_past_the_end_build_the_right_entries(layer: Layer) -> None:
    """file_entries + build_tree on a write session, without the commit path."""
    data = random.Random(2).randbytes(2 * MiB)
    await layer.put({"/t.bin": data, "/keep.txt": b"keep"})
    layer.truncate("/t.bin", 1000)
    layer.write("/t.bin", 5000, b"tail")
    expected = data[:1000] + bytes(4000) + b"tail"
    assert layer.content(layer.file("/t.bin")) == expected
    session = layer.store.session()
    try:
        entries = build.file_entries(layer.area, layer.store, session)
        root = build.build_tree(layer.area, layer.store, session, layer.head_root(), entries)
        session.flush()
    except BaseException:
        session.abort()
        raise
    assert (root["files"], root["size"]) == (2, len(expected) + 4)
    got = walk.lookup(layer.store, root, ["t.bin"])
    assert got["size"] == len(expected) and b"".join(layer.store.iter_file(got)) == expected
    assert b"".join(layer.store.iter_file(walk.lookup(layer.store, root, ["keep.txt"]))) == b"keep"


# -- unlink, rename, discard over a committed tree -------------------------------------------

async def test_unlink_leaves_whiteouts_over_the_committed_tree(layer: Layer) -> None:
    await layer.put({"/x/1": b"one", "/x/2": b"two", "/y": b"why", "/z/only": b"z"})
    layer.unlink("/x/1")
    layer.unlink("/y")
    layer.unlink("/z/only")
    layer.unlink("/z")
    root = layer.area.root
    assert root is not None and root.delta["y"] is None and root.delta["z"] is None
    x = root.delta["x"]
    assert isinstance(x, DirNode) and x.delta == {"1": None}
    assert layer.status() == [("D", "/x/1"), ("D", "/y"), ("D", "/z/only")]
    cid = await layer.commit()
    assert layer.tree(cid) == {"/x": "dir", "/x/2": b"two"}


async def test_a_renamed_directory_keeps_what_it_showed(layer: Layer) -> None:
    await layer.put({"/src/a": b"A", "/src/sub/b": b"B", "/other": b"o"})
    layer.move("/src", "/dst")
    layer.write("/dst/a", 1, b"a2")
    assert layer.status() == [("A", "/dst/a"), ("A", "/dst/sub/b"), ("D", "/src/a"),
                              ("D", "/src/sub/b")]
    # the head moves meanwhile (a put): the pinned directory does not follow
    # /src, and the whiteout at /src hides the head's /src
    await layer.put({"/src/late": b"late"})
    with pytest.raises(PathConflict) as err:   # the rename would lose /src/late
        await layer.commit()
    assert err.value.paths == ["/src"]
    cid = await layer.commit(force=True)
    assert layer.tree(cid) == {"/dst": "dir", "/dst/a": b"Aa2", "/dst/sub": "dir",
                               "/dst/sub/b": b"B", "/other": b"o"}


# -- the head moved under the staging (another daemon's commit, a put) -------------

async def test_a_path_changed_on_both_sides_fails_the_commit_and_keeps_the_staging(layer: Layer) -> None:
    await layer.put({"/f": b"v1", "/g": b"g1", "/d/x": b"x1"})
    layer.write("/f", 0, b"mine")
    layer.write("/d/x", 0, b"MY")
    layer.create("/new", b"n")
    await layer.put({"/f": b"theirs", "/d/x": b"THEIRS", "/g": b"g2"})
    before = layer.status()
    with pytest.raises(PathConflict) as err:
        await layer.commit()
    assert err.value.paths == ["/d/x", "/f"]
    assert "/d/x" in str(err.value) and "/f" in str(err.value)
    assert layer.status() == before                 # the staging is intact
    assert layer.content(layer.file("/f")) == b"mine"
    layer.reopen()                                  # and so is its journal
    with pytest.raises(PathConflict):
        await layer.commit()
    cid = await layer.commit(force=True)            # the staged versions win
    assert layer.tree(cid) == {"/f": b"mine", "/g": b"g2", "/d": "dir", "/d/x": b"MY", "/new": b"n"}


async def test_changes_to_other_paths_replay_on_the_new_head(layer: Layer) -> None:
    await layer.put({"/f": b"v1", "/d/a": b"a"})
    layer.write("/f", 0, b"V")
    layer.unlink("/d/a")
    layer.mkdir("/made")
    layer.create("/made/mine", b"m")
    await layer.put({"/g": b"g", "/d/b": b"b", "/made/theirs": b"t"})   # both made /made
    cid = await layer.commit()
    assert layer.tree(cid) == {"/f": b"V1", "/g": b"g", "/d": "dir", "/d/b": b"b",
                               "/made": "dir", "/made/mine": b"m", "/made/theirs": b"t"}


async def test_the_same_new_name_on_both_sides_conflicts(layer: Layer) -> None:
    await layer.put({"/keep": b"k"})
    layer.mkdir("/made")
    layer.create("/made/x", b"mine")
    layer.create("/top", b"mine")
    await layer.put({"/made/x": b"theirs", "/top": b"theirs"})
    with pytest.raises(PathConflict) as err:
        await layer.commit()
    assert err.value.paths == ["/made/x", "/top"]


async def test_a_delete_against_a_change_conflicts_both_ways(layer: Layer) -> None:
    await layer.put({"/gone": b"1", "/kept": b"1"})
    layer.unlink("/gone")                           # staged delete, their change
    layer.write("/kept", 0, b"2")                   # staged change, their delete
    await layer.put({"/gone": b"changed"})
    await layer.commits.commit(REPO, BRANCH, Edit(layer.store, lambda e: e.remove("/kept")),
                               CommitMeta("rm", author_of(0)))
    with pytest.raises(PathConflict) as err:
        await layer.commit()
    assert err.value.paths == ["/gone", "/kept"]


async def test_a_name_made_and_removed_again_takes_the_heads_version(layer: Layer) -> None:
    await layer.put({"/a": b"a"})
    layer.create("/n", b"mine")
    await layer.put({"/n": b"theirs"})
    layer.unlink("/n")                              # over their /n now: a whiteout
    layer.write("/a", 0, b"A")
    cid = await layer.commit()
    assert layer.tree(cid) == {"/a": b"A", "/n": b"theirs"}


async def test_staged_directories_follow_the_head_and_metadata_changes_show(layer: Layer) -> None:
    await layer.put({"/d/f": b"f"})
    layer.create("/d/new", b"n")
    d = layer.node("/d")
    assert isinstance(d, DirNode) and d.lower == FOLLOW
    d.mode = 0o700
    layer.area.save(d)
    assert layer.status() == [("M", "/d/"), ("A", "/d/new")]
    await layer.put({"/d/put": b"p"})  # shows through the following directory
    assert layer.status() == [("M", "/d/"), ("A", "/d/new")]
    cid = await layer.commit()
    assert layer.tree(cid) == {"/d": "dir", "/d/f": b"f", "/d/new": b"n", "/d/put": b"p"}
    assert walk.lookup(layer.store, layer.head_root() or {}, ["d"])["mode"] == 0o700


async def test_discard_of_one_path_shows_the_committed_entry_again(layer: Layer) -> None:
    await layer.put({"/a": b"a", "/b": b"b"})
    layer.unlink("/a")
    node = layer.write("/b", 0, b"B")
    assert data_files(layer) == {str(node.id)}
    layer.create("/c", b"c")
    assert layer.status() == [("D", "/a"), ("M", "/b"), ("A", "/c")]
    assert await layer.manager.discard(REPO, BRANCH, ["/b", "a"]) == 2
    assert layer.status() == [("A", "/c")]
    assert str(node.id) not in data_files(layer)


# -- data files of nodes that leave the tree -------------------------------------------------

async def test_data_files_of_dropped_nodes_are_removed(layer: Layer) -> None:
    a = layer.create("/a", b"a" * 100)
    b = layer.create("/b", b"b" * 100)
    c = layer.create("/c", b"c" * 100)
    layer.mkdir("/dir")
    inner = layer.create("/dir/inner", b"i")
    assert data_files(layer) == {str(n.id) for n in (a, b, c, inner)}
    layer.move("/a", "/b")  # replaces b
    assert data_files(layer) == {str(n.id) for n in (a, c, inner)}
    layer.unlink("/dir/inner")
    layer.unlink("/dir")
    assert data_files(layer) == {str(n.id) for n in (a, c)}
    # unlinked while open: the data stays readable until the last release
    c.opens += 1
    layer.unlink("/c")
    assert not c.linked and layer.area.read_data(c, 0, 3) == b"ccc"
    assert str(c.id) in data_files(layer) or c.data == b"c" * 100   # inline: in memory
    layer.close(c)
    assert data_files(layer) == {str(a.id)}
    assert layer.status() == [("A", "/b")]
    layer.area.drop_all()
    assert data_files(layer) == set() and layer.status() == []


# -- small files inline in the journal -------------------------------------------------------

async def test_small_files_live_inline_until_they_grow(layer: Layer) -> None:
    rng = random.Random(8)
    want = bytearray()
    node = layer.create("/small")
    for off in range(0, 60_000, 6_000):          # pieces, as tar x writes them
        piece = rng.randbytes(6_000)
        layer.write("/small", off, piece, node)
        want[off:off + 6000] = piece
    layer.write("/small", 61_000, b"after a hole", node)
    want += bytes(61_000 - len(want)) + b"after a hole"
    assert node.inline and data_files(layer) == {str(node.id)}
    assert str(node.id) not in os.listdir(layer.data_dir)     # no data file of its own
    layer.reopen()
    node = layer.file("/small")
    assert node.inline and layer.content(node) == bytes(want)
    layer.write("/small", 100_000, b"grown", node)              # past INLINE_MAX: a data file
    want += bytes(100_000 - len(want)) + b"grown"
    assert not node.inline and str(node.id) in os.listdir(layer.data_dir)
    assert layer.content(node) == bytes(want)
    layer.reopen()
    assert str(node.id) not in layer.manager.journal.inline_ids()
    assert layer.content(layer.file("/small")) == bytes(want)
    cid = await layer.commit()
    assert layer.tree(cid) == {"/small": bytes(want)}
    assert data_files(layer) == set()


# -- a reload from the journal ---------------------------------------------------------------

async def test_a_reload_from_the_journal_keeps_everything_staged(layer: Layer) -> None:
    data = random.Random(3).randbytes(3 * MiB)
    await layer.put({"/big": data, "/gone": b"g", "/dir/keep": b"k", "/dir/old": b"o"})
    layer.write("/big", MiB, b"patch")
    layer.unlink("/gone")
    layer.move("/dir/old", "/dir/renamed")
    layer.mkdir("/new")
    layer.create("/new/file", b"fresh")
    layer.symlink("/new/link", "file")
    layer.truncate("/dir/keep", 1)
    open_node = layer.create("/open", b"still open")
    open_node.opens += 1
    layer.unlink("/open")  # unlinked while open when the daemon stops
    layer.create("/late", b"x")
    before = layer.status()
    assert before == [("M", "/big"), ("M", "/dir/keep"), ("D", "/dir/old"), ("A", "/dir/renamed"),
                      ("D", "/gone"), ("A", "/late"), ("A", "/new/file"), ("A", "/new/link")]
    staged_ids = {n.id for n in layer.area.walk()}
    assert str(open_node.id) in data_files(layer) or open_node.data == b"still open"   # inline: in memory

    layer.reopen()
    assert layer.status() == before
    assert {n.id for n in layer.area.walk()} == staged_ids
    assert str(open_node.id) not in data_files(layer)
    expected = data[:MiB] + b"patch" + data[MiB + 5:]
    assert layer.content(layer.file("/big")) == expected
    assert layer.content(layer.file("/new/file")) == b"fresh"
    cid = await layer.commit()
    assert layer.tree(cid) == {"/big": expected, "/dir": "dir", "/dir/keep": b"k",
                               "/dir/renamed": b"o", "/new": "dir", "/new/file": b"fresh",
                               "/new/link": ("->", "file"), "/late": b"x"}
    layer.reopen()
    assert layer.area.root is None and layer.status() == [] and data_files(layer) == set()


async def test_staging_many_new_files_holds_a_bounded_number_of_them_in_memory(workdir: Path) -> None:
    """10,000 new files in 100 directories, with a limit of 500 staged
    entries in memory: staging them, a restart, the status and the commit
    each hold about the limit, never the whole tree, and all of it commits."""
    limit, bound = 500, 2 * 500 + 150
    lay = Layer(workdir, paged_entries=limit)
    try:
        most = 0
        for d in range(100):
            lay.mkdir(f"/d{d:03d}")
            for i in range(100):
                lay.create(f"/d{d:03d}/f{i:03d}", b"%d/%d" % (d, i))
            most = max(most, len(lay.area.nodes))
        assert most <= bound, f"{most} staged nodes in memory while staging"
        assert lay.area.paging_stats()["entries"] <= bound
        assert lay.manager.paging_stats()["limit"] == limit

        lay.reopen()
        assert len(lay.area.nodes) == 1       # the root, nothing else read yet
        found = lay.status()
        assert len(found) == 10_000 and {code for code, _ in found} == {"A"}
        assert found[5_742] == ("A", "/d057/f042")
        assert len(lay.area.nodes) <= bound

        area = lay.area
        seen: list[int] = []
        async with area.frozen():
            change = StagedChange(area, lay.store, lay.workers.run,
                                  progress=lambda done, total: seen.append(len(area.nodes)))
            done = await lay.commits.commit(REPO, BRANCH, change, CommitMeta("many", author_of(0)))
            area.drop_all()
        assert len(seen) >= 10_000 and max(seen) <= bound, f"{max(seen)} staged nodes during the commit"
        tree = lay.tree(done.id)
        assert sum(1 for v in tree.values() if v != "dir") == 10_000
        assert tree["/d057/f042"] == b"57/42" and tree["/d099/f099"] == b"99/99"
        assert lay.status() == [] and data_files(lay) == set()
    finally:
        lay.manager.close()
        lay.store.close()


async def test_a_commit_cut_short_after_the_branch_moved_is_not_staged_again(layer: Layer) -> None:
    """The root tree a commit is about to publish is journaled: a restart
    that finds the branch at that tree drops the staging."""
    layer.create("/f", b"f")
    area = layer.area
    async with area.frozen():
        change = StagedChange(area, layer.store, layer.workers.run)
        await layer.commits.commit(REPO, BRANCH, change, CommitMeta("c", author_of(0)))
        # the daemon dies here, before area.drop_all()
    layer.reopen()
    assert layer.area.root is None and layer.status() == []
    assert data_files(layer) == set()


async def test_mutations_wait_for_a_commit(layer: Layer) -> None:
    layer.create("/f", b"f")
    area = layer.area
    order: list[str] = []

    async def writer() -> None:
        async with area.mutation():
            order.append("write")

    async with trio.open_nursery() as nursery:
        await area.freeze()
        nursery.start_soon(writer)
        await trio.testing.wait_all_tasks_blocked()
        order.append("commit")
        area.thaw()
    assert order == ["commit", "write"]


async def test_a_conflict_on_a_name_that_is_not_utf8_names_it(layer: Layer) -> None:
    name = os.fsdecode(b"/caf\xe9")
    await layer.put({name: b"v1", "/l-target": b"t"})
    layer.write(name, 0, b"mine")
    layer.symlink(os.fsdecode(b"/lnk\xff"), os.fsdecode(b"\xfe\xfd"))
    await layer.put({name: b"theirs"})
    with pytest.raises(PathConflict) as err:
        await layer.commit()
    assert err.value.paths == [name]
    assert os.fsencode(err.value.details()["paths"][0]) == b"/caf\xe9"
