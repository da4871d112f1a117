"""In-process tests of the pipelines package, without a daemon: job records
(typed, and the records earlier versions wrote), job ids, datums cut on a
real store, the process sandbox on real subprocesses, and the scheduler run
over a real store and the commit path."""

from __future__ import annotations

import json
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio

from tests.inprocess import PutFiles
from trunkfs.daemon.commits import CommitPath
from trunkfs.store.changes import CommitMeta, author_of
from trunkfs.daemon.events import EventBus
from trunkfs.daemon.heads import BranchHeads
from trunkfs.daemon.workers import Workers
from trunkfs.pipelines import jobs as jobs_mod
from trunkfs.pipelines.datums import Datum, MergeConflict, cut_datums, datum_hash, datum_paths, store_merged, \
    store_output
from trunkfs.pipelines.inputs import clear_stale_binds, materialize
from trunkfs.pipelines import inputs as inputs_mod
from trunkfs.pipelines.jobs import DatumCounts, DatumLog, Job, JobInput, JobStore, JobTable, new_job_id
from trunkfs.pipelines.executors import Executor, JobWork, Record
from trunkfs.pipelines.registry import PipelineRegistry
from trunkfs.pipelines.runner import LOG_LIMIT, AttemptDirs, Command, RunResult, Sandbox, run_command, run_datum
from trunkfs.pipelines.scheduler import JobScheduler
from trunkfs.store import walk
from trunkfs.store.errors import NotFound
from trunkfs.store.refs import Refs
from trunkfs.store.store import Store
from trunkfs.store.treeedit import TreeEditor
from trunkfs.store.writer import WriteSession


# -- job records ------------------------------------------------------------------

# A record as the daemon wrote it before jobs were typed (jobs/<id> in the store).
OLD_RECORD = {
    "v": 1, "id": "1795929938457092208-a47d8e80", "pipeline": "count", "version": 2,
    "input": {"repo": "raw", "branch": "main", "commit": "ab" * 32},
    "output": "count", "state": "failed", "created": 1795929938.457, "started": 1795929938.5,
    "finished": 1795929940.25, "output_commit": None,
    "error": "1 datum(s) failed: datum 1 (/bad): exited with 3",
    "datums": {"total": 3, "processed": 1, "skipped": 1, "failed": 1},
    "logs": {"0": {"paths": ["/good"], "attempts": 1, "exit": 0, "stdout": "fine\n", "stderr": "",
                   "error": None},
             "1": {"paths": ["/bad"], "attempts": 2, "exit": 3, "stdout": "", "stderr": "bad input\n",
                   "error": "exited with 3"},
             "2": {"paths": ["/x"], "attempts": 1, "exit": None, "stdout": "", "stderr": "",
                   "error": "cannot start 'nope': No such file or directory"}},
}
OLD_SUCCEEDED = {**OLD_RECORD, "id": "1795929938457092209-b47d8e80", "state": "succeeded", "error": None,
                 "output_commit": "cd" * 32, "downstream_jobs": ["1795929941000000000-00000000"],
                 "datums": {"total": 1, "processed": 1, "skipped": 0, "failed": 0},
                 "logs": {"0": {"paths": ["/good"], "attempts": 1, "exit": 0, "stdout": "", "stderr": "",
                                "error": None}}}
OLD_RUNNING = {**OLD_RECORD, "id": "1795929938457092210-c47d8e80", "state": "running", "error": None,
               "finished": None, "datums": {"total": 2, "processed": 0, "skipped": 0, "failed": 0},
               "logs": {"0": {"paths": ["/a"], "attempts": 1}}}   # a datum whose first run had not ended


