"""Pipelines on several daemons sharing one store: each job runs once,
on whichever daemon claims its lease; every daemon lists the same jobs and
which daemon ran each; a daemon killed mid-job loses its lease and another
one finishes the job; a daemon started with --no-jobs runs none."""

from __future__ import annotations

import concurrent.futures
import glob
import json
import os
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.harness import wait_for

LEASE_S = 3


def fleet(daemon_factory, workdir: Path, url: str, extra: list[str], names: list[str],
          flags: dict[str, list[str]] | None = None) -> list:
    config = workdir / "fleet.toml"
    config.write_text(f"job_lease_seconds = {LEASE_S}\n")
    return [daemon_factory(n, store_url=url, extra=[*extra, "--config", str(config),
                                                    *(flags or {}).get(n, [])]) for n in names]


def register(d, workdir: Path, side: Path, sleep: float = 0) -> None:
    """A pipeline raw -> out: each datum (one file) appends its job and name
    to ``side``, then copies the file."""
    script = ("import os, shutil, sys, time\n"
              "src, dst = os.environ['TRUNKFS_INPUT'], os.environ['TRUNKFS_OUTPUT']\n"
              "for name in sorted(os.listdir(src)):\n"
              f"    with open({str(side)!r}, 'a') as f:\n"
              "        f.write(os.environ['TRUNKFS_JOB'] + ' ' + name + '\\n')\n"
              f"    time.sleep({sleep})\n"
              "    shutil.copy(os.path.join(src, name), os.path.join(dst, name))\n")
    spec = {"name": "copy", "input": {"repo": "raw", "glob": "/*"}, "output": "out",
            "transform": {"cmd": [sys.executable, "-c", script]}}
    (workdir / "copy.json").write_text(json.dumps(spec))
    d.cli("pipeline", "create", "-f", str(workdir / "copy.json"))


def daemon_id(d) -> str:
    return (d.state / "daemon-id").read_text().strip()


def all_done(d, count: int) -> list[dict]:
    jobs = d.cli("job", "list", "--json").json()
    return jobs if len(jobs) == count and all(j["state"] not in ("queued", "running") for j in jobs) else []


def test_each_job_runs_once_on_one_of_three_daemons(daemon_factory, workdir, shared_store):
    url, extra = shared_store
    daemons = fleet(daemon_factory, workdir, url, extra, ["a", "b", "c"])
    side = workdir / "runs.txt"
    side.touch()
    os.chmod(side, 0o666)
    daemons[0].cli("repo", "create", "raw")
    register(daemons[0], workdir, side)
    src = workdir / "src"
    src.mkdir()

    def puts(i: int) -> None:
        for k in range(4):
            f = src / f"d{i}-{k}.txt"
            f.write_text(f"daemon {i} file {k}\n")
            daemons[i].cli("put", "raw:/", str(f))
    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        list(pool.map(puts, range(3)))
    names = sorted(p.name for p in src.iterdir())
    listings = [wait_for(lambda d=d: all_done(d, 12), 120, "every job to finish", 0.5) for d in daemons]
    ids = {daemon_id(d) for d in daemons}
    for jobs in listings:       # every daemon shows the same jobs, and who ran each
        assert [(j["id"], j["state"], j.get("daemon")) for j in jobs] == \
            [(j["id"], j["state"], j.get("daemon")) for j in listings[0]]
    ran = [j for j in listings[0] if j["state"] == "succeeded"]
    assert ran and all(j["daemon"] in ids for j in ran)
    # a job whose input an already committed job's input contains is superseded, not run
    assert all(j["state"] == "succeeded" or j["error"].startswith("superseded") for j in listings[0])
    runs = Counter(line.split()[1] for line in side.read_text().splitlines())
    assert sorted(runs) == names and set(runs.values()) == {1}   # each datum ran once, fleet-wide
    log = daemons[1].cli("log", "out", "--json").json()
    committed = [daemons[1].cli("show", f"out@{c['id']}", "--json").json()["origin"].get("job") for c in log]
    assert sorted(committed) == sorted(j["id"] for j in ran)     # each job that ran committed once
    listed = sorted(e["name"] for e in daemons[2].cli("ls", "out:/", "--json").json()["entries"])
    assert listed == names


def test_a_job_whose_daemon_is_killed_finishes_on_another(daemon_factory, workdir, shared_store):
    url, extra = shared_store
    a, b = fleet(daemon_factory, workdir, url, extra, ["a", "b"])
    side = workdir / "runs.txt"
    side.touch()
    os.chmod(side, 0o666)
    a.cli("repo", "create", "raw")
    register(a, workdir, side, sleep=4)
    (workdir / "in.txt").write_text("payload\n")
    (job_id,) = a.cli("put", "raw:/", str(workdir / "in.txt"), "--json").json()["jobs"]
    wait_for(lambda: side.read_text().count("\n") >= 1, 30, "the datum to start")
    runner = a.cli("job", "show", job_id, "--json").json()["daemon"]
    victim, survivor = (a, b) if runner == daemon_id(a) else (b, a)
    assert runner == daemon_id(victim)
    victim.kill()                                     # kill -9, mid-datum
    try:
        done = survivor.cli("job", "wait", job_id, "--json", timeout=120).json()
        assert done["state"] == "succeeded", done
        assert done["daemon"] == daemon_id(survivor) and done["restarts"] == 1
        assert side.read_text().splitlines() == [f"{job_id} in.txt"] * 2   # started twice, committed once
        assert survivor.cli("cat", "out:/in.txt").stdout == b"payload\n"
        log = survivor.cli("log", "out", "--json").json()
        assert len(log) == 1
        time.sleep(LEASE_S)                           # the datum the victim left behind ends alone
        victim.start()                                # back after the crash: it sees the job done
        assert victim.cli("job", "show", job_id, "--json").json()["state"] == "succeeded"
        assert victim.cli("log", "out", "--json").json() == log
        # and it removed the job directory it left when it was killed
        assert not glob.glob(os.path.join(tempfile.gettempdir(), f"trunkfs-job-{runner[:8]}-*"))
    finally:   # what the killed daemon left, should the test stop before its restart
        for left in glob.glob(os.path.join(tempfile.gettempdir(), f"trunkfs-job-{runner[:8]}-*")):
            shutil.rmtree(left, ignore_errors=True)


def test_a_daemon_with_no_jobs_makes_jobs_that_another_runs(daemon_factory, workdir):
    url = f"file://{workdir / 'shared-store'}"
    replica, worker = fleet(daemon_factory, workdir, url, [], ["replica", "worker"],
                            {"replica": ["--no-jobs"]})
    side = workdir / "runs.txt"
    side.touch()
    replica.cli("repo", "create", "raw")
    register(replica, workdir, side)
    src = workdir / "src"
    src.mkdir()
    for k in range(3):
        (src / f"f{k}").write_text(str(k))
        replica.cli("put", "raw:/", str(src / f"f{k}"))
    jobs = wait_for(lambda: all_done(replica, 3), 60, "the worker to run the replica's jobs", 0.5)
    assert {j["daemon"] for j in jobs} == {daemon_id(worker)}
    assert all(j["state"] == "succeeded" for j in jobs)
