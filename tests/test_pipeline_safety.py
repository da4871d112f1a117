"""What root does with a pipeline user's files: outputs ingested and job
directories removed without following what the user planted (symlinks,
hard links, FIFOs, renames), inputs private to the owner, owners and
rights checked when a job runs, reuse keyed by the pipeline's identity,
the output size cap, and the scheduler's own worker threads.

Every test plays the pipeline's user as an attacker: it plants the thing
the daemon must not trust and checks root did not act on it."""

from __future__ import annotations

import dataclasses
import os
import shutil
import pwd
import socket
import stat
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio

from trunkfs.daemon.commits import CommitPath
from trunkfs.daemon.events import EventBus
from trunkfs.daemon.heads import BranchHeads
from trunkfs.daemon.workers import Workers
from trunkfs.pipelines.datums import OutputBudget, UnsafeOutput, store_output
from trunkfs.pipelines.inputs import materialize, remove_tree
from trunkfs.pipelines.jobs import Job
from trunkfs.pipelines.registry import Pipeline, PipelineRegistry
from trunkfs.pipelines.scheduler import JobScheduler
from trunkfs.store import walk
from trunkfs.store.changes import CommitMeta, author_of
from trunkfs.store.objects import DIR, FILE, SYMLINK
from trunkfs.store.refs import Refs
from trunkfs.store.store import Store
from trunkfs.store.treeedit import TreeEditor
from trunkfs.store.writer import WriteSession

from .test_pipelines import put_files, register, sh, wait_all

pytestmark = pytest.mark.skipif(os.getuid() != 0, reason="needs root (another uid, root-only files)")

NOBODY = 65534
DAEMON_UID = pwd.getpwnam("daemon").pw_uid   # a second real user
SECRET = b"root only: TOPSECRET"


def _entries(store: Store, tree: str) -> dict[str, dict]:
    return dict(walk.walk(store, {"type": DIR, "tree": tree}))


def _user_output(workdir: Path, name: str = "out") -> Path:
    """An output directory as the runner leaves it: owned by the datum's user."""
    out = workdir / name
    out.mkdir()
    os.chown(out, NOBODY, NOBODY)
    return out


def _secret(workdir: Path) -> Path:
    """A root-only 0600 file beside the output (same filesystem)."""
    secret = workdir / "secret"
    secret.write_bytes(SECRET)
    os.chmod(secret, 0o600)
    return secret


# -- ingest of a datum's output ------------------------------------------------------------

def test_a_symlink_in_the_output_is_stored_as_a_symlink(store: Store, workdir: Path) -> None:
    secret = _secret(workdir)
    secret_dir = workdir / "private"
    secret_dir.mkdir(mode=0o700)
    (secret_dir / "f").write_bytes(SECRET)
    out = _user_output(workdir)
    os.symlink(secret, out / "file-link")
    os.symlink(secret_dir, out / "dir-link")
    (out / "sub").mkdir()
    os.symlink("../file-link", out / "sub" / "rel")
    tree = store_output(store, str(out), NOBODY)
    got = _entries(store, tree)
    assert got["/file-link"]["type"] == SYMLINK and got["/file-link"]["target"] == str(secret)
    assert got["/dir-link"]["type"] == SYMLINK and got["/dir-link"]["target"] == str(secret_dir)
    assert got["/sub/rel"]["type"] == SYMLINK and got["/sub/rel"]["target"] == "../file-link"
    assert "/dir-link/f" not in got


def test_a_hard_link_to_a_root_only_file_is_refused(store: Store, workdir: Path) -> None:
    secret = _secret(workdir)
    out = _user_output(workdir)
    (out / "mine").write_bytes(b"mine")
    os.chown(out / "mine", NOBODY, NOBODY)
    os.link(secret, out / "stolen")
    with pytest.raises(UnsafeOutput, match="/stolen") as caught:
        store_output(store, str(out), NOBODY)
    assert "could not read" in str(caught.value)
    # a file of another user that the datum's user may read is fine, as is its own 0000 file
    os.unlink(out / "stolen")
    readable = workdir / "readable"
    readable.write_bytes(b"public")
    os.chmod(readable, 0o644)
    os.link(readable, out / "public")
    os.chmod(out / "mine", 0)
    got = _entries(store, store_output(store, str(out), NOBODY))
    assert b"".join(store.iter_file(got["/public"])) == b"public"
    assert b"".join(store.iter_file(got["/mine"])) == b"mine"
    # root's own datums read what root may
    os.link(secret, out / "roots")
    got = _entries(store, store_output(store, str(out), 0))
    assert b"".join(store.iter_file(got["/roots"])) == SECRET