def test_records_of_earlier_versions_load_and_write_back_the_same(store: Store) -> None:
    for record in (OLD_RECORD, OLD_SUCCEEDED, OLD_RUNNING):
        store.backend.put(f"jobs/{record['id']}", json.dumps(record, sort_keys=True).encode())
    loaded = {j.id: j for j in JobStore(store.backend).load()}
    assert set(loaded) == {OLD_RECORD["id"], OLD_SUCCEEDED["id"], OLD_RUNNING["id"]}
    failed = loaded[OLD_RECORD["id"]]
    assert failed.state == "failed" and failed.input == JobInput("raw", "main", "ab" * 32)
    assert failed.datums == DatumCounts(3, 1, 1, 1) and failed.downstream_jobs is None
    bad = failed.logs["1"]
    assert bad.paths == ["/bad"] and bad.attempts == 2 and bad.last == RunResult(3, "", "bad input\n",
                                                                                 "exited with 3")
    assert failed.logs["2"].last is not None and failed.logs["2"].last.exit is None
    assert loaded[OLD_SUCCEEDED["id"]].downstream_jobs == ["1795929941000000000-00000000"]
    assert loaded[OLD_RUNNING["id"]].logs["0"].last is None
    for record in (OLD_RECORD, OLD_SUCCEEDED, OLD_RUNNING):
        job = loaded[record["id"]]
        assert job.to_json() == record                      # exactly the record it came from
        assert json.loads(job.encode()) == record
    # what job.show replies: the record without its logs, with the duration
    summary = failed.summary()
    assert summary == {**{k: v for k, v in OLD_RECORD.items() if k != "logs"}, "duration": 1.75}
    assert failed.event() == {"type": "job", "id": failed.id, "pipeline": "count", "state": "failed",
                              "input": OLD_RECORD["input"], "output": "count", "output_commit": None,
                              "error": OLD_RECORD["error"], "datums": OLD_RECORD["datums"]}


def test_a_new_job_round_trips() -> None:
    job = Job(id=new_job_id(), pipeline="p", version=1, input=JobInput("raw", "dev", "12" * 32),
              output="out", created=time.time())
    fresh = job.to_json()
    assert fresh["state"] == "queued" and fresh["logs"] == {} and "downstream_jobs" not in fresh
    assert fresh["datums"] == {"total": 0, "processed": 0, "skipped": 0, "failed": 0}
    assert "duration" not in job.summary()
    job.state, job.started = "running", time.time()
    job.logs["0"] = DatumLog(["/a", "/b"])
    job.logs["0"].attempt_started(1)
    job.logs["0"].attempt_ended(RunResult(1, "out", "err", "exited with 1"))
    job.logs["0"].attempt_started(2)
    job.logs["0"].attempt_ended(RunResult(0, "ok", ""))
    job.state, job.finished, job.output_commit, job.downstream_jobs = "succeeded", time.time(), "ef" * 32, []
    again = Job.decode(job.encode())
    assert again == job and again.to_json() == job.to_json()
    assert again.to_json()["logs"] == {"0": {"paths": ["/a", "/b"], "attempts": 2, "exit": 0,
                                             "stdout": "ok", "stderr": "", "error": None}}
    assert again.to_json()["downstream_jobs"] == []


@pytest.mark.allow_warnings   # an unreadable record is logged as an error
def test_an_unreadable_record_is_skipped(store: Store, caplog: pytest.LogCaptureFixture) -> None:
    store.backend.put(f"jobs/{OLD_RECORD['id']}", json.dumps(OLD_RECORD).encode())
    store.backend.put("jobs/garbage", b"{not json")
    store.backend.put("jobs/partial", json.dumps({"v": 1, "id": "partial"}).encode())
    store.backend.put("jobs/future", json.dumps({**OLD_RECORD, "v": 2, "id": "future"}).encode())
    assert [j.id for j in JobStore(store.backend).load()] == [OLD_RECORD["id"]]
    skipped = [r.getMessage() for r in caplog.records if "skipping unreadable job record" in r.getMessage()]
    assert len(skipped) == 3


# -- job ids ----------------------------------------------------------------------

def test_new_ids_are_short_hex_and_sort_by_creation() -> None:
    before = int(time.time() * 1000) - jobs_mod.ID_EPOCH_MS
    ids = [new_job_id() for _ in range(2000)]   # many in one millisecond: still strictly increasing
    after = int(time.time() * 1000) - jobs_mod.ID_EPOCH_MS
    assert all(len(i) == 12 and all(c in "0123456789abcdef" for c in i) for i in ids)
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert before <= int(ids[0], 16) >> 8 and int(ids[0], 16) >> 8 <= after + 1
    assert int(ids[-1], 16) >> 8 <= after + len(ids)   # never runs far ahead of the clock


def _job(job_id: str, created: float, pipeline: str = "p", state: str = "queued") -> Job:
    return Job(id=job_id, pipeline=pipeline, version=1, input=JobInput("raw", "main", "00" * 32),
               output="out", created=created, state=state)


