"""The store layer used directly: chunking, packs, index, trees, commits."""

from __future__ import annotations

import os
import random
import shutil

import pytest

from trunkfs.store.backends.local import LocalBackend
from trunkfs.store.chunking import ChunkerParams, StreamChunker
from trunkfs.store.diff import diff_trees
from trunkfs.store.errors import IntegrityError, InvalidArgument, NotFound
from trunkfs.store.fsck import fsck
from trunkfs.store.objects import FILE, Commit
from trunkfs.store.packs import pack_key
from trunkfs.store.refs import Refs
from trunkfs.store.store import Store
from trunkfs.store.treeedit import TreeEditor
from tests.harness import tmpfs


def open_store(base, **kw) -> Store:
    return Store(LocalBackend(str(base / "store")), str(base / "index"), str(base / "tmp"), **kw).open()


def ingest(store: Store, data: bytes, piece: int = 1 << 20):
    session = store.session()
    f = session.ingest()
    for i in range(0, len(data), piece):
        f.write(data[i:i + piece])
    chunks, size = f.finish()
    session.flush()
    return {"type": FILE, "mode": 0o644, "mtime": 0, "size": size, "chunks": chunks}, session


def commit_files(store: Store, refs: Refs, repo: str, files: dict[str, bytes]) -> str:
    info = refs.get_repo(repo)
    head, version = refs.read_branch(repo, "main")
    base = store.read_commit(head).tree if head else None
    session = store.session()
    ed = TreeEditor(store, base)
    for path, data in files.items():
        if data is None:
            ed.remove(path)
        else:
            chunks, size = session.put_bytes(data)
            ed.put(path, {"type": FILE, "mode": 0o644, "mtime": 1, "size": size, "chunks": chunks})
    root = ed.write(session)
    session.flush()
    cid = store.write_commit(Commit(repo=repo, repo_id=info.id, tree=root["tree"],
                                    parents=[head] if head else [], size=root["size"],
                                    files=root["files"]))
    refs.move_branch(repo, "main", cid, version)
    return cid


def test_stream_chunker_matches_whole_buffer_cuts():
    params = ChunkerParams(min_size=16 * 1024, avg_size=64 * 1024, max_size=256 * 1024)
    data = random.Random(1).randbytes(5 * 1024 * 1024)
    whole = StreamChunker(params)
    expected = [bytes(c) for c in whole.feed(data) + whole.finish()]
    rng = random.Random(2)
    s = StreamChunker(params)
    got = []
    pos = 0
    while pos < len(data):
        n = rng.randint(1, 300_000)
        got += [bytes(c) for c in s.feed(data[pos:pos + n])]
        pos += n
    got += [bytes(c) for c in s.finish()]
    assert got == expected
    assert b"".join(got) == data
    assert all(len(c) <= params.max_size for c in got)
    assert all(len(c) >= params.min_size for c in got[:-1])


def test_insert_at_start_reuses_most_chunks(store):
    data = random.Random(3).randbytes(40 * 1024 * 1024)
    first, _ = ingest(store, data)
    second, session = ingest(store, b"inserted!" + data)
    ids1 = {c[0] for c in first["chunks"]}
    ids2 = [c[0] for c in second["chunks"]]
    reused = sum(1 for c in ids2 if c in ids1)
    assert reused >= len(ids2) - 2
    assert session.data.new_blobs <= 2


def test_roundtrip_and_dedup(store):
    data = random.Random(4).randbytes(9 * 1024 * 1024 + 17)
    entry, s1 = ingest(store, data)
    assert entry["size"] == len(data)
    assert b"".join(store.iter_file(entry)) == data
    before = store.stats()["stored_bytes"]
    again, s2 = ingest(store, data)
    assert again["chunks"] == entry["chunks"]
    assert s2.data.new_blobs == 0
    assert store.stats()["stored_bytes"] == before


