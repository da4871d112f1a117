"""Pipelines on a Dask cluster, end to end: a real ``dask scheduler`` and
``dask worker`` processes on 127.0.0.1 (tests/daskcluster.py), the daemon
on a shared ``file://`` store and on a moto S3 store.

The Dask executor's output equals the local executor's, tree for tree;
reused datums never reach the cluster; a worker SIGKILLed mid-datum costs
a retry and the job commits once; a scheduler that is down makes jobs wait
and, once it is back, finish (or fail naming the executor when it stays
away); cancelling a job kills its command on the worker."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from tests.daskcluster import DaskCluster
from tests.inprocess import CommitParts, PutFiles
from trunkfs.pipelines.dask_executor import DaskExecutor
from trunkfs.pipelines.datums import Datum, OutputBudget, cut_datums
from trunkfs.pipelines.executorconfig import DASK, ExecutorConfig
from trunkfs.pipelines.executors import DatumOutcome, JobWork
from trunkfs.pipelines.jobs import Job, JobInput
from trunkfs.pipelines.registry import Pipeline
from trunkfs.pipelines.remote import StoreOptions
from trunkfs.pipelines.spec import validate_spec
from trunkfs.store.access import Caller
from trunkfs.store.changes import CommitMeta, author_of
from trunkfs.store.store import Store
from tests.harness import wait_for

# every datum: its input files' sizes and the datum's paths, under the
# datum's first path; output mtimes fixed so that trees can be compared by id
SIZES = ("set -e; cd \"$TRUNKFS_INPUT\"; out=\"$TRUNKFS_OUTPUT/$(echo \"$TRUNKFS_DATUM\" | head -n1 | tr / _)\";"
         "mkdir -p \"$out\"; find . -type f | sort | while read -r f; do wc -c < \"$f\" >> \"$out/sizes\"; done;"
         "printf '%s\\n' \"$TRUNKFS_DATUM\" > \"$out/paths\"; chmod 644 \"$out\"/*; chmod 755 \"$out\";"
         "find \"$TRUNKFS_OUTPUT\" -exec touch -h -d @1000000000 {} +")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaskCluster]:
    """Two one-thread workers for the tests that do not break the cluster."""
    c = DaskCluster(tmp_path_factory.mktemp("dask"), workers=2)
    try:
        yield c.start()
    finally:
        c.stop()


@pytest.fixture
def own_cluster(workdir: Path) -> Iterator[DaskCluster]:
    """A cluster of the test's own, for tests that kill its processes."""
    c = DaskCluster(workdir / "dask", workers=2)
    try:
        yield c.start()
    finally:
        c.stop()


def put_tree(d, workdir: Path, files: dict[str, bytes]) -> dict:
    src = workdir / "src"
    for rel, data in files.items():
        p = src / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    return d.cli("put", "raw", *[str(src / top) for top in sorted({r.split("/")[0] for r in files})],
                 "--json").json()


def make_pipeline(d, workdir: Path, name: str, executor: str, cmd: list[str], **extra: object) -> None:
    spec = {"name": name, "input": {"repo": "raw", "glob": "/*"}, "output": f"{name}-out",
            "transform": {"cmd": cmd}, "executor": executor, **extra}
    path = workdir / f"{name}.json"
    path.write_text(json.dumps(spec))
    d.cli("pipeline", "create", "-f", str(path))


def jobs_of(d, pipeline: str) -> list[dict]:
    return d.cli("job", "list", pipeline, "--json").json()


def wait_job(d, job_id: str, timeout: float = 120) -> dict:
    res = d.cli("job", "wait", job_id, "--json", check=False, timeout=timeout)
    return res.json()


def head_tree(d, repo: str) -> str:
    return d.cli("log", repo, "--json").json()[0]["tree"]