def test_table_lists_in_creation_order_and_takes_unique_prefixes() -> None:
    old_a = _job("1795929938457092208-a47d8e80", 1_700_000_000.0)
    old_b = _job("1795929938457092209-b47d8e80", 1_700_000_000.0, pipeline="q")   # same time: by id
    new_a = _job(new_job_id(), 1_800_000_000.0, state="succeeded")
    new_b = _job(new_job_id(), 1_800_000_001.0)
    table = JobTable([new_b, old_b, new_a, old_a])
    assert [j.id for j in table.list()] == [old_a.id, old_b.id, new_a.id, new_b.id]
    assert [j.id for j in table.list("p")] == [old_a.id, new_a.id, new_b.id]
    assert [j.id for j in table.list("p", state="queued")] == [old_a.id, new_b.id]
    assert table.get(new_a.id) is new_a and table.get(old_a.id) is old_a
    # a unique prefix of 6 characters or more names a job
    shared = os.path.commonprefix([new_a.id, new_b.id])
    assert table.get(new_b.id[:max(6, len(shared) + 1)]) is new_b
    assert table.get("1795929938457092208") is old_a
    with pytest.raises(NotFound, match="ambiguous"):
        table.get("179592993845709220")          # both old ids start with it
    with pytest.raises(NotFound, match="does not exist"):
        table.get(new_a.id[:5])                  # too short, even when unique
    with pytest.raises(NotFound, match="does not exist"):
        table.get("ffffffffffff")


# -- datums on a real store -----------------------------------------------------------

def _tree(store: Store, files: dict[str, bytes | str | None]) -> str:
    """A tree: bytes are files, str symlink targets, None empty directories."""
    session = store.session()
    editor = TreeEditor(store, None)
    for path, value in files.items():
        if value is None:
            editor.mkdir(path)
        elif isinstance(value, str):
            editor.put(path, {"type": "symlink", "mode": 0o777, "mtime": 0, "target": value})
        else:
            chunks, size = session.put_bytes(value)
            editor.put(path, {"type": "file", "mode": 0o644, "mtime": 0, "size": size, "chunks": chunks})
    root = editor.write(session)
    session.flush()
    return str(root["tree"])


INPUT = {"/a": b"alpha", "/b": "a", "/d/x": b"ex", "/d/e/y": b"why", "/empty": None}


@pytest.mark.parametrize("glob,expected", [
    ("/", [["/a", "/b", "/d", "/empty"]]),
    ("/*", [["/a"], ["/b"], ["/d"], ["/empty"]]),
    ("/*/*", [["/d/e"], ["/d/x"]]),
    ("/**", [["/a"], ["/b"], ["/d/e/y"], ["/d/x"]]),
])
def test_datums_are_cut_by_glob(store: Store, glob: str, expected: list[list[str]]) -> None:
    tree = _tree(store, INPUT)
    datums = cut_datums(store, tree, glob)
    assert [datum_paths(d) for d in datums] == expected
    index = {p: e for p, e in walk.walk(store, {"type": "dir", "tree": tree})}
    assert all(e == index[p] for d in datums for p, e in d)   # the entries of the tree itself
    assert cut_datums(store, None, glob) == []
    assert cut_datums(store, _tree(store, {}), glob) == []


def test_datum_hashes_follow_content_not_data_reads(store: Store) -> None:
    one = cut_datums(store, _tree(store, INPUT), "/*")
    two = cut_datums(store, _tree(store, {**INPUT, "/d/e/y": b"changed"}), "/*")
    hashes = [(datum_hash(a), datum_hash(b)) for a, b in zip(one, two)]
    assert [x == y for x, y in hashes] == [True, True, False, True]   # only /d holds the change
    assert len({h for h, _ in hashes}) == 4


def test_materialize_copies_a_datum_read_only(store: Store, workdir: Path) -> None:
    (datum,) = cut_datums(store, _tree(store, INPUT), "/")
    root = workdir / "in"
    root.mkdir()
    materialize(store, datum, str(root))
    assert (root / "a").read_bytes() == b"alpha" and os.readlink(root / "b") == "a"
    assert (root / "d" / "e" / "y").read_bytes() == b"why" and (root / "empty").is_dir()
    assert os.stat(root / "d" / "x").st_mode & 0o777 == 0o444
    assert os.stat(root / "d").st_mode & 0o777 == 0o555
    for dirpath, _, _ in os.walk(root):
        os.chmod(dirpath, 0o755)


