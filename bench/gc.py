#!/usr/bin/env python3
"""Garbage collection benchmark, two parts in one run.

(a) The same data in trunkfs and in restic: a dataset of ``--files`` files
    of ``--file-mib`` MiB, ``--versions`` versions (each replaces a quarter
    of the files with new random data; the third also deletes one file).
    trunkfs: one `put` per version, then `retention set --keep-last 2` and
    `trunkfs gc --grace 0`; restic: one `backup` per version, then
    `forget --keep-last 2 --prune`.  Wall time of the collection and the
    store's size after, for both.

      gc_s               trunkfs gc (the daemon's `gc` request), seconds
      restic_prune_s     restic forget --keep-last 2 --prune, seconds
      live_over_stored   trunkfs: stored bytes of the live blobs / bytes of
                         the packs after gc (target >= 0.9)

(b) Scale: a store whose chunker cuts small chunks (a store setting: 256 B
    min, 512 B average, 1 KiB max), built in process with ``--chunks``
    chunks (default 1,000,000) in two repos of many small files; one repo is
    deleted (half the chunks are garbage); then a daemon on that store runs
    `trunkfs gc --grace 0`.

      gc_1m_s            its wall time
      gc_1m_peak_rss_mib the daemon's peak RSS (VmHWM) over its whole life,
                         start and gc included (target < 300)

Prints a table and, last, `RESULT key=value ...`.

Usage: python bench/gc.py [--files 16] [--file-mib 16] [--versions 4] [--chunks 1000000] [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from benchlib import bench_daemon, cleanup, log, peak_rss_mib, run, timed

MiB = 1 << 20


def du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def write_version(src: Path, files: int, size: int, version: int) -> None:
    """Version 0 writes every file; each later one rewrites a quarter of them
    (a different quarter each time); version 2 also deletes the last file."""
    src.mkdir(exist_ok=True)
    step = max(1, files // 4)
    todo = range(files) if version == 0 else range((version - 1) * step % files, (version - 1) * step % files + step)
    for i in todo:
        (src / f"f{i % files:03d}.bin").write_bytes(os.urandom(size))
    if version == 2:
        (src / f"f{files - 1:03d}.bin").unlink(missing_ok=True)


def part_a(tmp: Path, args: argparse.Namespace, r: dict) -> None:
    src = tmp / "dataset"
    d = bench_daemon(tmp / "trunkfs").start()
    env = dict(os.environ, RESTIC_PASSWORD="trunkfs-bench")
    for k in ("RESTIC_REPOSITORY", "RESTIC_PASSWORD_FILE", "RESTIC_COMPRESSION"):
        env.pop(k, None)
    restic = ["restic", "--repo", tmp / "restic", "--cache-dir", tmp / "restic-cache"]
    try:
        run([*restic, "init", "-q"], env=env, what="restic init")
        d.cli("repo", "create", "data")
        for v in range(args.versions):
            write_version(src, args.files, args.file_mib * MiB, v)
            log(f"version {v}: put and backup")
            names = sorted(str(p) for p in src.iterdir())
            # the branch holds exactly the dataset: remove what the version deleted
            listed = {e["name"] for e in d.cli("ls", "data:/", "--json").json()["entries"]} if v else set()
            gone = listed - {Path(n).name for n in names}
            if gone:
                d.cli("rm", *[f"data:/{g}" for g in sorted(gone)])
            d.cli("put", "data:/", *names)
            run([*restic, "backup", "-q", src], env=env, what="restic backup")
        store = tmp / "trunkfs" / "state" / "store"
        r["trunkfs_before_mib"] = du(store / "packs") / MiB
        r["restic_before_mib"] = du(tmp / "restic" / "data") / MiB
        d.cli("retention", "set", "data", "--keep-last", "2")
        report: dict = {}

        def collect() -> None:
            report.update(d.cli("gc", "--grace", "0", "--json").json())
        r["gc_s"] = timed(collect)
        r["restic_prune_s"] = timed(lambda: run([*restic, "forget", "-q", "--keep-last", "2", "--prune"],
                                                env=env, what="restic forget --prune"))
        r["trunkfs_after_mib"] = du(store / "packs") / MiB
        r["restic_after_mib"] = du(tmp / "restic" / "data") / MiB
        r["live_over_stored"] = report["live_blob_bytes"] / max(1, du(store / "packs"))
        r["gc_a_report"] = {k: report[k] for k in ("deleted", "repacked", "expired_commits", "live_blob_bytes")}
        problems = d.cli("fsck", "--read-data", "--json").json()["problems"]
        if problems:
            raise RuntimeError(f"fsck after gc: {problems[:3]}")
        r["a_peak_rss_mib"] = peak_rss_mib(d)
    finally:
        d.stop()


BUILD = r"""
import os, sys
sys.path.insert(0, sys.argv[1])
from pathlib import Path
from trunkfs.store.backends.factory import open_backend
from trunkfs.store.chunking import ChunkerParams
from trunkfs.store.objects import Commit, FILE
from trunkfs.store.refs import Refs
from trunkfs.store.store import Store
from trunkfs.store.treeedit import TreeEditor
state, chunks = Path(sys.argv[2]), int(sys.argv[3])
store = Store(open_backend(f"file://{state / 'store'}"), str(state / "index"), str(state / "tmp"))
store.params = ChunkerParams(min_size=256, avg_size=512, max_size=1024)
store.open()
refs = Refs(store)
per_repo = chunks // 2
file_bytes = 256 * 1024                    # about 512 chunks a file
for repo in ("live", "dead"):
    refs.create_repo(repo)
    info = refs.get_repo(repo)
    session = store.session()
    ed = TreeEditor(store, None)
    made = n = 0
    while made < per_repo:
        data = os.urandom(file_bytes)
        found, size = session.put_bytes(data)
        ed.put(f"/d{n // 64:04d}/f{n:06d}", {"type": FILE, "mode": 0o644, "mtime": 1, "size": size,
                                            "chunks": found})
        made += len(found)
        n += 1
    root = ed.write(session)
    session.flush()
    cid = store.write_commit(Commit(repo=repo, repo_id=info.id, tree=root["tree"], parents=[],
                                    packs=session.pack_ids()))
    _, version = refs.read_branch(repo, "main")
    refs.move_branch(repo, "main", cid, version)
    print(repo, made, "chunks", n, "files", flush=True)