def test_compressible_data_is_compressed(store):
    text = b"".join(b"%d,%f,%f\n" % (i, i * 0.5, i / 7) for i in range(300_000))
    entry, session = ingest(store, text)
    assert session.data.new_bytes < len(text) / 2
    assert b"".join(store.iter_file(entry)) == text


def test_corrupt_pack_is_an_integrity_error_naming_the_pack(store):
    data = random.Random(5).randbytes(2 * 1024 * 1024)
    entry, _ = ingest(store, data)
    loc = store.index.blob(bytes.fromhex(entry["chunks"][0][0]))
    path = os.path.join(store.backend.root, pack_key(loc.pack_id))
    with open(path, "r+b") as f:
        f.seek(loc.offset + 100)
        byte = f.read(1)
        f.seek(loc.offset + 100)
        f.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(IntegrityError) as info:
        b"".join(store.iter_file(entry))
    assert loc.pack_id.hex() in str(info.value)


def test_tree_editor_put_mkdir_remove_and_diff(store):
    refs = Refs(store)
    refs.create_repo("r")
    c1 = commit_files(store, refs, "r", {"/a/x": b"1", "/a/y": b"2", "/b/z": b"3", "/top": b"t"})
    c2 = commit_files(store, refs, "r", {"/a/x": b"changed", "/b/z": None, "/c/new": b"n"})
    t1 = store.read_commit(c1).tree
    t2 = store.read_commit(c2).tree
    assert sorted(diff_trees(store, t1, t2)) == [("A", "/c/new"), ("D", "/b/z"), ("M", "/a/x")]
    commit = store.read_commit(c2)
    assert commit.files == 4 and commit.size == len(b"changed2tn")
    assert commit.parents == [c1]
    # an unchanged subtree keeps its id
    c3 = commit_files(store, refs, "r", {"/c/new2": b"m"})
    a2 = {e["name"]: e for e in store.read_tree(t2)}["a"]["tree"]
    a3 = {e["name"]: e for e in store.read_tree(store.read_commit(c3).tree)}["a"]["tree"]
    assert a2 == a3


def test_tree_editor_refuses_bad_paths(store):
    ed = TreeEditor(store, None)
    for bad in ("/a/../b", "a\0b", "/" + "x" * 256):
        with pytest.raises(InvalidArgument):
            ed.put(bad, {"type": FILE, "size": 0, "chunks": []})
    with pytest.raises(NotFound):
        ed.remove("/missing")


def test_names_are_validated(store):
    refs = Refs(store)
    for bad, why in [("", "empty"), ("a/b", "'/'"), ("a@b", "'@'"), ("a:b", "':'"),
                     ("a b", "white space"), (".hidden", "starts with '.'"), ("x" * 101, "too long")]:
        with pytest.raises(InvalidArgument) as info:
            refs.create_repo(bad)
        assert why in str(info.value)


def test_commit_prefix_resolution(store):
    refs = Refs(store)
    refs.create_repo("r")
    cid = commit_files(store, refs, "r", {"/f": b"x"})
    assert refs.resolve("r", cid[:6]) == (cid, None)
    assert refs.resolve("r", cid.upper()[:10]) == (cid, None)
    with pytest.raises(InvalidArgument):
        refs.resolve("r", cid[:4])
    with pytest.raises(NotFound):
        refs.resolve("r", "ffffffffffff" if not cid.startswith("ffffff") else "000000000000")


def test_index_is_rebuilt_from_the_store(tmp_path):
    s = open_store(tmp_path)
    refs = Refs(s)
    refs.create_repo("r")
    data = random.Random(6).randbytes(3 * 1024 * 1024)
    cid = commit_files(s, refs, "r", {"/d/f": data, "/g": b"small"})
    stats = s.stats()
    s.close()
    shutil.rmtree(tmp_path / "index")
    s = open_store(tmp_path)
    try:
        assert s.stats() == stats
        refs = Refs(s)
        assert refs.resolve("r", cid[:8]) == (cid, None)
        tree = s.read_tree(s.read_commit(cid).tree)
        d = next(e for e in tree if e["name"] == "d")
        f = s.read_tree(d["tree"])[0]
        assert b"".join(s.iter_file(f)) == data
        assert fsck(s, read_data=True).ok
    finally:
        s.close()