def test_outputs_are_stored_and_merged(store: Store, workdir: Path) -> None:
    trees = []
    for i, files in enumerate([{"a.txt": b"1", "sub/x": b"x"}, {"b.txt": b"22", "sub/y": b"y"}]):
        out = workdir / f"out{i}"
        for rel, data in files.items():
            (out / rel).parent.mkdir(parents=True, exist_ok=True)
            (out / rel).write_bytes(data)
        trees.append(store_output(store, str(out)))
    root = store_merged(store, trees)
    merged = {p: e for p, e in walk.files_below(store, {"type": "dir", "tree": root["tree"]})}
    assert sorted(merged) == ["/a.txt", "/b.txt", "/sub/x", "/sub/y"]
    assert b"".join(store.iter_file(merged["/b.txt"])) == b"22"
    assert (root["files"], root["size"]) == (4, 5)
    with pytest.raises(MergeConflict, match="same output path /a.txt"):
        store_merged(store, [trees[0], trees[0]])


# -- the process sandbox ---------------------------------------------------------------

@pytest.fixture
def dirs(workdir: Path) -> AttemptDirs:
    (workdir / "in").mkdir()
    (workdir / "out").mkdir()
    return AttemptDirs(str(workdir / "in"), str(workdir / "out"))


def sh(script: str, env: dict[str, str] | None = None, stdin: str | None = None,
       timeout: float = 60.0) -> Command:
    return Command(["/bin/sh", "-c", script], env or {}, stdin, timeout)


async def test_a_command_runs_with_its_environment_and_stdin(dirs: AttemptDirs) -> None:
    result = await run_command(sh('cat > "$TRUNKFS_OUTPUT/in.txt"; echo "$MODE $TRUNKFS_JOB $(pwd)"; '
                                  'env | cut -d= -f1 | sort | tr "\\n" " " >&2',
                                  env={"MODE": "fast"}, stdin="data"),
                               dirs, {"TRUNKFS_JOB": "j1"})
    assert result.ok and result.exit == 0
    assert result.stdout == f"fast j1 {dirs.input}\n"
    assert Path(dirs.output, "in.txt").read_text() == "data"
    names = set(result.stderr.split())
    assert {"MODE", "TRUNKFS_JOB", "TRUNKFS_INPUT", "TRUNKFS_OUTPUT"} <= names
    assert "HOME" not in names and "TRUNKFS_SOCKET" not in names


async def test_an_exit_code_is_a_failure_with_its_output(dirs: AttemptDirs) -> None:
    result = await run_command(sh("echo out; echo bad input >&2; exit 3"), dirs)
    assert result == RunResult(3, "out\n", "bad input\n", "exited with 3") and not result.ok
    missing = await run_command(Command(["/nonexistent/command"]), dirs)
    assert missing.exit is None and "cannot start '/nonexistent/command'" in (missing.error or "")


async def test_a_timeout_kills_the_whole_process_group(dirs: AttemptDirs, workdir: Path) -> None:
    pidfile = workdir / "child.pid"
    started = time.monotonic()
    result = await run_command(sh(f"sleep 300 & echo $! > {pidfile}; sleep 300", timeout=0.5), dirs)
    assert time.monotonic() - started < 30
    assert not result.ok and "timed out after 0.5 s" in (result.error or "")
    child = int(pidfile.read_text())
    deadline = time.monotonic() + 5
    while os.path.exists(f"/proc/{child}") and time.monotonic() < deadline:
        await trio.sleep(0.02)
    assert not os.path.exists(f"/proc/{child}"), "the background child survived the timeout"