def test_the_dask_executor_gives_the_local_executors_output(daemon_factory, workdir, cluster, shared_store):
    url, extra = shared_store
    d = daemon_factory(store_url=url, extra=[*extra, "--executor", f"cluster={cluster.address}"])
    d.cli("repo", "create", "raw")
    make_pipeline(d, workdir, "here", "local", ["sh", "-c", SIZES])
    make_pipeline(d, workdir, "there", "cluster", ["sh", "-c", SIZES], datums_per_task=2)
    files = {f"d{i}/f{j}": os.urandom(100 * i + j) for i in range(5) for j in range(3)}
    files.update({"top.bin": os.urandom(70_000), "name with space": b"x"})
    put = put_tree(d, workdir, files)
    assert len(put["jobs"]) == 2
    done = {j["pipeline"]: j for j in (wait_job(d, i) for i in put["jobs"])}
    assert done["here"]["state"] == "succeeded", done["here"]
    assert done["there"]["state"] == "succeeded", done["there"]
    assert done["there"]["datums"] == {"total": 7, "processed": 7, "skipped": 0, "failed": 0}
    assert head_tree(d, "here-out") == head_tree(d, "there-out")
    # the worker read the files itself and wrote the outputs: every datum says where it ran
    shown = d.cli("job", "show", done["there"]["id"], "--json").json()
    workers = {s["worker"] for s in shown["datum_stats"].values()}
    assert workers and all("tcp://127.0.0.1:" in w for w in workers), workers
    assert sum(s["download_bytes"] for s in shown["datum_stats"].values()) == sum(map(len, files.values()))
    assert shown["stats"]["upload_bytes"] > 0
    local = d.cli("job", "show", done["here"]["id"], "--json").json()
    assert all(s["worker"].startswith("local:") for s in local["datum_stats"].values())
    text = d.cli("job", "show", done["there"]["id"]).out
    assert "datum 0: in " in text and "tcp://127.0.0.1:" in text
    assert d.cli("cat", "there-out:/_top.bin/sizes").out == "70000\n"
    if url.startswith("s3://"):     # the workers read the chunks through their own disk caches
        cached = [p for p in (cluster.base / "worker-state").glob("*/slot-*/cache/*/*") if p.is_file()]
        assert cached, "no chunk in the workers' caches"


async def test_no_batch_is_lost_when_recording_one_outlasts_the_wait_for_the_next(
        store: Store, cluster: DaskCluster) -> None:
    """The executor waits for its next finished batch a second at a time,
    checking the scheduler in between. Taking a batch in (its manifest, its
    packs indexed, its datums recorded) may outlast that second (a slow
    store, a busy daemon): every datum of every batch must still be
    recorded once (once, two datums of seven went missing and the job
    committed without them). Here recording a datum takes 0.6 s."""
    parts = CommitParts(store)
    await trio.to_thread.run_sync(parts.refs.create_repo, "raw")
    files = {f"f{i}": b"%d" % i for i in range(5)}
    commit = (await parts.commits.commit("raw", "main", PutFiles(store, files),
                                         CommitMeta(message="in", author=author_of(0)))).id
    datums = cut_datums(store, store.read_commit(commit).tree, "/*")
    spec = validate_spec({"name": "p", "input": {"repo": "raw", "glob": "/*"}, "output": "out",
                          "transform": {"cmd": ["sh", "-c", 'cp -r . "$TRUNKFS_OUTPUT"']},
                          "executor": "cluster", "datums_per_task": 2})
    pipeline = Pipeline(spec, 1, {"uid": 0, "gid": 0}, 0.0, 0.0)
    job = Job("job-slow-record", "p", 1, JobInput("raw", "main", commit), "out", time.time())
    executor = DaskExecutor(ExecutorConfig("cluster", DASK, cluster.address), StoreOptions(store.backend.url))
    recorded: list[tuple[int, str | None]] = []

    async def record(index: int, datum: Datum, outcome: DatumOutcome) -> None:
        await trio.sleep(0.6)
        recorded.append((index, outcome.error))

    try:
        await executor.run(JobWork(store, job, pipeline, Caller(0, 0), OutputBudget(0), 4096),
                           list(enumerate(datums)), record)
    finally:
        await executor.aclose()
    assert sorted(recorded) == [(i, None) for i in range(5)], recorded