def test_pack_stored_but_not_indexed_is_picked_up(tmp_path):
    """A crash between a pack upload and its index entry loses nothing."""
    s = open_store(tmp_path)
    data = random.Random(7).randbytes(2 * 1024 * 1024)
    entry, _ = ingest(s, data)
    pid = s.index.blob(bytes.fromhex(entry["chunks"][0][0])).pack_id
    s.index.remove_pack(pid)
    assert s.index.blob(bytes.fromhex(entry["chunks"][0][0])) is None
    s.close()
    s = open_store(tmp_path)
    try:
        assert b"".join(s.iter_file(entry)) == data
    finally:
        s.close()


@pytest.mark.allow_warnings
def test_fsck_reports_missing_and_corrupt(tmp_path):
    s = open_store(tmp_path)
    try:
        refs = Refs(s)
        refs.create_repo("r")
        commit_files(s, refs, "r", {"/a": random.Random(8).randbytes(600_000)})
        assert fsck(s, read_data=True).ok
        loc = next(loc for _, loc in s.index.blobs() if loc.type == 0)
        path = os.path.join(s.backend.root, pack_key(loc.pack_id))
        with open(path, "r+b") as f:
            f.seek(loc.offset + 10)
            f.write(b"\x00\x01\x02\x03")
        assert fsck(s).ok  # structure is intact
        report = fsck(s, read_data=True)
        assert not report.ok and any("hash check" in p for p in report.problems)
        os.unlink(path)
        report = fsck(s)
        assert not report.ok and any("missing" in p for p in report.problems)
    finally:
        s.close()


def test_read_blobs_coalesces_neighbours_and_keeps_the_order(store):
    """Several blobs read at once come back verified, in the order asked,
    whatever packs they are in; neighbours in a pack come in one request."""
    import random
    from concurrent.futures import ThreadPoolExecutor

    blobs = [os.urandom(random.randint(1, 300_000)) for _ in range(40)]
    ids = []
    for part in (blobs[:25], blobs[25:]):          # two packs
        session = store.session()
        for data in part:
            ingest = session.ingest()
            ingest.write(data)
            chunks, _ = ingest.finish()
            ids += [bytes.fromhex(c[0]) for c in chunks]
        session.flush()
    calls = []
    real_get = store.backend.get
    store.backend.get = lambda key, offset=0, length=None: calls.append(key) or real_get(key, offset, length)
    try:
        order = list(range(len(ids)))
        random.shuffle(order)
        with ThreadPoolExecutor(4) as pool:
            got = store.read_blobs([ids[i] for i in order], pool)
    finally:
        del store.backend.get
    assert got == [store.read_blob(ids[i]) for i in order]
    assert len(calls) < len(ids) / 2, calls


def _assert_stored_whole(store: Store, ids: list[bytes], blobs: list[bytes]) -> None:
    """Every blob reads back, fsck (reading the data) agrees, no temp pack is left."""
    for bid, data in zip(ids, blobs):
        assert store.read_blob(bid) == data
    report = fsck(store, read_data=True)
    assert report.ok, report.problems
    assert os.listdir(store.tmp_dir) == []            # no temp pack left behind


def test_blobs_added_from_many_threads_land_whole_in_their_packs(tmp_path):
    """Threads write their blobs into one pack at once (outside the sink's
    lock): every blob reads back, every pack is whole, fsck agrees."""
    import concurrent.futures
    store = open_store(tmp_path, pack_size=1 << 20)       # many packs, sealed while others write
    try:
        session = store.session()
        rng = random.Random(11)
        blobs = [rng.randbytes(rng.randint(1, 96 << 10)) for _ in range(400)]
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            ids = list(pool.map(session.data.add, blobs))
        session.flush()
        assert len(session.pack_ids()) > 10
        _assert_stored_whole(store, ids, blobs)
    finally:
        store.close()