@pytest.mark.parametrize("kind", ["FIFO", "socket", "character device"])
def test_special_files_in_the_output_are_refused_by_name(store: Store, workdir: Path, kind: str) -> None:
    out = _user_output(workdir)
    (out / "sub").mkdir()
    target = out / "sub" / "special"
    listener = None
    if kind == "FIFO":
        os.mkfifo(target)      # opened blocking, this would hang the ingest forever
    elif kind == "socket":
        listener = socket.socket(socket.AF_UNIX)
        listener.bind(str(target))
    else:
        try:
            os.mknod(target, stat.S_IFCHR | 0o666, os.makedev(1, 3))
        except PermissionError:
            pytest.skip("mknod is not allowed here")
    try:
        with pytest.raises(UnsafeOutput, match=f"/sub/special.*{kind}"):
            store_output(store, str(out), NOBODY)
    finally:
        if listener is not None:
            listener.close()


def test_a_directory_swapped_for_a_symlink_while_ingesting_never_leaks(store: Store, workdir: Path) -> None:
    """The user renames a directory of its output back and forth with a
    symlink to a root-only directory while root ingests it: whatever root
    stores, it never holds the root-only file's content."""
    secret_dir = workdir / "private"
    secret_dir.mkdir(mode=0o700)
    (secret_dir / "f").write_bytes(SECRET)
    out = _user_output(workdir)
    for i in range(20):
        (out / f"pad{i}").write_bytes(b"x" * 1000)
    (out / "sub").mkdir()
    (out / "sub" / "f").write_bytes(b"mine")
    stop = threading.Event()

    def swap() -> None:
        while not stop.is_set():
            try:
                os.rename(out / "sub", out / "real")
                os.symlink(secret_dir, out / "sub")
                os.unlink(out / "sub")
                os.rename(out / "real", out / "sub")
            except OSError:
                pass
    attacker = threading.Thread(target=swap)
    attacker.start()
    leaked = ingests = 0
    deadline = time.monotonic() + 8
    try:
        while time.monotonic() < deadline and not leaked:
            try:
                tree = store_output(store, str(out), NOBODY)
            except (UnsafeOutput, OSError):
                continue
            ingests += 1
            for e in _entries(store, tree).values():
                if e["type"] == FILE and b"".join(store.iter_file(e)) == SECRET:
                    leaked += 1
    finally:
        stop.set()
        attacker.join()
    assert not leaked, f"root ingested a root-only file through a swapped symlink ({ingests} ingests)"


def test_the_output_budget_fails_past_its_limit(store: Store, workdir: Path) -> None:
    out = _user_output(workdir)
    (out / "a").write_bytes(b"a" * 600)
    (out / "b").write_bytes(b"b" * 600)
    with pytest.raises(UnsafeOutput, match="job_output_limit"):
        store_output(store, str(out), NOBODY, budget=OutputBudget(1000))
    budget = OutputBudget(0)   # no cap
    store_output(store, str(out), NOBODY, budget=budget)
    assert budget.used == 1200


# -- cleanup of job directories ------------------------------------------------------------

def test_cleanup_never_follows_a_planted_symlink(workdir: Path) -> None:
    victim = workdir / "victim"
    victim.mkdir(mode=0o700)
    (victim / "keep").write_bytes(b"keep")
    os.chmod(victim / "keep", 0o600)
    job = workdir / "trunkfs-job-x"
    (job / "d0-1" / "in").mkdir(parents=True)
    out = job / "d0-1" / "out"
    out.mkdir()
    os.chown(out, NOBODY, NOBODY)
    (out / "deep").mkdir()
    os.symlink(victim, out / "dir-link")
    os.symlink(victim, out / "deep" / "dir-link")
    os.symlink(victim / "keep", out / "file-link")
    os.link(victim / "keep", out / "hard")
    os.chmod(out / "deep", 0o500)          # read-only directories are removed too
    remove_tree(str(job))
    assert not job.exists()
    assert stat.S_IMODE(os.stat(victim).st_mode) == 0o700, "root chmodded through a symlink"
    assert (victim / "keep").read_bytes() == b"keep"
    assert stat.S_IMODE(os.stat(victim / "keep").st_mode) == 0o600


# -- the scheduler in-process --------------------------------------------------------------