async def test_logs_keep_their_start_and_end(dirs: AttemptDirs) -> None:
    result = await run_command(sh("i=0; while [ $i -lt 5000 ]; do echo line$i; i=$((i+1)); done; "
                                  "head -c 100000 /dev/zero | tr '\\0' e >&2"), dirs,
                               sandbox=Sandbox(log_limit=32 * 1024))
    assert result.ok
    assert result.stdout.startswith("line0\nline1\n") and result.stdout.endswith("line4999\n")
    head, dropped, tail = result.stdout.partition("\n[trunkfs: ")
    assert len(head) + len(tail.split("\n", 1)[1]) == 16 * 1024
    assert dropped and "bytes of output dropped here (job_log_limit)]" in tail
    first, _, rest = result.stderr.partition("\n[trunkfs: ")
    assert first == "e" * 8192 and rest.endswith("]\n" + "e" * 8192)
    assert rest.startswith(f"{100000 - 16 * 1024} bytes of output dropped")
    # the default keeps a MiB: all of it here
    whole = await run_command(sh("i=0; while [ $i -lt 5000 ]; do echo line$i; i=$((i+1)); done"), dirs)
    assert whole.stdout.count("\n") == 5000 and LOG_LIMIT == 1024 * 1024


async def test_a_datum_is_retried_in_fresh_directories(workdir: Path) -> None:
    counter = workdir / "runs"
    prepared: list[int] = []

    @asynccontextmanager
    async def prepare(attempt: int) -> AsyncIterator[AttemptDirs]:
        base = workdir / f"d-{len(prepared)}-{attempt}"
        (base / "in").mkdir(parents=True)
        (base / "out").mkdir()
        prepared.append(attempt)
        yield AttemptDirs(str(base / "in"), str(base / "out"))

    script = (f'echo x >> {counter}; [ $(wc -l < {counter}) -ge 3 ] || exit 1; '
              'echo done > "$TRUNKFS_OUTPUT/f"')
    log = DatumLog(["/a"])
    run = await run_datum(sh(script), 1, prepare, log)   # two attempts are not enough
    assert not run.ok and run.attempts == 2 and log.attempts == 2 and log.error == "exited with 1"
    run = await run_datum(sh(script), 5, prepare, log)
    assert run.ok and run.attempts == 1 and prepared == [1, 2, 1]
    assert Path(run.dirs.output, "f").read_text() == "done\n"


# -- the scheduler over a real store and the commit path ------------------------------------

class PutFile:
    """A change that writes one file (its bytes stored in ``prepare``)."""

    def __init__(self, store: Store, path: str, data: bytes) -> None:
        self.store, self.path, self.data = store, path, data
        self.entry: dict = {}

    async def prepare(self, session: WriteSession) -> None:
        chunks, size = session.put_bytes(self.data)
        self.entry = {"type": "file", "mode": 0o644, "mtime": 0, "size": size, "chunks": chunks}

    def build(self, base: dict | None, session: WriteSession) -> dict:
        editor = TreeEditor(self.store, base["tree"] if base else None)
        editor.put(self.path, self.entry)
        return editor.write(session)


class SchedulerParts:
    """A job scheduler over ``store`` as the daemon wires it: refs, worker
    threads, events, the commit path (which triggers the scheduler) and the
    pipeline registry, with repo ``raw`` made."""

    def __init__(self, store: Store, **scheduler_args: Any) -> None:
        self.refs = Refs(store)
        self.workers = Workers(4)
        self.events = EventBus()
        self.commits = CommitPath(store, self.refs, BranchHeads(self.refs, self.workers), self.events,
                                  self.workers)
        self.registry = PipelineRegistry(self.refs)
        self.scheduler = JobScheduler(store, self.registry, self.commits, self.events.publish,
                                      self.workers.run, **scheduler_args)
        self.commits.add_trigger(self.scheduler)

    async def make_raw(self) -> None:
        await self.workers.run(self.refs.create_repo, "raw")


