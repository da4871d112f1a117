#!/usr/bin/env python3
r"""POSIX conformance against a branch view: pjdfstest and fsx, both built
outside the repository (never commit them), run against one trunkfs daemon
with its mount's writeback cache on (the default).

  pjdfstest   ``prove -r TESTS`` in ``<mount>/r/pjd``; the daemon runs with
              ``--allow-other`` and repo ``r`` grants ``write`` to everyone
              (pjdfstest switches to other uids; a new repo grants them only
              ``read``, so they would get EACCES from the repo's access list)
  fsx         xfstests' ``ltp/fsx.c``: ``--ops`` operations on a new file,
              then on a committed 256 KiB file being rewritten (``-k -E``:
              keep the file's bytes, no copy_file_range, whose start-up probe
              rewrites a byte behind fsx's model), with ``trunkfs commit``
              every ``--commit-every`` seconds meanwhile

RESULT keys: ``pjdfstest_files``, ``pjdfstest_tests``, ``pjdfstest_failed``
(0 is the target), ``fsx_new_ok`` and ``fsx_committed_ok`` (1 when fsx
printed "All N operations completed A-OK!"), ``commits``.

Building them (outside the repository, as root, Debian):

  apt-get install -y autoconf automake
  git clone https://github.com/pjd/pjdfstest /tmp/pjdfstest
  (cd /tmp/pjdfstest && autoreconf -ifs && ./configure && make pjdfstest)
  # fsx: ltp/fsx.c, src/global.h and src/statx.h of
  # https://github.com/kdave/xfstests in one directory, then in it:
  for h in SYS_TYPES_H SYS_STAT_H SYS_STATVFS_H SYS_TIME_H SYS_IOCTL_H SYS_WAIT_H \
      MALLOC_H DIRENT_H STDLIB_H UNISTD_H ERRNO_H STRING_H SYS_FCNTL_H SYS_PARAM_H \
      LIBGEN_H ASSERT_H; do echo "#define HAVE_$h 1"; done > config.h
  gcc -O2 -D_GNU_SOURCE -I. -include getopt.h -include stdint.h -o fsx fsx.c

Needs root.  The temp dir is removed at the end (unless --keep); the
daemon is stopped by its pid and its mount unmounted.

Usage: python bench/conformance.py [--pjdfstest DIR] [--fsx PATH]
                                   [--ops N] [--commit-every S] [--keep]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from benchlib import TRUNKFS, bench_daemon, cleanup, log, need_root


def run_pjdfstest(mount: Path, tests: Path) -> dict[str, float]:
    work = mount / "r" / "pjd"
    work.mkdir()
    os.chmod(work, 0o777)
    done = subprocess.run(["prove", "-r", str(tests)], cwd=work, capture_output=True, text=True)
    failed = [line for line in done.stdout.splitlines() if "Failed:" in line or "Wstat:" in line]
    for line in failed:
        print(f"  {line.strip()}")
    summary = re.search(r"Files=(\d+), Tests=(\d+)", done.stdout)
    counts = [int(n) for n in re.findall(r"Failed: (\d+)\)", done.stdout)]
    for line in done.stdout.splitlines()[-3:]:
        print(f"pjdfstest: {line}")
    if summary is None:
        raise SystemExit(f"prove printed no summary:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return {"pjdfstest_files": int(summary[1]), "pjdfstest_tests": int(summary[2]),
            "pjdfstest_failed": sum(counts) + (0 if done.returncode == 0 or counts else 1)}


def run_fsx(fsx: str, args: list[str], workdir: Path) -> bool:
    done = subprocess.run([fsx, *args], capture_output=True, text=True, cwd=workdir)
    last = (done.stdout + done.stderr).strip().splitlines()[-1:] or ["(nothing)"]
    print(f"fsx {' '.join(args)}: exit {done.returncode}, {last[0]}")
    return done.returncode == 0 and "A-OK" in last[0]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pjdfstest", type=Path, help="a built pjdfstest checkout (its tests/ and pjdfstest)")
    ap.add_argument("--fsx", help="a built fsx binary")
    ap.add_argument("--ops", type=int, default=200_000)
    ap.add_argument("--commit-every", type=float, default=3.0)
    ap.add_argument("--workdir", default="/var/tmp")
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    need_root("conformance.py")
    if args.pjdfstest is None and args.fsx is None:
        ap.error("give --pjdfstest DIR, --fsx PATH or both (see --help for building them)")
    if args.pjdfstest is not None and not (args.pjdfstest / "pjdfstest").is_file():
        ap.error(f"{args.pjdfstest}/pjdfstest is not built")
    tmp = Path(tempfile.mkdtemp(prefix="trunkfs-conformance-", dir=args.workdir))
    os.chmod(tmp, 0o755)   # other uids walk down to the mount
    d = bench_daemon(tmp / "daemon", mount=True)
    d.extra += ["--allow-other"]
    figures: dict[str, float] = {}
    stop = threading.Event()
    commits = [0]

    def committer() -> None:
        while not stop.wait(args.commit_every):
            done = subprocess.run([*TRUNKFS, "commit", "r", "-m", "fsx"], env=d.env, capture_output=True)
            commits[0] += done.returncode == 0

    try:
        d.start()
        assert d.mount is not None
        d.cli("repo", "create", "r")
        d.cli("repo", "acl", "r", "--grant", "everyone=write")
        if args.pjdfstest is not None:
            log(f"pjdfstest: prove -r {args.pjdfstest / 'tests'} in <mount>/r/pjd")
            figures.update(run_pjdfstest(d.mount, args.pjdfstest / "tests"))
        if args.fsx is not None:
            (d.mount / "r" / "committed").write_bytes(os.urandom(256 * 1024))
            d.cli("commit", "r", "-m", "fsx base")
            thread = threading.Thread(target=committer)
            thread.start()
            try:
                ops = str(args.ops)
                log(f"fsx: {ops} operations on a new file, then on a committed one")
                figures["fsx_new_ok"] = run_fsx(args.fsx, ["-N", ops, "-q", "-S", "1", "-c", "1000",
                                                           str(d.mount / "r" / "new")], tmp)
                figures["fsx_committed_ok"] = run_fsx(args.fsx, ["-k", "-E", "-N", ops, "-q", "-S", "2", "-c",
                                                                 "1000", str(d.mount / "r" / "committed")], tmp)
            finally:
                stop.set()
                thread.join()
            figures["commits"] = commits[0]
    finally:
        stop.set()
        d.stop()
        cleanup(tmp, args.keep)
    print("RESULT " + " ".join(f"{k}={int(v)}" for k, v in figures.items()))
    return 0 if figures.get("pjdfstest_failed", 0) == 0 and all(
        figures.get(k, True) for k in ("fsx_new_ok", "fsx_committed_ok")) else 1


if __name__ == "__main__":
    sys.exit(main())