class PutFile:
    """A change writing files (their bytes stored in ``prepare``)."""

    def __init__(self, store: Store, files: dict[str, bytes]) -> None:
        self.store, self.files = store, files
        self.entries: dict[str, dict] = {}

    async def prepare(self, session: WriteSession) -> None:
        for path, data in self.files.items():
            chunks, size = session.put_bytes(data)
            self.entries[path] = {"type": "file", "mode": 0o644, "mtime": 0, "size": size, "chunks": chunks}

    def build(self, base: dict | None, session: WriteSession) -> dict:
        editor = TreeEditor(self.store, base["tree"] if base else None)
        for path, entry in self.entries.items():
            editor.put(path, entry)
        return editor.write(session)


@dataclasses.dataclass
class Rig:
    store: Store
    refs: Refs
    workers: Workers
    events: EventBus
    commits: CommitPath
    registry: PipelineRegistry
    scheduler: JobScheduler

    async def create(self, name: str, uid: int, script: str, output: str | None = None,
                     glob: str = "/*", repo: str = "raw") -> Pipeline:
        spec = {"name": name, "input": {"repo": repo, "glob": glob}, "transform": sh(script)}
        if output:
            spec["output"] = output
        return await self.workers.run(self.registry.create, spec, {"uid": uid, "gid": uid})

    async def commit(self, files: dict[str, bytes], repo: str = "raw") -> list[str]:
        done = await self.commits.commit(repo, "main", PutFile(self.store, files), CommitMeta("in", author_of(0)))
        return done.jobs

    def read(self, repo: str, path: str) -> bytes:
        head, _ = self.refs.read_branch(repo, "main")
        assert head is not None, f"{repo} has no commit"
        entry = walk.lookup(self.store, self.store.read_commit(head).root_entry(), path.strip("/").split("/"))
        return b"".join(self.store.iter_file(entry))


@pytest.fixture
async def rig(store: Store) -> AsyncIterator[Rig]:
    refs = Refs(store)
    workers = Workers(4)
    events = EventBus()
    commits = CommitPath(store, refs, BranchHeads(refs, workers), events, workers)
    registry = PipelineRegistry(refs)
    scheduler = JobScheduler(store, registry, commits, events.publish, workers.run, output_limit=1 << 20)
    commits.add_trigger(scheduler)
    await workers.run(refs.create_repo, "raw")
    async with trio.open_nursery() as nursery:
        await nursery.start(scheduler.run)
        yield Rig(store, refs, workers, events, commits, registry, scheduler)
        nursery.cancel_scope.cancel()


async def _finished(rig: Rig, job_id: str) -> Job:
    with trio.fail_after(120):
        return await rig.scheduler.wait(job_id)


@pytest.mark.allow_warnings   # a failed job is logged as a warning
async def test_a_fifo_in_the_output_fails_the_job_naming_it(rig: Rig) -> None:
    await rig.create("fifo", NOBODY, 'echo ok > "$TRUNKFS_OUTPUT/ok"; mkfifo "$TRUNKFS_OUTPUT/pipe"')
    (job_id,) = await rig.commit({"/a": b"1"})
    job = await _finished(rig, job_id)
    assert job.state == "failed" and "/pipe" in (job.error or "") and "FIFO" in (job.error or "")
    assert rig.refs.read_branch("fifo", "main")[0] is None   # nothing committed
    assert "/pipe" in (job.logs["0"].error or "")


@pytest.mark.allow_warnings
async def test_an_output_past_the_job_output_limit_commits_nothing(rig: Rig) -> None:
    await rig.create("big", NOBODY, 'head -c 3000000 /dev/zero > "$TRUNKFS_OUTPUT/big"')
    (job_id,) = await rig.commit({"/a": b"1"})
    job = await _finished(rig, job_id)
    assert job.state == "failed" and "job_output_limit" in (job.error or ""), job.error
    assert rig.refs.read_branch("big", "main")[0] is None


def _unknown_uid() -> int:
    uid = 54321
    while True:
        try:
            pwd.getpwuid(uid)
        except KeyError:
            return uid
        uid += 1


@pytest.mark.allow_warnings
async def test_a_pipeline_whose_owner_is_gone_does_not_run(rig: Rig, workdir: Path) -> None:
    uid = _unknown_uid()
    ran = workdir / "ran"
    os.chmod(workdir, 0o777)
    await rig.create("orphan", uid, f'touch {ran}; echo x > "$TRUNKFS_OUTPUT/x"')
    (job_id,) = await rig.commit({"/a": b"1"})
    job = await _finished(rig, job_id)
    assert job.state == "failed"
    assert job.error == f"owner uid {uid} of pipeline 'orphan' no longer exists"
    assert not ran.exists()


