"""Several daemons on one store (one file:// directory, one moto bucket):
each finds the data the others wrote without listing the store, and
concurrent commits to one branch all land, in one linear history."""

from __future__ import annotations

import concurrent.futures
import os
from pathlib import Path



def fleet(daemon_factory, store_url: str, extra: list[str], n: int = 3) -> list:
    return [daemon_factory(f"d{i}", store_url=store_url, extra=extra) for i in range(n)]


def put_files(d, src: Path, tag: str, count: int) -> list[str]:
    """``count`` puts of one small file each into r@main, one after the
    other, through the Python client (one commit each)."""
    made = []
    with d.client() as c:
        for i in range(count):
            f = src / f"{tag}-{i:03d}.txt"
            f.write_bytes(f"{tag} file {i}\n".encode() + os.urandom(64).hex().encode())
            c.put("r", [str(f)])
            made.append(f.name)
    return made


def test_three_daemons_commit_to_one_branch_and_read_each_others_data(daemon_factory, workdir, shared_store):
    url, extra = shared_store
    daemons = fleet(daemon_factory, url, extra)
    daemons[0].cli("repo", "create", "r")
    src = workdir / "src"
    src.mkdir()
    per_daemon = 50
    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        made = list(pool.map(lambda i: put_files(daemons[i], src, f"d{i}", per_daemon), range(3)))
    names = sorted(n for part in made for n in part)
    for k, d in enumerate(daemons):      # every daemon lists and reads what every daemon wrote
        listed = sorted(e["name"] for e in d.cli("ls", "r:/", "--json").json()["entries"])
        assert listed == names
        with d.client() as c:
            for name in names[k::3]:
                assert c.cat("r", f"/{name}") == (src / name).read_bytes()
        log = d.cli("log", "r", "--json", "-n", "1000").json()
        assert len(log) == 3 * per_daemon        # no commit lost, one linear history
        with d.client() as c:
            for newer, older in zip(log, log[1:]):
                assert c.show("r", newer["id"]).parents == [older["id"]]
        assert d.cli("fsck", "--json").json()["problems"] == []


def test_a_commit_names_its_packs_and_another_store_indexes_them_without_listing(workdir, caplog):
    """In process: two Store objects on one directory, as two daemons. B was
    opened before A wrote; B reads A's commits (and their ancestors') by
    indexing the packs they name, never by listing the store."""
    import logging
    from trunkfs.store.backends.factory import open_backend
    from trunkfs.store.objects import FILE, Commit
    from trunkfs.store.refs import Refs
    from trunkfs.store.store import Store
    from trunkfs.store.treeedit import TreeEditor
    from trunkfs.store.walk import lookup

    url = f"file://{workdir / 'one-store'}"

    def open_store(name: str) -> Store:
        return Store(open_backend(url), str(workdir / name / "index"), str(workdir / name / "tmp")).open()

    a, b = open_store("a"), open_store("b")
    try:
        info = Refs(a).create_repo("r")
        head = None
        for i in range(3):         # three commits on A, each in a session of its own
            session = a.session()
            ed = TreeEditor(a, a.read_commit(head).tree if head else None)
            chunks, size = session.put_bytes(f"version {i}".encode() * 1000)
            ed.put(f"/f{i}", {"type": FILE, "mode": 0o644, "mtime": 1, "size": size, "chunks": chunks})
            root = ed.write(session)
            session.flush()
            assert session.pack_ids(), "a session that stored blobs names their packs"
            head = a.write_commit(Commit(repo="r", repo_id=info.id, tree=root["tree"],
                                         parents=[head] if head else [], packs=session.pack_ids()))
        caplog.set_level(logging.INFO, logger="trunkfs.store.store")
        top = b.read_commit(head).root_entry()
        for i in range(3):
            entry = lookup(b, top, [f"f{i}"])
            assert b"".join(b.iter_file(entry)) == f"version {i}".encode() * 1000
        assert not any("indexing the store's packs" in r.getMessage() for r in caplog.records)
    finally:
        a.close()
        b.close()


def test_each_daemon_has_a_stable_id_on_its_commits_and_in_the_fleet(daemon_factory, workdir):
    """Who is who: a daemon's id lives in its state directory (the same after
    a restart), is recorded on the commits it writes, and `trunkfs fleet` on
    any daemon lists every daemon of the store seen recently."""
    url = f"file://{workdir / 'shared-store'}"
    a, b = fleet(daemon_factory, url, [], n=2)
    listed = a.cli("fleet", "--json").json()
    assert len(listed) == 2 and all(m["up"] for m in listed)
    ids = {m["id"] for m in listed}
    assert {m["id"] for m in b.cli("fleet", "--json").json()} == ids
    assert all(m["host"] and m["pid"] for m in listed)
    a.cli("repo", "create", "r")
    (workdir / "x").write_bytes(b"x")
    a.cli("put", "r", str(workdir / "x"))
    a_id = next(m["id"] for m in listed if m["pid"] == a.pid)
    head = a.cli("log", "r", "--json").json()[0]
    assert b.cli("show", f"r@{head['id']}", "--json").json()["daemon"] == a_id
    a.stop()
    a.start()
    again = {m["id"]: m for m in b.cli("fleet", "--json").json()}
    assert set(again) == ids and again[a_id]["pid"] == a.pid     # the same id after a restart
    assert a_id in a.cli("fleet").out
