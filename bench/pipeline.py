#!/usr/bin/env python3
"""Pipeline benchmark: the overhead trunkfs adds per datum, and how fast an
incremental job turns one changed input file into a new output commit.

  per_datum_ms   a job of 1,000 datums (glob "/*" over 1,000 files) whose
                 command is `true`: the job's run time / 1,000 (target < 20)
  incremental_s  the same pipeline after one of the 1,000 files changed: from
                 the start of `trunkfs put` to the output commit (target < 2)

Also printed for scale: the time of 1,000 plain `true` processes started one
after the other by Python (the floor of any process-per-datum design).

Then the same pipeline on a Dask cluster (a real `dask scheduler` and
`dask worker` processes on 127.0.0.1, one thread each; tests/daskcluster.py):

  local_per_datum_ms  the 1,000 datums of `true` on the local executor (as per_datum_ms)
  dask_per_datum_ms   the same job on a 2-worker Dask cluster, datums in auto batches:
                      job run time / datums (target < 20)
  dask_speedup_4w     32 datums that each sleep 0.5 s, on 1 worker and on 4 workers
                      (one datum per task): time on 1 / time on 4 (target >= 3.5); it
                      shows the fan-out, not this machine's cores (sleeping datums use none)

Prints a table and, last, `RESULT key=value ...`.

Usage: python bench/pipeline.py [--datums N] [--sleepers N] [--no-dask] [--keep]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchlib import bench_daemon, cleanup, log, peak_rss_mib

from tests.daskcluster import DaskCluster


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datums", type=int, default=1000)
    ap.add_argument("--sleepers", type=int, default=32, help="datums of `sleep 0.5` for the fan-out")
    ap.add_argument("--no-dask", action="store_true", help="only the local executor")
    ap.add_argument("--batch-sweep", metavar="N,N,...",
                    help="also time the 1,000 datums on 2 Dask workers at these datums_per_task "
                         "(how the automatic batch size was chosen)")
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
        d.stop()
        sweep = [int(x) for x in args.batch_sweep.split(",")] if args.batch_sweep else []
        dask = None if args.no_dask else dask_figures(tmp, src, n, args.sleepers, sweep)
    finally:
        d.stop()
        cleanup(tmp, args.keep)
    print(f"{'key':<16} {'value':>10}   target")
    print(f"{'per_datum_ms':<16} {per_datum_ms:>10.2f}   < 20   ({n} datums of `true`; job run time / datums)")
    print(f"{'incremental_s':<16} {incremental_s:>10.3f}   < 2    (1 of {n} datums changed; put to output commit)")
    print(f"{'spawn_ms':<16} {spawn_ms:>10.2f}   -      (one `true` process from Python, for scale)")
    result = f"RESULT per_datum_ms={per_datum_ms:.2f} incremental_s={incremental_s:.3f}"
    if dask is not None:
        dask_ms, one_s, four_s = dask
        speedup = one_s / four_s
        print(f"{'local_per_datum_ms':<19} {per_datum_ms:>7.2f}   -      (the local executor, as above)")
        print(f"{'dask_per_datum_ms':<19} {dask_ms:>7.2f}   < 20   ({n} datums of `true` on 2 Dask workers)")
        print(f"{'sleepers_1w_s':<19} {one_s:>7.2f}   -      ({args.sleepers} datums of `sleep 0.5` on 1 worker)")
        print(f"{'sleepers_4w_s':<19} {four_s:>7.2f}   -      (the same on 4 workers)")
        print(f"{'dask_speedup_4w':<19} {speedup:>7.2f}   >= 3.5")
        result += (f" local_per_datum_ms={per_datum_ms:.2f} dask_per_datum_ms={dask_ms:.2f} "
                   f"dask_speedup_4w={speedup:.2f}")
    print(result)
    return 0


def timed_job(d, put: dict, expect: int) -> float:
    """The run time of the job a put started (its datums all processed)."""
    job = d.cli("job", "wait", put["jobs"][0], "--json").json()
    assert job["state"] == "succeeded" and job["datums"]["processed"] == expect, job
    return float(job["duration"])


def dask_figures(tmp: Path, src: Path, n: int, sleepers: int, sweep: list[int]) -> tuple[float, float, float]:
    """(dask_per_datum_ms, sleepers on 1 worker s, sleepers on 4 workers s);
    with ``sweep``, the 1,000 datums again at each datums_per_task, printed."""
    cluster = DaskCluster(tmp / "dask", workers=2)
    d = bench_daemon(tmp / "dask-daemon")
    try:
        cluster.start()
        d.extra += ["--executor", f"cluster={cluster.address}"]
        url = d.store_url
        d.start()
        d.cli("repo", "create", "raw")
        spec = tmp / "dask-spec.json"
        spec.write_text(json.dumps({"name": "noop", "input": {"repo": "raw", "glob": "/*"},
                                    "transform": {"cmd": ["true"]}, "executor": "cluster"}))
        d.cli("pipeline", "create", "-f", str(spec))
        log(f"the {n} datums on 2 Dask workers")
        dask_ms = timed_job(d, d.cli("put", "raw", *[str(p) for p in sorted(src.iterdir())], "--json").json(),
                            n) / n * 1000

        for size in sweep:     # a new version each time: every datum runs again
            spec.write_text(json.dumps({"name": "noop", "input": {"repo": "raw", "glob": "/*"},
                                        "transform": {"cmd": ["true"]}, "executor": "cluster",
                                        "datums_per_task": size}))
            put = d.cli("pipeline", "update", "-f", str(spec), "--reprocess", "--json").json()
            print(f"datums_per_task={size:<5} {timed_job(d, put, n) / n * 1000:7.2f} ms per datum", flush=True)

        d.cli("repo", "create", "naps")
        naps = tmp / "naps"
        naps.mkdir()
        for i in range(sleepers):
            (naps / f"n{i:03d}").write_bytes(b"%d\n" % i)
        times = []
        for workers, version in ((1, 1), (4, 2)):
            while len(cluster.live_workers()) > workers:
                cluster.kill(cluster.live_workers()[-1])
            if len(cluster.live_workers()) < workers:
                cluster.add_workers(workers - len(cluster.live_workers()))
            cluster.wait_for_workers(workers)
            cluster.open_store(url)    # as long-lived workers are: trunkfs imported, the store open
            spec.write_text(json.dumps({"name": "nap", "input": {"repo": "naps", "glob": "/*"},
                                        "transform": {"cmd": ["sleep", "0.5"]}, "executor": "cluster",
                                        "datums_per_task": 1, "parallelism": 1}))
            if version == 1:
                d.cli("pipeline", "create", "-f", str(spec))
                log(f"{sleepers} datums of sleep 0.5 on 1 worker")
                put = d.cli("put", "naps", *[str(p) for p in sorted(naps.iterdir())], "--json").json()
                times.append(timed_job(d, put, sleepers))
            else:       # a new version processes every datum again, on 4 workers now
                log(f"{sleepers} datums of sleep 0.5 on 4 workers")
                put = d.cli("pipeline", "update", "-f", str(spec), "--reprocess", "--json").json()
                times.append(timed_job(d, put, sleepers))
        log(f"daemon peak RSS over the Dask runs (VmHWM): {peak_rss_mib(d):.0f} MiB")
        return dask_ms, times[0], times[1]
    finally:
        d.stop()
        cluster.stop()


if __name__ == "__main__":
    sys.exit(main())