def test_large_blobs_written_side_by_side_fill_and_seal_packs_whole(tmp_path):
    """Chunks of 64 KiB and more are copied into their pack outside the
    sink's lock: packs fill and are sealed while other threads still write
    their ranges, and a flush called while adds are under way waits for
    them.  Every blob reads back and every pack is whole."""
    import concurrent.futures
    import threading
    store = open_store(tmp_path, pack_size=1 << 20)
    try:
        session = store.session()
        rng = random.Random(21)
        blobs = [rng.randbytes(rng.randint(64 << 10, 320 << 10)) for _ in range(240)]
        blobs += [rng.randbytes(rng.randint(1, 4 << 10)) for _ in range(240)]   # buffered between them
        rng.shuffle(blobs)
        start = threading.Barrier(9)

        def add(i: int) -> bytes:
            if i < 8:
                start.wait()
            return session.data.add(blobs[i])
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            futures = [pool.submit(add, i) for i in range(len(blobs))]
            start.wait()
            session.flush()           # while the first eight are being stored
            ids = [f.result() for f in futures]
        session.flush()
        assert len(session.pack_ids()) > 20
        _assert_stored_whole(store, ids, blobs)
    finally:
        store.close()


def test_rocksdb_databases_share_one_bounded_block_cache(tmp_path):
    """The index and the staging journal read through the process's one
    block cache (``store/rocksopts.py``), not a 32 MiB cache each: reading
    back what both stored fills that cache, and no further than its size."""
    from trunkfs.staging.journal import Journal
    from trunkfs.store.index import Index
    from trunkfs.store.rocksopts import BLOCK_CACHE_BYTES, shared_block_cache
    cache = shared_block_cache()
    index = Index(str(tmp_path / "index"))
    journal = Journal(str(tmp_path / "journal"))
    try:
        rng = random.Random(3)
        values = {f"k{i:06d}".encode(): rng.randbytes(600) for i in range(40_000)}
        for db in (index._db, journal._db):
            for k, v in values.items():
                db[k] = v
            db.flush()                # to tables: reads now go through the block cache
        before = cache.get_usage()
        for db in (index._db, journal._db):
            for k, v in values.items():
                assert db[k] == v
        assert cache.get_usage() > before, "the reads did not go through the shared cache"
        assert cache.get_usage() <= BLOCK_CACHE_BYTES * 1.1
    finally:
        index.close()
        journal.close()


def test_a_pack_write_that_fails_stores_nothing(tmp_path):
    """A full disk under the packs' temp files: the error reaches the
    writer, no temp file stays, and what was indexed before is whole."""
    import errno
    with tmpfs(tmp_path / "small", "3m") as small:
        store = open_store(small, pack_size=1 << 20)
        try:
            session = store.session()
            data = random.Random(5).randbytes(8 << 20)
            with pytest.raises(OSError) as info:
                try:                                  # as the commit path does: abort on failure
                    f = session.ingest()
                    for i in range(0, len(data), 1 << 20):
                        f.write(data[i:i + (1 << 20)])
                    f.finish()
                    session.flush()
                except BaseException:
                    session.abort()
                    raise
            assert info.value.errno == errno.ENOSPC
            assert os.listdir(store.tmp_dir) == []
            for pack_id, size, _ in store.index.packs():      # packs stored before the disk filled
                assert store.backend.stat(pack_key(pack_id)) == size
        finally:
            store.close()