@pytest.mark.allow_warnings
async def test_a_job_rechecks_its_owners_rights_on_both_repos(rig: Rig, workdir: Path) -> None:
    await rig.create("reader", NOBODY, 'cat * > "$TRUNKFS_OUTPUT/copy"')
    await rig.workers.run(rig.refs.create_repo, "roots")       # root's: read for everyone
    await rig.create("writer", NOBODY, 'cat * > "$TRUNKFS_OUTPUT/copy"', output="roots")
    jobs = await rig.commit({"/a": b"1"})
    by_pipeline = {j.pipeline: j for j in [await _finished(rig, i) for i in jobs]}
    assert by_pipeline["reader"].state == "succeeded", by_pipeline["reader"].error
    assert by_pipeline["writer"].state == "failed"
    assert by_pipeline["writer"].error == (f"owner uid {NOBODY} of pipeline 'writer' no longer has "
                                           "write on repo 'roots'")
    # the input repo made private: the owner may no longer read it
    await rig.workers.run(rig.refs.update_repo, "raw", lambda info: dataclasses.replace(info, acl=[]))
    jobs = await rig.commit({"/b": b"2"})
    reader = [j for j in [await _finished(rig, i) for i in jobs] if j.pipeline == "reader"][0]
    assert reader.state == "failed"
    assert reader.error == f"owner uid {NOBODY} of pipeline 'reader' no longer has read on repo 'raw'"


async def test_copied_inputs_are_private_to_the_owner(rig: Rig) -> None:
    await rig.create("peek", NOBODY, 'stat -c "%a %u" "$TRUNKFS_INPUT" > "$TRUNKFS_OUTPUT/top"; '
                                     'stat -c "%a" a > "$TRUNKFS_OUTPUT/file"', glob="/")
    (job_id,) = await rig.commit({"/a": b"1"})
    job = await _finished(rig, job_id)
    assert job.state == "succeeded", (job.error, job.logs["0"].to_json())
    assert rig.read("peek", "/top") == f"500 {NOBODY}\n".encode()   # only its owner gets in
    assert rig.read("peek", "/file") == b"444\n"                     # files inside keep their modes


def test_materialize_gives_the_input_directory_to_its_owner(store: Store, workdir: Path) -> None:
    root = workdir / "in"
    root.mkdir()
    session = store.session()
    editor = TreeEditor(store, None)
    chunks, size = session.put_bytes(b"data")
    editor.put("/d/f", {"type": FILE, "mode": 0o644, "mtime": 0, "size": size, "chunks": chunks})
    tree = editor.write(session)["tree"]
    session.flush()
    datum = list(walk.children(store, {"type": DIR, "tree": tree}))
    materialize(store, datum, str(root), owner=(NOBODY, NOBODY))
    st = os.stat(root)
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (NOBODY, NOBODY, 0o500)
    assert stat.S_IMODE(os.stat(root / "d" / "f").st_mode) == 0o444
    remove_tree(str(root))
    assert not root.exists()


async def test_a_recreated_pipeline_of_another_owner_never_reuses_outputs(rig: Rig) -> None:
    script = 'for f in *; do id -u > "$TRUNKFS_OUTPUT/$f.uid"; done'
    first = await rig.create("p", NOBODY, script)
    (job_id,) = await rig.commit({"/a": b"1"})
    job = await _finished(rig, job_id)
    assert job.state == "succeeded", job.error
    assert rig.read("p", "/a.uid") == f"{NOBODY}\n".encode()
    # the same pipeline, run again, still reuses its own outputs
    again = await _finished(rig, await rig.scheduler.enqueue(first, job.input.commit))
    assert again.datums.skipped == 1 and again.datums.processed == 0
    await rig.workers.run(rig.registry.delete, "p")
    second = await rig.create("p", DAEMON_UID, script, output="p-daemon")
    assert second.id != first.id
    job = await _finished(rig, await rig.scheduler.enqueue(second, job.input.commit))
    assert job.state == "succeeded", job.error
    assert job.datums.processed == 1 and job.datums.skipped == 0
    assert rig.read("p-daemon", "/a.uid") == f"{DAEMON_UID}\n".encode()


def test_pipeline_ids_are_kept_by_updates_and_derived_for_old_records(store: Store) -> None:
    refs = Refs(store)
    refs.create_repo("raw")
    registry = PipelineRegistry(refs)
    spec = {"name": "p", "input": {"repo": "raw"}, "transform": sh("true")}
    made = registry.create(spec, {"uid": 0, "gid": 0})
    updated = registry.update({**spec, "transform": sh("false")})
    assert updated.id == made.id and updated.version == 2
    assert registry.get("p")[0].id == made.id and len(made.id) == 32
    # a record written before pipelines had ids
    import json
    old = json.loads(made.encode())
    del old["id"]
    legacy = Pipeline.decode(json.dumps(old).encode(), "pipelines/p")
    assert legacy.id == Pipeline.decode(json.dumps(old).encode(), "pipelines/p").id != made.id
    old["created"] += 1     # a re-created pipeline of the same name is another one
    assert Pipeline.decode(json.dumps(old).encode(), "pipelines/p").id != legacy.id


