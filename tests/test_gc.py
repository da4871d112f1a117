"""The garbage collector: what it deletes and keeps, its grace period beside
a writer on another daemon, retention, and SIGKILL at any point."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import open_local_store
from trunkfs.store.gc import Collector
from trunkfs.store.objects import FILE, Commit
from trunkfs.store.refs import Refs
from trunkfs.store.retention import RetentionRule, RetentionRules
from trunkfs.store.store import SessionExpired, Store, condemned_key
from trunkfs.store.treeedit import TreeEditor

MiB = 1 << 20


def pack_bytes(store_dir: Path) -> int:
    return sum(p.stat().st_size for p in (store_dir / "packs").rglob("*") if p.is_file())


def put_random(d, workdir: Path, repo: str, name: str, size: int) -> tuple[str, bytes]:
    data = os.urandom(size)
    (workdir / name).write_bytes(data)
    return d.cli("put", f"{repo}:/", str(workdir / name)).out.strip(), data


def test_gc_keeps_every_live_commit_and_shrinks_the_store_to_the_live_data(daemon, workdir):
    d = daemon
    d.cli("repo", "create", "keep")
    _, kept = put_random(d, workdir, "keep", "a", 2 * MiB)
    d.cli("tag", "create", "keep", "v1")
    d.cli("repo", "create", "gone")
    put_random(d, workdir, "gone", "g", 3 * MiB)
    d.cli("repo", "create", "big")
    versions = [put_random(d, workdir, "big", "big.bin", 3 * MiB) for _ in range(5)]
    d.cli("retention", "set", "big", "--keep-last", "1")
    d.cli("repo", "delete", "gone")
    assert d.cli("fsck", "--read-data", "--json").json()["problems"] == []
    before = pack_bytes(d.store_dir)
    assert before > 20 * MiB
    bad = d.cli("gc", "--max-unused", "2", check=False)
    assert bad.returncode == 1 and "max_unused" in bad.err
    assert d.cli("gc", "--grace", "-1h", check=False).returncode != 0
    dry = d.cli("gc", "--dry-run", "--grace", "0", "--json").json()
    assert dry["deleted"] == 0 and dry["reclaimable_bytes"] > 14 * MiB
    assert pack_bytes(d.store_dir) == before                   # a dry run changes nothing
    assert d.cli("gc", "--json").json()["deleted"] == 0         # default grace: all of it is young
    assert pack_bytes(d.store_dir) == before
    report = d.cli("gc", "--grace", "0", "--json").json()
    assert report["deleted"] > 0 and report["expired_commits"] == 5   # four old versions, gone's one
    live = 2 * MiB + 3 * MiB
    after = pack_bytes(d.store_dir)
    assert after <= live * 1.1, (before, after)
    assert d.cli("cat", "keep:/a").stdout == kept
    assert d.cli("cat", "keep@v1:/a").stdout == kept
    assert d.cli("cat", "big:/big.bin").stdout == versions[-1][1]
    assert [c["id"] for c in d.cli("log", "big", "--json").json()] == [versions[-1][0]]
    old = d.cli("cat", f"big@{versions[0][0]}:/big.bin", check=False)
    assert old.returncode == 1 and "expired" in old.err
    assert d.cli("fsck", "--read-data", "--json").json()["problems"] == []
    assert d.cli("stats", "--json").json()["gc"]["deleted"] == report["deleted"]
    again = d.cli("gc", "--grace", "0", "--json").json()       # nothing left to do
    assert again["deleted"] == 0 and again["expired_commits"] == 0, json.dumps(again) + json.dumps(report)


def test_gc_beside_a_writer_on_another_daemon(daemon_factory, workdir):
    """B puts the bytes of a pack the collector on A condemned: B stores them
    anew, in a pack of its own; A deletes the condemned packs only after the
    grace period, and B's commit reads back whole on both daemons."""
    url = f"file://{workdir / 'shared'}"
    a = daemon_factory("a", store_url=url)
    b = daemon_factory("b", store_url=url)
    a.cli("repo", "create", "old")
    _, data = put_random(a, workdir, "old", "x", MiB)
    a.cli("repo", "delete", "old")
    time.sleep(4.5)        # its commit and pack are older than the grace (2 s) and its margin
    first = a.cli("gc", "--grace", "2", "--json").json()
    assert first["condemned"] >= 1 and first["deleted"] == 0
    b.cli("repo", "create", "new")
    (workdir / "x").write_bytes(data)                 # the same bytes, on B
    c = b.cli("put", "new:/", str(workdir / "x")).out.strip()
    time.sleep(4.5)                                   # grace + its margin since the condemnation
    second = a.cli("gc", "--grace", "2", "--json").json()
    # B stored those bytes anew, in packs of its own: every condemned pack goes
    assert second["pardoned"] == 0 and second["deleted"] == first["condemned"], (first, second)
    for d in (a, b):
        assert d.cli("cat", f"new@{c}:/x").stdout == data
        assert d.cli("fsck", "--read-data", "--json").json()["problems"] == []


