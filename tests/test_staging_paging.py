"""A branch view whose staged tree is larger than the daemon keeps in memory
(``--staging-entries``): the kernel holding an inode of every staged file
does not keep the staged nodes in memory, and files whose nodes were paged
out still show the right size and bytes (the kernel's writeback cache)
after a discard, a commit and a restart (docs/staging.md, "Paging")."""

from __future__ import annotations

import os
from pathlib import Path

LIMIT = 50
NEW_DIRS, PER_DIR = 12, 100


def _staging(d) -> dict:
    return d.cli("stats", "--json").json()["staging"]


def _make_many(view: Path, top: str) -> list[os.stat_result]:
    """NEW_DIRS x PER_DIR new small files, each stat'ed (the kernel keeps an inode of each)."""
    held = []
    for k in range(NEW_DIRS):
        sub = view / top / f"d{k:02d}"
        sub.mkdir(parents=True)
        for i in range(PER_DIR):
            p = sub / f"f{i:03d}"
            p.write_bytes(b"%d/%d\n" % (k, i))
            held.append(os.stat(p))
    return held


def test_staged_nodes_are_not_held_by_the_kernels_inodes(daemon_factory, workdir):
    d = daemon_factory(mount=True, extra=["--staging-entries", str(LIMIT)])
    d.cli("repo", "create", "r")
    src = workdir / "src"
    (src / "c").mkdir(parents=True)
    for i in range(20):
        (src / "c" / f"k{i:02d}").write_bytes(b"committed%d" % (i % 10))   # 10 bytes each
    d.cli("put", "r", str(src / "c"))
    view = d.mount / "r"
    kept = sorted((view / "c").iterdir())
    assert len(kept) == 20

    # the committed files grow through the view, then 1,200 new files page them out
    for p in kept:
        p.write_bytes(b"x" * 5000)
    held = _make_many(view, "new")
    assert len(held) == NEW_DIRS * PER_DIR and len({s.st_ino for s in held}) == len(held)
    staging = _staging(d)
    assert staging["limit"] == LIMIT
    assert staging["nodes"] <= 6 * LIMIT, f"{staging['nodes']} staged nodes held for {len(held)} files"
    assert all(os.stat(p).st_size == 5000 for p in kept)

    # a discard puts the committed files back: their size is the committed one,
    # not the 5000 bytes the kernel cached for the inode it held
    d.cli("discard", "r")
    for p in kept:
        assert os.stat(p).st_size == 10 and p.read_bytes().startswith(b"committed"), p
    assert not (view / "new").exists()

    # staged again, paged out again, committed: each file shows its new size
    for p in kept:
        p.write_bytes(b"seven.." if p.name != "k00" else b"")
    _make_many(view, "more")
    assert _staging(d)["nodes"] <= 6 * LIMIT
    cid = d.cli("commit", "r", "-m", "paged", "--json").json()["commit"]
    for p in kept:
        assert os.stat(p).st_size == (0 if p.name == "k00" else 7), p
    assert (d.mount / f"r@{cid}" / "c" / "k05").read_bytes() == b"seven.."
    assert (d.mount / f"r@{cid}" / "more" / "d11" / "f099").read_bytes() == b"11/99\n"

    # staged over the commit, then a restart: nothing is in memory until asked for
    for p in kept[:5]:
        p.write_bytes(b"after the commit")
    d.stop()
    d.start()
    assert _staging(d)["nodes"] <= 2
    assert [os.stat(p).st_size for p in kept[:6]] == [16] * 5 + [7]
    assert d.cli("status", "r").out.split() == [x for p in kept[:5] for x in ("M", f"/c/{p.name}")]