refs.delete_repo("dead")
store.close()
"""


def part_b(tmp: Path, args: argparse.Namespace, r: dict) -> None:
    base = tmp / "scale"
    state = base / "state"
    state.mkdir(parents=True)
    log(f"building a store of {args.chunks} small chunks (half of them garbage)")
    root = str(Path(__file__).resolve().parent.parent)
    t = time.perf_counter()
    out = run([sys.executable, "-c", BUILD, root, state, args.chunks], what="build the store")
    log(f"built in {time.perf_counter() - t:.0f} s: {out.strip()}")
    d = bench_daemon(base).start()
    try:
        report: dict = {}

        def collect() -> None:
            report.update(d.cli("gc", "--grace", "0", "--json").json())
        r["gc_1m_s"] = timed(collect)
        r["gc_1m_peak_rss_mib"] = peak_rss_mib(d)
        r["gc_1m_report"] = {k: report[k] for k in ("blobs_marked", "deleted", "packs", "mark_memory_bytes")}
        r["gc_1m_chunks"] = args.chunks
    finally:
        d.stop()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--files", type=int, default=16)
    ap.add_argument("--file-mib", type=int, default=16)
    ap.add_argument("--versions", type=int, default=4)
    ap.add_argument("--chunks", type=int, default=1_000_000)
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    if not shutil.which("restic"):
        raise SystemExit("restic is needed (./setup.sh test installs it)")
    tmp = Path(tempfile.mkdtemp(prefix="trunkfs-bench-gc-", dir="/var/tmp"))
    r: dict = {}
    try:
        part_a(tmp, args, r)
        part_b(tmp, args, r)
    finally:
        cleanup(tmp, args.keep)
    print(f"{'':<28}{'trunkfs':>12}{'restic':>12}")
    print(f"{'collect (s)':<28}{r['gc_s']:>12.2f}{r['restic_prune_s']:>12.2f}")
    print(f"{'store before (MiB)':<28}{r['trunkfs_before_mib']:>12.1f}{r['restic_before_mib']:>12.1f}")
    print(f"{'store after (MiB)':<28}{r['trunkfs_after_mib']:>12.1f}{r['restic_after_mib']:>12.1f}")
    print(f"live / stored after: {r['live_over_stored']:.3f}   (part a report {json.dumps(r['gc_a_report'])})")
    print(f"scale: {r['gc_1m_chunks']} chunks: gc {r['gc_1m_s']:.1f} s, daemon VmHWM {r['gc_1m_peak_rss_mib']:.0f} MiB"
          f"   ({json.dumps(r['gc_1m_report'])})")
    print(f"targets: gc_s <= restic_prune_s, live_over_stored >= 0.9, gc_1m_peak_rss_mib < 300")
    print(f"RESULT gc_s={r['gc_s']:.2f} restic_prune_s={r['restic_prune_s']:.2f} "
          f"live_over_stored={r['live_over_stored']:.3f} gc_1m_s={r['gc_1m_s']:.1f} "
          f"gc_1m_peak_rss_mib={r['gc_1m_peak_rss_mib']:.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