@pytest.fixture
def two_stores(workdir: Path):
    """Two stores on one directory, as two daemons with their own indexes."""
    a = open_local_store(workdir)
    b = Store(a.backend, str(workdir / "b-index"), str(workdir / "b-tmp")).open()
    try:
        yield a, b
    finally:
        b.close()
        a.close()


def _commit_file(store: Store, refs: Refs, repo: str, data: bytes) -> str:
    session = store.session()
    head, version = refs.read_branch(repo, "main")
    ed = TreeEditor(store, store.read_commit(head).tree if head else None)
    chunks, size = session.put_bytes(data)
    ed.put(f"/f{len(data)}-{random.random()}", {"type": FILE, "mode": 0o644, "mtime": 1, "size": size,
                                                "chunks": chunks})
    root = ed.write(session)
    session.flush()
    store.check_session(session)
    info = refs.get_repo(repo)
    cid = store.write_commit(Commit(repo=repo, repo_id=info.id, tree=root["tree"], parents=[head] if head else [],
                                    packs=session.pack_ids()))
    refs.move_branch(repo, "main", cid, version)
    return cid


def test_a_session_that_reuses_a_condemned_pack_past_its_deadline_may_not_commit(two_stores):
    a, b = two_stores
    refs = Refs(a)
    refs.create_repo("r")
    data = os.urandom(300_000)
    _commit_file(a, refs, "r", data)
    b.sync_index()
    session = b.session()                       # B knows of no condemned pack yet
    session.put_bytes(data)
    session.flush()
    (pack,) = session.packs_used()
    first = condemned_key(pack, time.time(), 3600)    # one key: time.time() twice may name two seconds
    a.backend.put(first, b"")
    b.check_session(session)                    # condemned, but before its deadline: fine
    a.backend.delete(first)
    a.backend.put(condemned_key(pack, time.time() - 10, 5), b"")
    b._condemned_read = -1e9                    # (as after CONDEMNED_CHECK seconds)
    with pytest.raises(SessionExpired):
        b.check_session(session)
    fresh = b.session()                         # a new session does not reuse it: stores anew
    chunks, _ = fresh.put_bytes(data)
    fresh.flush()
    assert fresh.data.new_blobs == len(chunks) and session.data.new_blobs == 0
    assert pack not in fresh.packs_used()
    b.session_limit = 0.01
    time.sleep(0.05)
    with pytest.raises(SessionExpired):
        b.check_session(fresh)


_COLLECT = """
import sys
sys.path.insert(0, sys.argv[2])
from tests.conftest import open_local_store
from trunkfs.store.gc import Collector
from pathlib import Path
store = open_local_store(Path(sys.argv[1]))
Collector(store, grace=0).run()
store.close()
"""