async def test_pipeline_work_runs_on_threads_of_its_own(rig: Rig) -> None:
    """Every thread of the daemon's workers (which the mount and the socket
    use) taken: a job still cuts, copies, runs and stores its datums; only
    its commit waits for them.  (trio's default limiter is left alone:
    trio itself starts subprocesses in its threads.)"""
    await rig.create("busy", NOBODY, 'for f in *; do cp "$f" "$TRUNKFS_OUTPUT/"; done')
    watch = rig.events.subscribe()
    (job_id,) = await rig.commit({"/a": b"1", "/b": b"2"})
    with trio.fail_after(60):
        while True:
            event = await watch.receive()
            if event.get("type") == "job" and event.get("state") == "running":
                break
    holders = []
    limiter = rig.workers.limiter
    for _ in range(int(limiter.total_tokens)):
        holder = object()
        await limiter.acquire_on_behalf_of(holder)
        holders.append(holder)
    try:
        job = rig.scheduler.get(job_id)
        with trio.fail_after(60):
            while job.datums.processed < 2 and not job.done:
                await trio.sleep(0.05)
        assert job.datums.processed == 2 and not job.done
    finally:
        for holder in holders:
            limiter.release_on_behalf_of(holder)
    job = await _finished(rig, job_id)
    assert job.state == "succeeded", job.error


# -- the setting, through a real daemon --------------------------------------------------------

@pytest.mark.allow_warnings
def test_job_output_limit_from_the_config_file(daemon_factory, workdir: Path) -> None:
    config = workdir / "config.toml"
    config.write_text('job_output_limit = "4K"\n')
    d = daemon_factory(extra=["--config", str(config)])
    d.cli("repo", "create", "raw")
    register(d, workdir, {"name": "fat", "input": {"repo": "raw", "glob": "/"},
                          "transform": sh('head -c 3000 /dev/zero > "$TRUNKFS_OUTPUT/one"; '
                                          'head -c 3000 /dev/zero > "$TRUNKFS_OUTPUT/two"')})
    put_files(d, workdir, "raw", {"x": b"1"})
    job = wait_all(d)[-1]
    assert job["state"] == "failed" and "job_output_limit" in job["error"], job
    assert "4096" in job["error"]
    assert d.cli("log", "fat", "--json").json() == []


def test_the_job_directories_a_daemon_clears_at_start_never_reach_through_what_a_user_planted(
        store: Store, workdir: Path) -> None:
    """At start a daemon removes the job directories it left when it died,
    by name in the temporary directory.  A user who knows the daemon's id
    (commits show it) plants names with its prefix: a symlink to a
    directory of root's, a FIFO, and a directory holding a hard link to a
    root file.  Nothing of root's is followed, opened or deleted."""
    import tempfile
    ident = "0123456789abcdef"
    prefix = f"trunkfs-job-{ident[:8]}-"
    tmp = Path(tempfile.gettempdir())
    canary = workdir / "roots-dir"
    canary.mkdir()
    (canary / "keep").write_bytes(b"root's")
    secret = workdir / "roots-file"
    secret.write_bytes(b"root only")
    os.chmod(secret, 0o600)
    planted = [tmp / f"{prefix}link", tmp / f"{prefix}fifo", tmp / f"{prefix}dir"]
    try:
        planted[0].symlink_to(canary)
        os.mkfifo(planted[1])
        planted[2].mkdir()
        os.link(secret, planted[2] / "hard")
        os.lchown(planted[0], NOBODY, NOBODY)
        os.chown(planted[1], NOBODY, NOBODY)
        os.chown(planted[2], NOBODY, NOBODY)
        refs = Refs(store)
        workers = Workers(2)
        events = EventBus()
        commits = CommitPath(store, refs, BranchHeads(refs, workers), events, workers)
        JobScheduler(store, PipelineRegistry(refs), commits, events.publish, workers.run,
                     daemon_id=ident).load()
        assert (canary / "keep").read_bytes() == b"root's"
        assert secret.read_bytes() == b"root only" and os.stat(secret).st_nlink >= 1
    finally:
        for p in planted:
            if p.is_symlink() or p.is_fifo():
                p.unlink()
            elif p.exists():
                shutil.rmtree(p)
