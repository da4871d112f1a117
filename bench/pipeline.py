#!/usr/bin/env python3
"""Pipeline benchmark: the overhead trunkfs adds per datum, and how fast an
incremental job turns one changed input file into a new output commit.

  per_datum_ms   a job of 1,000 datums (glob "/*" over 1,000 files) whose
                 command is `true`: the job's run time / 1,000 (target < 20)
  incremental_s  the same pipeline after one of the 1,000 files changed: from
                 the start of `trunkfs put` to the output commit (target < 2)

Also printed for scale: the time of 1,000 plain `true` processes started one
after the other by Python (the floor of any process-per-datum design).
Prints a table and, last, `RESULT key=value ...`.

Usage: python bench/pipeline.py [--datums N] [--keep]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchlib import bench_daemon, cleanup, log


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datums", type=int, default=1000)
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    n = args.datums
    tmp = Path(tempfile.mkdtemp(prefix="trunkfs-bench-pipeline-"))
    d = bench_daemon(tmp)
    try:
        src = tmp / "src"
        src.mkdir()
        for i in range(n):
            (src / f"f{i:05d}").write_bytes(b"%d\n" % i)
        d.start()
        d.cli("repo", "create", "raw")
        spec = tmp / "spec.json"
        spec.write_text(json.dumps({"name": "noop", "input": {"repo": "raw", "glob": "/*"},
                                    "transform": {"cmd": ["true"]}}))
        d.cli("pipeline", "create", "-f", str(spec))
        log(f"putting {n} files: one job of {n} datums")
        put = d.cli("put", "raw", *[str(p) for p in sorted(src.iterdir())], "--json").json()
        job = d.cli("job", "wait", put["jobs"][0], "--json").json()
        assert job["state"] == "succeeded" and job["datums"]["processed"] == n, job
        per_datum_ms = job["duration"] / n * 1000

        log("changing one file: an incremental job")
        (src / "f00042").write_bytes(b"changed\n")
        t = time.perf_counter()
        put = d.cli("put", "raw", str(src / "f00042"), "--json").json()
        job = d.cli("job", "wait", put["jobs"][0], "--json").json()
        incremental_s = time.perf_counter() - t
        assert job["state"] == "succeeded" and job["datums"]["processed"] == 1, job
        assert job["datums"]["skipped"] == n - 1, job

        log(f"{n} plain `true` processes for scale")
        t = time.perf_counter()
        for _ in range(n):
            subprocess.run(["true"], check=True)
        spawn_ms = (time.perf_counter() - t) / n * 1000
    finally:
        d.stop()
        cleanup(tmp, args.keep)
    print(f"{'key':<16} {'value':>10}   target")
    print(f"{'per_datum_ms':<16} {per_datum_ms:>10.2f}   < 20   ({n} datums of `true`; job run time / datums)")
    print(f"{'incremental_s':<16} {incremental_s:>10.3f}   < 2    (1 of {n} datums changed; put to output commit)")
    print(f"{'spawn_ms':<16} {spawn_ms:>10.2f}   -      (one `true` process from Python, for scale)")
    print(f"RESULT per_datum_ms={per_datum_ms:.2f} incremental_s={incremental_s:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