def test_gc_killed_at_any_point_loses_nothing_and_the_next_run_finishes(workdir):
    base = workdir / "s"
    store = open_local_store(base)
    refs = Refs(store)
    refs.create_repo("live")
    refs.create_repo("dead")
    live = {}
    for i in range(40):
        data = os.urandom(20_000 + i)
        live[_commit_file(store, refs, "live", data)] = data
        _commit_file(store, refs, "dead", os.urandom(20_000 + i))
    refs.delete_repo("dead")
    store.close()
    root = str(Path(__file__).resolve().parent.parent)
    for delay in (0.05, 0.2, 0.4, 0.6, 0.9, 1.3):
        proc = subprocess.Popen([sys.executable, "-c", _COLLECT, str(base), root],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(delay)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        proc.wait()
    store = open_local_store(base)
    try:
        Collector(store, grace=0).run()                           # finishes what the killed runs left
        final = Collector(store, grace=0).run()
        assert final.deleted == 0 and final.reclaimable_bytes == 0 and final.packs == final.live_packs
        head, _ = Refs(store).read_branch("live", "main")
        tree = store.read_commit(head).tree
        from trunkfs.store.walk import walk
        got = {b"".join(store.iter_file(e)) for _, e in walk(store, {"type": "dir", "tree": tree})
               if e["type"] == FILE}
        assert got == set(live.values())
        from trunkfs.store.fsck import fsck
        assert fsck(store, read_data=True).problems == []
        assert not list((base / "store" / "gc" / "condemned").iterdir())   # no record left behind
    finally:
        store.close()


def test_retention_rules_per_branch_and_by_age_choose_the_commits_that_expire(workdir):
    from trunkfs.store.retention import RetentionRule, RetentionRules
    store = open_local_store(workdir)
    try:
        refs = Refs(store)
        refs.create_repo("r")
        main = [_commit_file(store, refs, "r", os.urandom(5000)) for _ in range(3)]
        refs.create_branch("r", "dev", main[1])
        main += [_commit_file(store, refs, "r", os.urandom(5000)) for _ in range(3)]   # main[3..5]
        rules = RetentionRules(store.backend)
        rules.change("r", RetentionRule("main", keep_last=2), "main")
        report = Collector(store, grace=0).run()
        # main keeps its two newest; dev (no rule: everything) keeps main[0], main[1]
        assert report.expired_commits == 2
        for cid in (main[2], main[3]):
            assert store.expired(cid)
        for cid in (main[0], main[1], main[4], main[5]):
            assert store.read_commit(cid).repo == "r"
        rules.change("r", RetentionRule(None, keep_days=1), None)   # the repo's: one day, dev too
        assert Collector(store, grace=0).run().expired_commits == 0  # all are younger than a day
        with pytest.raises(Exception, match="keep_last"):
            RetentionRule.from_json({"branch": None, "keep_last": 0})
    finally:
        store.close()


def test_a_mostly_garbage_pack_is_repacked_and_another_daemon_still_reads_its_live_blobs(two_stores):
    a, b = two_stores
    refs = Refs(a)
    refs.create_repo("r")
    keep, drop = os.urandom(100_000), os.urandom(900_000)
    session = a.session()                       # one session: both files in one pack
    ed = TreeEditor(a, None)
    for name, data in (("keep", keep), ("drop", drop)):
        chunks, size = session.put_bytes(data)
        ed.put(f"/{name}", {"type": FILE, "mode": 0o644, "mtime": 1, "size": size, "chunks": chunks})
    root = ed.write(session)
    session.flush()
    info = refs.get_repo("r")
    first = a.write_commit(Commit(repo="r", repo_id=info.id, tree=root["tree"], parents=[],
                                  packs=session.pack_ids(), time=time.time() - 10))
    _, version = refs.read_branch("r", "main")
    refs.move_branch("r", "main", first, version)
    session = a.session()
    ed = TreeEditor(a, root["tree"])
    ed.remove("/drop")
    root2 = ed.write(session)
    session.flush()
    second = a.write_commit(Commit(repo="r", repo_id=info.id, tree=root2["tree"], parents=[first],
                                   packs=session.pack_ids()))
    _, version = refs.read_branch("r", "main")
    refs.move_branch("r", "main", second, version)
    RetentionRules(a.backend).change("r", RetentionRule(None, keep_last=1), None)
    b.sync_index()                              # B's index points at the old pack
    entry = b.tree_index(root2["tree"])["keep"]
    report = Collector(a, grace=0).run()
    assert report.repacked >= 1 and report.deleted >= 1
    assert 0.9 <= report.live_blob_bytes / (report.live_pack_bytes or 1)
    assert b"".join(a.iter_file(entry)) == keep
    assert b"".join(b.iter_file(entry)) == keep  # B finds the copy (the tombstone names it)
    from trunkfs.store.fsck import fsck
    assert fsck(a, read_data=True).problems == [] and fsck(b, read_data=True).problems == []