async def test_a_commit_runs_a_job_and_its_record_survives(store: Store) -> None:
    parts = SchedulerParts(store)
    refs, workers, events, commits, registry, scheduler = (
        parts.refs, parts.workers, parts.events, parts.commits, parts.registry, parts.scheduler)
    await parts.make_raw()
    await workers.run(registry.create, {
        "name": "upper", "input": {"repo": "raw", "glob": "/*"},
        "transform": {"cmd": ["/bin/sh", "-c", 'for f in *; do tr a-z A-Z < "$f" > "$TRUNKFS_OUTPUT/$f"; done']}},
        {"uid": os.getuid(), "gid": os.getgid()})

    watch = events.subscribe()
    async with trio.open_nursery() as nursery:
        await nursery.start(scheduler.run)
        done = await commits.commit("raw", "main", PutFile(store, "/a", b"abc"), CommitMeta("in", author_of(0)))
        (job_id,) = done.jobs
        assert len(job_id) == 12
        job = await scheduler.wait(job_id[:6])
        assert job.state == "succeeded", job.to_json()
        assert job.datums == DatumCounts(1, 1, 0, 0) and job.logs["0"].last == RunResult(0, "", "", None)
        nursery.cancel_scope.cancel()
    head, _ = refs.read_branch("upper", "main")
    assert head == job.output_commit
    entry = walk.lookup(store, store.read_commit(head).root_entry(), ["a"])
    assert b"".join(store.iter_file(entry)) == b"ABC"
    states = []
    while True:
        try:
            event = watch.receive_nowait()
        except trio.WouldBlock:
            break
        states.append((event["type"], event.get("state")))
    assert states == [("commit", None), ("job", "queued"), ("job", "running"),
                      ("commit", None), ("job", "succeeded")]   # the input's commit, then the output's
    # a scheduler started again reads the record back as it was
    again = JobScheduler(store, registry, commits, events.publish, workers.run)
    again.load()
    assert again.get(job_id).to_json() == job.to_json()


class ForgetfulExecutor:
    """An executor that hands back the outcome of its first datum only: the
    scheduler must not commit a job's output without the others."""

    name = "forgetful"
    inner: Executor

    async def run(self, work: JobWork, pending: list[tuple[int, Datum]], record: Record) -> None:
        await self.inner.run(work, pending[:1], record)

    async def describe(self) -> dict:
        return {"name": self.name}

    async def aclose(self) -> None:
        pass


@pytest.mark.allow_warnings
async def test_a_job_whose_executor_leaves_datums_unrecorded_fails_and_commits_nothing(store: Store) -> None:
    forgetful = ForgetfulExecutor()
    parts = SchedulerParts(store, executors={"forgetful": forgetful})
    refs, workers, commits, registry, scheduler = (
        parts.refs, parts.workers, parts.commits, parts.registry, parts.scheduler)
    forgetful.inner = scheduler.executors["local"]
    await parts.make_raw()
    await workers.run(registry.create, {
        "name": "copy", "input": {"repo": "raw", "glob": "/*"}, "executor": "forgetful",
        "transform": {"cmd": ["/bin/sh", "-c", 'cp -r . "$TRUNKFS_OUTPUT"']}},
        {"uid": os.getuid(), "gid": os.getgid()})
    async with trio.open_nursery() as nursery:
        await nursery.start(scheduler.run)
        done = await commits.commit("raw", "main", PutFiles(store, {"a": b"a", "b": b"b", "c": b"c"}),
                                    CommitMeta("in", author_of(0)))
        job = await scheduler.wait(done.jobs[0])
        nursery.cancel_scope.cancel()
    assert job.state == "failed" and "2 datum(s)" in (job.error or "") and "forgetful" in (job.error or ""), \
        job.to_json()
    assert job.output_commit is None
    head, _ = refs.read_branch("copy", "main")
    assert head is None or store.read_commit(head).origin.get("job") != job.id


@pytest.mark.skipif(os.geteuid() != 0, reason="bind mounts need root")
def test_a_daemon_detaches_only_its_own_stale_binds(workdir: Path) -> None:
    """Job directories carry the daemon's tag: at start a daemon detaches the
    datum binds it left behind, never those of another daemon's running job."""
    source = workdir / "source"
    source.mkdir()
    mine = workdir / "trunkfs-job-aaaa1111-0123456789ab-x" / "in"
    theirs = workdir / "trunkfs-job-bbbb2222-0123456789ab-y" / "in"
    for target in (mine, theirs):
        target.mkdir(parents=True)
        inputs_mod._bind(str(source), str(target))

    def mounted(p: Path) -> bool:
        with open("/proc/self/mounts") as f:
            return any(line.split()[1] == str(p) for line in f)
    try:
        assert mounted(mine) and mounted(theirs)
        assert clear_stale_binds("trunkfs-job-aaaa1111-") == 1
        assert not mounted(mine) and mounted(theirs)
    finally:
        for target in (mine, theirs):
            inputs_mod.unmount(str(target))