def test_reused_datums_never_reach_the_cluster(daemon_factory, workdir, cluster):
    d = daemon_factory(extra=["--executor", f"cluster={cluster.address}"])
    d.cli("repo", "create", "raw")
    ran = workdir / "ran.log"
    cmd = ["sh", "-c", f"printf '%s\\n' \"$TRUNKFS_DATUM\" >> {ran}; cp -r . \"$TRUNKFS_OUTPUT\""]
    make_pipeline(d, workdir, "copy", "cluster", cmd)
    put = put_tree(d, workdir, {f"f{i}": b"%d" % i for i in range(6)})
    first = wait_job(d, put["jobs"][0])
    assert first["state"] == "succeeded", first
    assert len(ran.read_text().splitlines()) == 6
    (workdir / "src" / "f3").write_bytes(b"changed")
    second = wait_job(d, d.cli("put", "raw", str(workdir / "src" / "f3"), "--json").json()["jobs"][0])
    assert second["state"] == "succeeded", second
    assert second["datums"] == {"total": 6, "processed": 1, "skipped": 5, "failed": 0}
    assert ran.read_text().splitlines()[6:] == ["/f3"]       # one datum went to the cluster
    assert d.cli("cat", "copy-out:/f3").out == "changed"
    logs = d.cli("job", "logs", second["id"]).out
    assert "on " in logs and "tcp://127.0.0.1:" in logs


def test_unknown_executor_is_refused_and_executor_list_says_who_answers(daemon_factory, workdir, cluster):
    from tests.daskcluster import free_port
    d = daemon_factory(extra=["--executor", f"cluster={cluster.address}",
                              "--executor", f"gone=tcp://127.0.0.1:{free_port()}"])
    d.cli("repo", "create", "raw")
    spec = {"name": "p", "input": {"repo": "raw"}, "transform": {"cmd": ["true"]}, "executor": "nowhere"}
    (workdir / "p.json").write_text(json.dumps(spec))
    res = d.cli("pipeline", "create", "-f", str(workdir / "p.json"), check=False)
    assert res.returncode != 0 and "'nowhere'" in res.err and "cluster" in res.err and "local" in res.err
    assert d.cli("pipeline", "list", "--json").json() == []
    listed = {e["name"]: e for e in d.cli("executor", "list", "--json").json()}
    assert listed["local"]["answers"] is True
    assert listed["cluster"]["answers"] is True
    assert (listed["cluster"]["workers"], listed["cluster"]["threads"]) == (2, 2)
    assert listed["gone"]["answers"] is False and listed["gone"]["error"]
    text = d.cli("executor", "list").out
    assert "2 workers, 2 threads" in text and "does not answer" in text


def test_cancel_kills_the_command_on_the_worker(daemon_factory, workdir, cluster):
    d = daemon_factory(extra=["--executor", f"cluster={cluster.address}"])
    d.cli("repo", "create", "raw")
    pid_file = workdir / "pid"
    make_pipeline(d, workdir, "slow", "cluster", ["sh", "-c", f"echo $$ > {pid_file}.tmp; "
                                                              f"mv {pid_file}.tmp {pid_file}; exec sleep 120"])
    job = put_tree(d, workdir, {"a": b"1"})["jobs"][0]
    wait_for(pid_file.exists, 60, "the command to start on a worker")
    pid = int(pid_file.read_text())
    assert d.cli("job", "cancel", job, "--json").json()["state"] == "cancelled"

    def gone() -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        return False
    wait_for(gone, 10, "the command on the worker to be killed")
    assert d.cli("log", "slow-out", "--json").json() == []   # nothing committed