def test_a_pack_whose_last_bytes_find_the_disk_full_leaves_no_temp_file(tmp_path):
    """The disk fills up just when a pack's buffered bytes, index and
    trailer are written (``PackWriter.finish``): the error reaches the
    writer and the pack's temp file goes, as for a failure anywhere else."""
    import errno
    with tmpfs(tmp_path / "small", "1m") as small:
        store = Store(LocalBackend(str(small / "store")), str(tmp_path / "index"), str(tmp_path / "tmp")).open()
        try:
            with open(small / "filler", "wb") as f:   # leave about 64 KiB free
                f.write(b"\0" * (1024 - 64) * 1024)
            session = store.session()
            rng = random.Random(6)
            for _ in range(8):     # blobs under BlobSink.DIRECT_WRITE_MIN: held in the writer's buffer
                session.data.add(rng.randbytes(32 << 10))
            with pytest.raises(OSError) as info:
                try:
                    session.flush()
                except BaseException:
                    session.abort()
                    raise
            assert info.value.errno == errno.ENOSPC
            assert os.listdir(store.tmp_dir) == [], "the temp pack stays on a full disk"
        finally:
            store.close()


def test_diff_of_stored_trees_with_malformed_entries_leaves_them_out(store):
    """``diff`` compares stored trees without checking entries stored alike
    (``Store.unchecked_tree_entries``): a malformed entry, as another writer on
    the bucket may store one, never shows as a change, and one that became
    well formed is added, as every reader sees it."""
    import json as std_json

    from trunkfs.store.codec import blob_id
    session = store.session()

    def tree(entries: list[dict]) -> str:
        raw = std_json.dumps({"v": 1, "entries": entries}, separators=(",", ":")).encode()
        return session.trees.add(raw, blob_id(raw)).hex()

    def file(name: str, n: int, **odd: object) -> dict:
        return dict({"name": name, "type": FILE, "mode": 0o644, "mtime": 1, "size": 1,
                     "chunks": [[f"{n:064x}", 1]]}, **odd)

    odd = [file("x/y", 1), file("bad", 2, mode="rwx"), file("..", 3), file("big", 4, size=-1)]
    old_d = tree([file("a", 5), file("same", 6), *odd, file("later", 7, mode=[])])
    new_d = tree([file("a", 8), file("same", 6), *odd[:2], file("..", 9), file("big", 10, size=-2),
                  file("later", 7)])
    old_root = tree([{"name": "d", "type": "dir", "mode": 0o755, "mtime": 1, "tree": old_d}])
    new_root = tree([{"name": "d", "type": "dir", "mode": 0o755, "mtime": 1, "tree": new_d}])
    session.flush()
    store.trees.clear()          # read as stored, not through what this session cached
    assert list(diff_trees(store, old_root, new_root)) == [("M", "/d/a"), ("A", "/d/later")]


