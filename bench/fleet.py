#!/usr/bin/env python3
"""Fleet benchmark: three trunkfs daemons on one S3 bucket (moto's server on
127.0.0.1, started here), in one run.

  contended_commits_per_s   three daemons putting one small file each, N times,
                            into the same branch at once: commits / second
                            (every commit is checked to be in the history after)
  separate_commits_per_s    the same into three branches, one per daemon
                            (target: at least 2 x contended)
  visible_p50_s, _p99_s     from the end of a `trunkfs put` on daemon A to the
                            file showing in daemon B's mount (<mount>/<repo>/),
                            over M samples (target p99 < 2)
  daemon_rss_mib            the largest peak RSS (VmHWM) of the three daemons

Prints a table and, last, `RESULT key=value ...`.  Progress goes to stderr.

Usage: python bench/fleet.py [--commits N] [--samples M] [--keep]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchlib import DaemonProcess, cleanup, log, peak_rss_mib

from tests import s3server  # the moto server the tests use (benchlib put the checkout on the path)

AWS_ENV = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull}


def start_moto(tmp: Path) -> tuple[subprocess.Popen, str]:
    logf = tmp / "moto.log"
    proc = subprocess.Popen([sys.executable, s3server.__file__, s3server.HOST], stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=open(logf, "wb"), text=True,
                            env=dict(os.environ, **AWS_ENV))
    port = s3server._wait_for_port(proc, str(logf), timeout=30)
    endpoint = f"http://{s3server.HOST}:{port}"
    s3server._wait_until_answering(endpoint, proc, timeout=30)
    return proc, endpoint


def s3_daemon_with(base: Path, store: str, endpoint: str, src: Path, extra: list[str] | None = None) -> DaemonProcess:
    """A mounting daemon on an S3 store of the moto server at ``endpoint``,
    ``src`` put into a new repo ``raw`` (and removed from the local disk)."""
    d = DaemonProcess(base, store, ["--s3-endpoint", endpoint, "--log-level", "WARNING", *(extra or [])],
                      mount=True)
    d.env.update(AWS_ENV)
    d.start()
    d.cli("repo", "create", "raw")
    log("trunkfs put")
    d.cli("put", "raw", str(src))
    src.unlink()
    return d


def puts(d: DaemonProcess, src: Path, branch: str, tag: str, n: int) -> None:
    """``n`` puts of one small file into ``r@branch``, through the Python client
    (one connection: the figure is the daemons' and the store's, not the CLI's start)."""
    with d.client() as c:
        for i in range(n):
            f = src / f"{tag}-{i:04d}"
            f.write_bytes(f"{tag} {i}\n".encode())
            c.put("r", [str(f)], branch=branch)


def timed_puts(daemons: list[DaemonProcess], src: Path, branches: list[str], n: int, tag: str) -> float:
    t = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(len(daemons)) as pool:
        list(pool.map(lambda i: puts(daemons[i], src, branches[i], f"{tag}-d{i}", n), range(len(daemons))))
    return time.perf_counter() - t


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--commits", type=int, default=20, help="commits per daemon in each commit test")
    ap.add_argument("--samples", type=int, default=30, help="visibility samples")
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    n, m = args.commits, args.samples
    os.environ.update(AWS_ENV)
    tmp = Path(tempfile.mkdtemp(prefix="trunkfs-bench-fleet-"))
    moto, endpoint = start_moto(tmp)
    daemons: list[DaemonProcess] = []
    try:
        import boto3
        boto3.session.Session().client("s3", endpoint_url=endpoint).create_bucket(Bucket="fleet")
        url = "s3://fleet/bench"
        for i, name in enumerate("abc"):
            d = DaemonProcess(tmp / name, url, ["--s3-endpoint", endpoint], mount=(name == "b"),
                              log_level="WARNING")
            daemons.append(d.start())
        a, b, _ = daemons
        a.cli("repo", "create", "r")
        for name in "abc":
            a.cli("branch", "create", f"r@{name}")
        src = tmp / "src"
        src.mkdir()

        log(f"contended: 3 daemons x {n} puts into r@main")
        took = timed_puts(daemons, src, ["main"] * 3, n, "contended")
        contended = 3 * n / took
        history = a.cli("log", "r", "--json").json()
        assert len(history) == 3 * n, f"{len(history)} commits in r@main, {3 * n} made: a commit was lost"

        log(f"separate: 3 daemons x {n} puts, a branch each")
        took = timed_puts(daemons, src, ["a", "b", "c"], n, "separate")
        separate = 3 * n / took
        for name in "abc":
            assert len(a.cli("log", f"r@{name}", "--json").json()) == n

        log(f"visibility: {m} puts on A, each awaited on B's mount")
        assert b.mount is not None
        waits: list[float] = []
        for i in range(m):
            f = src / f"seen-{i:04d}"
            f.write_bytes(b"%d" % i)
            a.cli("put", "r:/", str(f))
            t = time.perf_counter()
            target = b.mount / "r" / f.name
            while not target.exists():
                if time.perf_counter() - t > 30:
                    break
                time.sleep(0.005)
            waits.append(time.perf_counter() - t)
        waits.sort()
        p50 = statistics.median(waits)
        p99 = waits[min(len(waits) - 1, int(round(0.99 * (len(waits) - 1))))]
        rss = max(peak_rss_mib(d) for d in daemons)
    finally:
        for d in daemons:
            d.stop()
        s3server._stop(moto)
        cleanup(tmp, args.keep)
    print(f"{'key':<24} {'value':>8}   target")
    print(f"{'contended_commits_per_s':<24} {contended:>8.2f}   -      (3 daemons, one branch, {3 * n} commits)")
    print(f"{'separate_commits_per_s':<24} {separate:>8.2f}   >= {2 * contended:.2f} (2 x contended)")
    print(f"{'visible_p50_s':<24} {p50:>8.3f}   -      (put on A to B's mount, {m} samples)")
    print(f"{'visible_p99_s':<24} {p99:>8.3f}   < 2")
    print(f"{'daemon_rss_mib':<24} {rss:>8.0f}   -      (largest VmHWM of the three)")
    print(f"RESULT contended_commits_per_s={contended:.2f} separate_commits_per_s={separate:.2f} "
          f"visible_p50_s={p50:.3f} visible_p99_s={p99:.3f} daemon_rss_mib={rss:.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