@pytest.mark.allow_warnings   # the killed worker and the retry are logged
def test_a_worker_killed_mid_datum_costs_a_retry_and_the_job_commits_once(daemon_factory, workdir,
                                                                          own_cluster, shared_store):
    url, extra = shared_store
    d = daemon_factory(store_url=url, extra=[*extra, "--executor", f"cluster={own_cluster.address}"])
    d.cli("repo", "create", "raw")
    mark = workdir / "marks"
    mark.mkdir()
    script = (f"if [ \"$TRUNKFS_DATUM\" = /b ] && [ ! -e {mark}/killed ]; then echo $PPID > {mark}/worker.tmp; "
              f"mv {mark}/worker.tmp {mark}/worker; sleep 120; fi; cp -r . \"$TRUNKFS_OUTPUT\"")
    make_pipeline(d, workdir, "copy", "cluster", ["sh", "-c", script], retries=1, datums_per_task=1)
    job = put_tree(d, workdir, {"a": b"1", "b": b"2", "c": b"3"})["jobs"][0]
    wait_for((mark / "worker").exists, 60, "datum /b to start")
    worker_pid = int((mark / "worker").read_text())
    assert worker_pid in [w.pid for w in own_cluster.workers]
    (mark / "killed").touch()
    os.kill(worker_pid, signal.SIGKILL)
    done = wait_job(d, job)
    assert done["state"] == "succeeded", done
    assert done["datums"] == {"total": 3, "processed": 3, "skipped": 0, "failed": 0}
    commits = d.cli("log", "copy-out", "--json").json()
    assert len(commits) == 1 and commits[0]["origin"]["job"] == job
    assert d.cli("cat", "copy-out:/b").out == "2"
    logs = d.cli("job", "logs", job, "--json").json()["logs"]
    by_path = {tuple(e["paths"]): e for e in logs.values()}
    assert by_path[("/b",)]["attempts"] == 2     # the death counted against retries
    assert by_path[("/a",)]["attempts"] == 1
    # without a retry left, a death fails the datum, and the job says why
    own_cluster.add_workers(1)       # two again: one dies below, the other reruns the task
    make_pipeline(d, workdir, "strict", "cluster", ["sh", "-c", script.replace("killed", "killed2")],
                  retries=0, datums_per_task=1)
    job = d.cli("pipeline", "update", "-f", str(workdir / "strict.json"), "--reprocess",
                "--json").json()["jobs"][0]
    (mark / "worker").unlink()
    wait_for((mark / "worker").exists, 60, "datum /b to start again")
    own_cluster.kill(next(w for w in own_cluster.workers if w.pid == int((mark / "worker").read_text())))
    (mark / "killed2").touch()
    done = wait_job(d, job)
    assert done["state"] == "failed" and "died" in done["error"], done
    assert d.cli("log", "strict-out", "--json").json() == []


@pytest.mark.allow_warnings   # the lost scheduler is logged
def test_jobs_wait_for_a_scheduler_that_is_down_and_fail_naming_it_when_it_stays_away(
        daemon_factory, workdir, own_cluster):
    from tests.daskcluster import free_port
    config = workdir / "executors.toml"
    config.write_text(f'[executors.cluster]\ntype = "dask"\nscheduler = "{own_cluster.address}"\n'
                      f'wait_seconds = 120\n\n[executors.gone]\ntype = "dask"\n'
                      f'scheduler = "tcp://127.0.0.1:{free_port()}"\nwait_seconds = 2\n')
    d = daemon_factory(extra=["--config", str(config)])
    d.cli("repo", "create", "raw")
    make_pipeline(d, workdir, "copy", "cluster", ["sh", "-c", "cp -r . \"$TRUNKFS_OUTPUT\""])
    make_pipeline(d, workdir, "lost", "gone", ["true"])
    first = put_tree(d, workdir, {"a": b"1"})["jobs"]
    assert all(wait_job(d, j)["state"] in ("succeeded", "failed") for j in first)
    lost = next(j for j in (d.cli("job", "show", i, "--json").json() for i in first) if j["pipeline"] == "lost")
    assert lost["state"] == "failed" and "'gone'" in lost["error"] and "wait_seconds" in lost["error"], lost
    # the scheduler and its workers go away; a new commit's job waits for them
    for w in own_cluster.workers:
        own_cluster.kill(w)
    own_cluster.stop_scheduler()
    (workdir / "src" / "b").write_bytes(b"2")
    jobs = d.cli("put", "raw", str(workdir / "src" / "b"), "--json").json()["jobs"]
    job = next(j for j in jobs if d.cli("job", "show", j, "--json").json()["pipeline"] == "copy")
    wait_for(lambda: d.cli("job", "show", job, "--json").json()["state"] == "running", 30, "the job to start")
    import time
    time.sleep(3)
    assert d.cli("job", "show", job, "--json").json()["state"] == "running"
    own_cluster.start_scheduler()
    own_cluster.add_workers(2)
    done = wait_job(d, job)
    assert done["state"] == "succeeded", done
    assert d.cli("cat", "copy-out:/b").out == "2"
    assert len(d.cli("log", "copy-out", "--json").json()) == 2