@pytest.mark.allow_warnings   # the entries left out are logged
def test_a_tree_is_checked_once_on_this_machine_and_only_a_clean_one_is_trusted(workdir):
    """Entries are checked when a tree is first read here; a tree found clean
    (nothing left out, no time clamped) or written clean by this daemon is
    marked in the local index and read unchecked afterwards, even by a new
    process.  A tree with one bad entry is checked at every read."""
    import json as std_json

    from tests.conftest import open_local_store
    from trunkfs.store.codec import blob_id
    store = open_local_store(workdir)
    try:
        session = store.session()

        def raw_tree(entries: list[dict]) -> str:   # as another daemon on the bucket stores one
            raw = std_json.dumps({"v": 1, "entries": entries}, separators=(",", ":")).encode()
            return session.trees.add(raw, blob_id(raw)).hex()

        def file(name: str, **odd: object) -> dict:
            return dict({"name": name, "type": FILE, "mode": 0o644, "mtime": 1, "size": 1,
                         "chunks": [["ab" * 32, 1]]}, **odd)

        good = [file("a"), file("b", uid=7), {"name": "l", "type": "symlink", "mode": 0o777, "mtime": 2,
                                              "target": "a"}]
        clean = raw_tree(good)
        bad = raw_tree([*good, file("c", mode="rwx")])
        huge = raw_tree([file("h", mtime=2 ** 70)])
        own = session.put_tree([file("x"), file("y", size=2)])
        own_bad = session.put_tree([file("z"), file("w", size=-1)])
        session.flush()
        checked = lambda tree: store.index.tree_checked(bytes.fromhex(tree))   # noqa: E731
        assert checked(own), "a clean tree this daemon writes is trusted at once"
        assert not any(checked(t) for t in (clean, bad, huge, own_bad))
        store.trees.clear()
        assert store.read_tree(clean) == good
        assert [e["name"] for e in store.read_tree(bad)] == ["a", "b", "l"]
        assert store.read_tree(huge)[0]["mtime"] == 2 ** 63 - 1
        assert [e["name"] for e in store.read_tree(own_bad)] == ["z"]
        assert checked(clean) and not checked(bad) and not checked(huge) and not checked(own_bad)
    finally:
        store.close()
    again = open_local_store(workdir)     # a restart: the marks are in the index
    try:
        assert again.index.tree_checked(bytes.fromhex(clean))
        assert [e["name"] for e in again.read_tree(bad)] == ["a", "b", "l"], "checked again"
        assert again.read_tree(huge)[0]["mtime"] == 2 ** 63 - 1
        # what the mark means: a marked tree's entries are taken as stored
        again.index.mark_tree_checked(bytes.fromhex(bad), None)
        again.trees.clear()
        assert [e["name"] for e in again.read_tree(bad)] == ["a", "b", "l", "c"]
    finally:
        again.close()


def test_diff_merges_sorted_trees_as_it_compares_any_other_by_name(store):
    """Stored trees are in name order and ``diff`` merges them; a tree
    stored out of order, with a name twice or an entry that is no object
    (another writer's) is compared by name.  Both give the same changes."""
    import json as std_json

    from trunkfs.store.codec import blob_id
    session = store.session()
    rng = random.Random(7)

    def tree(entries: list, shuffle: bool) -> str:
        entries = list(entries)
        if shuffle:
            rng.shuffle(entries)
        raw = std_json.dumps({"v": 1, "entries": entries}, separators=(",", ":")).encode()
        return session.trees.add(raw, blob_id(raw)).hex()

    def file(name: str, n: int) -> dict:
        return {"name": name, "type": FILE, "mode": 0o644, "mtime": 1, "size": 1, "chunks": [[f"{n:064x}", 1]]}

    names = sorted({f"f{rng.randrange(10 ** 6)}" for _ in range(300)})
    old = [file(n, 1) for n in names if rng.random() < 0.8]
    new = [file(n, 2 if rng.random() < 0.1 else 1) for n in names if rng.random() < 0.8]
    pairs = [[tree([{"name": "d", "type": "dir", "mode": 0o755, "mtime": 1, "tree": tree(side, shuffle)}],
                   False) for side in (old, new)] for shuffle in (False, True)]
    odd_old = tree([file("a", 1), file("a", 2), "junk", file("b", 1)], False)   # a name twice, no object
    odd_new = tree([file("a", 2), file("b", 3)], False)
    odd = [tree([{"name": "d", "type": "dir", "mode": 0o755, "mtime": 1, "tree": t}], False)
           for t in (odd_old, odd_new)]
    session.flush()
    results = [list(diff_trees(store, *roots)) for roots in pairs]
    want = sorted({("M" if n in {e["name"] for e in old} and n in {e["name"] for e in new} else
                    "A" if n in {e["name"] for e in new} else "D", f"/d/{n}")
                   for e1 in (old, new) for n in {e["name"] for e in e1}
                   if {e["name"]: e for e in old}.get(n) != {e["name"]: e for e in new}.get(n)},
                  key=lambda c: c[1])
    assert results[0] == results[1] == want
    assert want and {c for c, _ in want} == {"A", "D", "M"}
    assert list(diff_trees(store, *odd)) == [("M", "/d/b")]   # the last "a" counts, as for every reader
