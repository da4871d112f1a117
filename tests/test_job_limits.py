"""What a datum may leave behind and how much a job may keep, in-process on
real subprocesses and real cgroups: every process a datum attempt starts
ends with it (a cgroup v2 per attempt, killed with ``cgroup.kill``), also one
that left the process group with ``setsid``; output beyond ``job_log_limit``
is dropped while the pipes keep draining; finished job records are pruned by
age and count."""

from __future__ import annotations

import json
import logging
import os
import resource
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import trio

from trunkfs.daemon.config import Config, load_config
from trunkfs.pipelines import cgroups as cgroups_mod
from trunkfs.pipelines.cgroups import DatumCgroups
from trunkfs.pipelines.jobs import Job, JobInput, JobRetention, JobStore, JobTable, new_job_id
from trunkfs.pipelines.runner import AttemptDirs, Command, OutputCapture, Sandbox, run_command
from trunkfs.store.errors import InvalidArgument
from trunkfs.store.store import Store

from tests.harness import wait_for

REPO_ROOT = Path(__file__).resolve().parent.parent


def alive(pid: int) -> bool:
    """The process exists and is not a zombie (an unreaped dead process)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state != "Z"


def kill_if_alive(pid: int) -> None:
    try:
        os.kill(pid, 9)
    except ProcessLookupError:
        pass


async def wait_until(condition: Callable[[], object], timeout: float = 30.0) -> None:
    deadline = trio.current_time() + timeout
    while not condition():
        assert trio.current_time() < deadline, "timed out"
        await trio.sleep(0.01)


@pytest.fixture
def dirs(workdir: Path) -> AttemptDirs:
    (workdir / "in").mkdir()
    (workdir / "out").mkdir()
    return AttemptDirs(str(workdir / "in"), str(workdir / "out"))


@pytest.fixture
def cgroups() -> Iterator[DatumCgroups]:
    """This process's datum cgroups; at the end none may be left in it."""
    if os.geteuid() != 0:
        pytest.skip("creating cgroups needs root")
    made = DatumCgroups.setup()
    if made is None:
        pytest.skip("no cgroup v2 with cgroup.kill on this machine")
    try:
        yield made
    finally:
        left = [name for name in os.listdir(made.root) if os.path.isdir(os.path.join(made.root, name))]
        made.close()
        assert left == [], f"datum cgroups left behind: {left}"


def sh(script: str, timeout: float = 60.0) -> Command:
    return Command(["/bin/sh", "-c", script], {}, None, timeout)


def escapee(pidfile: Path) -> str:
    """A script part: a child in a session of its own (out of the process
    group), holding stdout open, its pid in ``pidfile`` before the script goes on."""
    return (f"setsid sh -c 'echo $$ > {pidfile}.tmp && mv {pidfile}.tmp {pidfile}; exec sleep 1000' & "
            f"until [ -s {pidfile} ]; do sleep 0.01; done; ")


# -- every process of a datum ends with it ------------------------------------------

@pytest.mark.parametrize("ending,timeout", [("exit 0", 60.0), ("exit 3", 60.0), ("sleep 300", 0.5)],
                         ids=["success", "failure", "timeout"])
async def test_a_setsid_child_ends_with_its_datum(cgroups: DatumCgroups, dirs: AttemptDirs,
                                                  workdir: Path, ending: str, timeout: float) -> None:
    pidfile = workdir / "escaped.pid"
    started = time.monotonic()
    result = await run_command(sh(escapee(pidfile) + ending, timeout=timeout), dirs,
                               sandbox=Sandbox(cgroups=cgroups), label="j1")
    child = int(pidfile.read_text())
    assert not alive(child), "the setsid child outlived its datum"
    assert time.monotonic() - started < 30   # its open stdout did not hold the datum
    assert result.ok == (ending == "exit 0")
    if ending == "sleep 300":
        assert "timed out after 0.5 s; its cgroup was killed" in (result.error or "")


async def test_without_a_cgroup_a_setsid_child_survives(dirs: AttemptDirs, workdir: Path) -> None:
    """The fallback (no cgroup v2): the process group is killed, and a child
    that left it survives; the datum still ends (its pipes are let go)."""
    pidfile = workdir / "escaped.pid"
    result = await run_command(sh(escapee(pidfile) + "echo done"), dirs, sandbox=Sandbox(cgroups=None))
    child = int(pidfile.read_text())
    try:
        assert result.ok and result.stdout == "done\n"
        assert alive(child)
    finally:
        kill_if_alive(child)


async def test_a_cancelled_datum_ends_its_setsid_child(cgroups: DatumCgroups, dirs: AttemptDirs,
                                                       workdir: Path) -> None:
    pidfile = workdir / "escaped.pid"
    async with trio.open_nursery() as nursery:
        nursery.start_soon(run_command, sh(escapee(pidfile) + "sleep 1000"), dirs, None,
                           Sandbox(cgroups=cgroups), "cancelled-job")
        await wait_until(lambda: pidfile.exists() and pidfile.read_text().strip())
        child = int(pidfile.read_text())
        assert alive(child)
        nursery.cancel_scope.cancel()     # what `trunkfs job cancel` and a daemon stop do
    assert not alive(child), "the setsid child outlived its cancelled datum"


async def test_a_datum_cannot_leave_its_cgroup(cgroups: DatumCgroups, dirs: AttemptDirs) -> None:
    """As the pipeline's uid a datum cannot move itself out of its cgroup."""
    if os.geteuid() != 0:
        pytest.skip("needs root to run as another uid")
    found = cgroups_mod.cgroup2_mount()
    assert found is not None
    command = Command(["/bin/sh", "-c", "grep ^0:: /proc/self/cgroup; id -u; "
                       f"echo $$ > {found[1]}/cgroup.procs && echo escaped; grep ^0:: /proc/self/cgroup"],
                      {}, None, 60.0, uid=65534, gid=65534)
    os.chmod(os.path.dirname(dirs.input), 0o755)
    os.chmod(dirs.input, 0o755)
    result = await run_command(command, dirs, sandbox=Sandbox(cgroups=cgroups), label="jail")
    assert result.ok, result
    lines = result.stdout.split()
    assert "escaped" not in lines and lines[1] == "65534"
    assert lines[0] == lines[-1] and lines[0].startswith("0::/") and "/jail-" in lines[0]


@pytest.mark.allow_warnings
async def test_setup_without_cgroup2_falls_back_and_says_so(workdir: Path, caplog: pytest.LogCaptureFixture,
                                                            dirs: AttemptDirs) -> None:
    mountinfo = workdir / "mountinfo"
    mountinfo.write_text("31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n"
                         "32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n")
    with caplog.at_level(logging.INFO, logger="trunkfs.pipelines.cgroups"):
        assert DatumCgroups.setup(mountinfo=str(mountinfo)) is None
    infos = [r for r in caplog.records if r.name == "trunkfs.pipelines.cgroups"]
    assert len(infos) == 1 and infos[0].levelno == logging.INFO and "process group" in infos[0].getMessage()


def test_the_cgroup2_mount_and_own_cgroup_are_read(workdir: Path) -> None:
    mountinfo = workdir / "mountinfo"
    mountinfo.write_text("31 23 0:28 / /sys/fs/cgroup rw - tmpfs tmpfs rw\n"
                         "41 31 0:38 / /sys/fs/cgroup/uni\\040fied rw,relatime - cgroup2 cgroup2 rw\n")
    assert cgroups_mod.cgroup2_mount(str(mountinfo)) == ("/", "/sys/fs/cgroup/uni fied")
    proc_cgroup = workdir / "cgroup"
    proc_cgroup.write_text("4:memory:/x\n0::/system.slice/trunkfs.service\n")
    assert cgroups_mod.own_cgroup(str(proc_cgroup)) == "/system.slice/trunkfs.service"


def _cgroup2() -> str:
    found = cgroups_mod.cgroup2_mount()
    made = DatumCgroups.setup() if os.geteuid() == 0 else None
    if found is None or made is None:
        pytest.skip("needs root and cgroup v2")
    made.close()
    return found[1]


def _remove_tree(path: str) -> None:
    for dirpath, _, _ in sorted(os.walk(path), key=lambda w: -len(w[0])):
        try:
            os.rmdir(dirpath)
        except OSError:
            pass


def test_a_daemon_alone_in_its_cgroup_moves_into_a_leaf() -> None:
    """As under systemd with Delegate=yes: the daemon's cgroup must not hold
    processes beside the datum cgroups, so the daemon moves into <own>/daemon."""
    mount = _cgroup2()
    own = os.path.join(mount, f"trunkfs-test-{uuid.uuid4().hex[:8]}")
    os.mkdir(own)
    script = (f"import os; open({own + '/cgroup.procs'!r}, 'w').write('0'); "
              "from trunkfs.pipelines.cgroups import DatumCgroups; c = DatumCgroups.setup(); "
              "print(c.root); print(open('/proc/self/cgroup').read().splitlines()[-1]); "
              "print(os.getpid()); c.close()")
    try:
        res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                             cwd=REPO_ROOT)
        assert res.returncode == 0, res.stderr
        root, cgroup, pid = res.stdout.split()
        rel = os.path.relpath(own, mount)
        assert cgroup == f"0::/{rel}/daemon"
        assert root == os.path.join(own, "trunkfs-jobs", pid)
        with open(os.path.join(own, "cgroup.procs")) as f:
            assert f.read() == ""             # no internal processes
    finally:
        _remove_tree(own)
    assert not os.path.exists(own)


async def test_what_a_gone_daemon_left_is_killed_at_start(dirs: AttemptDirs) -> None:
    """A daemon killed mid-job leaves datum cgroups (and their processes):
    the next start kills them and removes the cgroups."""
    _cgroup2()
    mine = DatumCgroups.setup()
    assert mine is not None
    jobs = os.path.dirname(mine.root)
    gone = os.path.join(jobs, "4194399")          # above PID_MAX_LIMIT: never a live pid
    stale = os.path.join(gone, "job-1-1")
    os.makedirs(stale)
    sleeper = subprocess.Popen(["sleep", "1000"])
    try:
        with open(os.path.join(stale, "cgroup.procs"), "w") as f:
            f.write(str(sleeper.pid))
        assert DatumCgroups.setup() is not None
        assert sleeper.wait(timeout=30) == -9
        assert not os.path.exists(gone)
    finally:
        sleeper.kill()
        sleeper.wait()
        _remove_tree(gone)
        mine.close()


# -- the output kept of a datum ----------------------------------------------------------

def test_a_capture_keeps_the_start_and_the_end_and_counts_the_rest() -> None:
    cap = OutputCapture(10)
    data = b"".join(b"%03d," % i for i in range(1000))   # 4000 bytes
    for i in range(0, len(data), 7):
        cap.feed(data[i:i + 7])
    assert cap.total == 4000 and cap.dropped == 3990
    head, note, tail = cap.text().split("\n")
    assert head == "000,0" and tail == ",999," and "3990 bytes of output dropped" in note
    small = OutputCapture(10)
    small.feed(b"0123456789")
    assert small.text() == "0123456789" and small.dropped == 0
    everything = OutputCapture(0)
    everything.feed(data)
    assert everything.text() == data.decode() and everything.dropped == 0


async def test_a_flood_of_output_is_drained_and_capped(dirs: AttemptDirs) -> None:
    """300 MB on stdout and on stderr: the command is never blocked, what
    is kept is the cap, and the daemon's memory does not grow with it."""
    size = 300_000_000
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss   # KiB
    result = await run_command(sh(f"head -c {size} /dev/zero | tr '\\0' o; echo END; "
                                  f"head -c {size} /dev/zero | tr '\\0' e >&2", timeout=120),
                               dirs, sandbox=Sandbox(log_limit=64 * 1024))
    grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert result.ok, result.error
    assert result.stdout.startswith("o" * 100) and result.stdout.endswith("o" * 100 + "END\n")
    assert f"{size + 4 - 32 * 1024} bytes of output dropped" in result.stdout
    assert f"{size - 32 * 1024} bytes of output dropped" in result.stderr
    assert len(result.stdout) < 33 * 1024 and len(result.stderr) < 33 * 1024
    assert grown < 100 * 1024, f"memory grew by {grown} KiB"


async def test_no_cap_keeps_everything(dirs: AttemptDirs) -> None:
    result = await run_command(sh("head -c 3000000 /dev/zero | tr '\\0' x"), dirs,
                               sandbox=Sandbox(log_limit=0))
    assert result.stdout == "x" * 3_000_000


# -- pruning of finished jobs ------------------------------------------------------------

def _job(pipeline: str, state: str, finished_days_ago: float | None, now: float) -> Job:
    created = now - (finished_days_ago or 0) * 86400 - 10
    job = Job(id=new_job_id(), pipeline=pipeline, version=1, input=JobInput("raw", "main", "00" * 32),
              output="out", created=created, state=state)
    if finished_days_ago is not None:
        job.started, job.finished = created + 1, now - finished_days_ago * 86400
    return job


def test_retention_keeps_the_newest_and_the_young_and_every_unfinished_job() -> None:
    now = time.time()
    a = [_job("a", "succeeded", d, now) for d in (50, 40, 3, 2, 1)]    # oldest first
    a_failed = _job("a", "failed", 0.5, now)
    a_cancelled = _job("a", "cancelled", 0.1, now)
    a_queued = _job("a", "queued", None, now)
    a_running = _job("a", "running", None, now)
    a_old_running = _job("a", "running", None, now)
    a_old_running.created = now - 90 * 86400
    b = [_job("b", "failed", d, now) for d in (20, 10)]
    everyone = [*a, a_failed, a_cancelled, a_queued, a_running, a_old_running, *b]
    expired = JobRetention(keep_days=30, keep_count=4).expired(everyone, now)
    # a: finished newest first: cancelled, failed, 1, 2 | 3 (count), 40 and 50 (count and age)
    assert {j.id for j in expired} == {a[0].id, a[1].id, a[2].id}
    assert {j.id for j in JobRetention(keep_days=15, keep_count=0).expired(everyone, now)} == \
        {a[0].id, a[1].id, b[0].id}
    assert JobRetention(keep_days=0, keep_count=0).expired(everyone, now) == []
    assert {j.id for j in JobRetention(keep_days=0, keep_count=1).expired(everyone, now)} == \
        {j.id for j in [*a, a_failed, b[0]]}


def test_pruning_deletes_records_and_their_logs(store: Store) -> None:
    now = time.time()
    jobs = [_job("p", "succeeded", d, now) for d in (9, 8, 7)] + [_job("p", "queued", None, now)]
    records = JobStore(store.backend, JobRetention(keep_days=30, keep_count=1))
    for job in jobs:
        records.save(job.id, job.encode())
    table = JobTable(jobs)
    assert records.prune(table, "other") == []
    assert sorted(records.prune(table, "p", now)) == sorted([jobs[0].id, jobs[1].id])
    assert [j.id for j in table.list()] == [jobs[2].id, jobs[3].id]
    assert sorted(store.backend.list("jobs/")) == sorted(f"jobs/{j.id}" for j in jobs[2:])
    # at start, with a retention: records past it are deleted and not loaded
    old = _job("p", "failed", 60, now)
    records.save(old.id, old.encode())
    loaded = records.load_at_start()
    assert {j.id for j in loaded} == {jobs[2].id, jobs[3].id}
    assert f"jobs/{old.id}" not in set(store.backend.list("jobs/"))
    # without a retention nothing is pruned
    records.save(old.id, old.encode())
    assert {j.id for j in JobStore(store.backend).load_at_start()} == {jobs[2].id, jobs[3].id, old.id}


# -- the settings -------------------------------------------------------------------------

def test_the_settings_have_defaults_and_are_checked(workdir: Path) -> None:
    config = Config(state=str(workdir / "s"))
    assert (config.job_log_limit_bytes(), config.job_keep_days, config.job_keep_count) == (1 << 20, 30, 1000)
    path = workdir / "config.toml"
    path.write_text('job_log_limit = "64K"\njob_keep_days = 0.5\njob_keep_count = 0\n')
    loaded = load_config(str(path), {"state": str(workdir / "s")})
    assert (loaded.job_log_limit_bytes(), loaded.job_keep_days, loaded.job_keep_count) == (65536, 0.5, 0)
    for bad in ('job_log_limit = "lots"', "job_keep_days = -1", 'job_keep_count = "x"',
                "job_keep_count = -3", "job_keep_days = true"):
        path.write_text(bad + "\n")
        with pytest.raises(InvalidArgument):
            load_config(str(path), {"state": str(workdir / "s")})
    assert "job_keep_count=0" in repr(loaded)


# -- a daemon with the settings ----------------------------------------------------------

def _register(d: Any, workdir: Path, spec: dict) -> None:
    path = workdir / f"{spec['name']}.json"
    path.write_text(json.dumps(spec))
    d.cli("pipeline", "create" if not d.cli("pipeline", "list", "--json").json() else "update", "-f", str(path))


def _put(d: Any, workdir: Path, name: str, data: bytes) -> str:
    src = workdir / "src"
    src.mkdir(exist_ok=True)
    (src / name).write_bytes(data)
    (job_id,) = d.cli("put", "raw", str(src / name), "--json").json()["jobs"]
    return str(job_id)


def test_a_daemon_caps_logs_prunes_jobs_and_ends_datum_processes(daemon_factory: Any, workdir: Path) -> None:
    config = workdir / "config.toml"
    config.write_text('job_log_limit = "2K"\njob_keep_count = 2\n')
    d = daemon_factory(extra=["--config", str(config)])
    pids = workdir / "pids"
    pids.mkdir()
    os.chmod(workdir, 0o755)
    os.chmod(pids, 0o777)
    d.cli("repo", "create", "raw")
    _register(d, workdir, {"name": "noisy", "input": {"repo": "raw", "glob": "/"}, "transform": {
        "cmd": ["/bin/sh", "-c", escapee(pids / "$TRUNKFS_JOB") + "head -c 100000 /dev/zero | tr '\\0' x"]}})
    job_ids = [_put(d, workdir, f"f{i}", b"%d" % i) for i in range(4)]
    # a pipeline's jobs run one after the other: the last one ends last
    wait_for(lambda: d.cli("job", "show", job_ids[-1], "--json").json()["state"]
             in ("succeeded", "failed", "cancelled"), 60, "the last job")
    jobs = d.cli("job", "list", "--json").json()
    assert [j["id"] for j in jobs] == job_ids[2:]                 # job_keep_count = 2
    assert all(j["state"] == "succeeded" for j in jobs)
    pruned = d.cli("job", "show", job_ids[0], "--json", check=False)
    assert pruned.returncode != 0 and "does not exist" in pruned.err
    assert not (d.store_dir / "jobs" / job_ids[0]).exists()
    logs = d.cli("job", "logs", job_ids[-1], "--json").json()["logs"]["0"]
    assert "bytes of output dropped" in logs["stdout"] and len(logs["stdout"]) < 2048 + 200
    for job_id in job_ids:
        child = int((pids / job_id).read_text())
        assert not alive(child), f"the setsid child of job {job_id} outlived it"

    # a cancelled job ends its datum's detached child too
    _register(d, workdir, {"name": "noisy", "input": {"repo": "raw", "glob": "/"}, "transform": {
        "cmd": ["/bin/sh", "-c", escapee(pids / "$TRUNKFS_JOB") + "sleep 1000"]}})
    stuck = _put(d, workdir, "g", b"g")
    child = int(wait_for(lambda: (pids / stuck).exists() and (pids / stuck).read_text().strip(), 60,
                         "the datum's child"))
    assert alive(child)
    assert d.cli("job", "cancel", stuck, "--json").json()["state"] == "cancelled"
    assert not alive(child), "the setsid child outlived its cancelled job"
    # at a new start, only the newest job_keep_count finished jobs are loaded
    d.stop()
    config.write_text('job_keep_count = 1\n')
    d.start()
    assert [j["id"] for j in d.cli("job", "list", "--json").json()] == [stuck]


@pytest.mark.allow_warnings   # the failed job is logged
def test_the_logs_of_one_job_are_bounded_as_a_whole(daemon_factory: Any, workdir: Path) -> None:
    """Each attempt keeps at most job_log_limit; a whole job at most 64 times
    that, so a job of many noisy datums cannot fill the daemon's memory or
    its record. Failed datums keep their error."""
    config = workdir / "config.toml"
    config.write_text('job_log_limit = "1K"\n')
    d = daemon_factory(extra=["--config", str(config)])
    d.cli("repo", "create", "raw")
    src = workdir / "many"
    src.mkdir()
    for i in range(150):
        (src / f"f{i:03d}").write_bytes(b"%d" % i)
    _register(d, workdir, {"name": "chatty", "input": {"repo": "raw", "glob": "/*"}, "parallelism": 4,
                           "transform": {"cmd": ["/bin/sh", "-c",
                                                 "head -c 3000 /dev/zero | tr '\\0' y; "
                                                 "case $TRUNKFS_DATUM in /f149) exit 7;; esac"]}})
    (job_id,) = d.cli("put", "raw", *[str(p) for p in sorted(src.iterdir())], "--json").json()["jobs"]
    wait_for(lambda: d.cli("job", "show", job_id, "--json").json()["state"] in ("succeeded", "failed"),
             120, "the job")
    logs = d.cli("job", "logs", job_id, "--json").json()["logs"]
    assert len(logs) == 150
    kept = sum(len(e.get("stdout", "")) + len(e.get("stderr", "")) for e in logs.values())
    assert kept <= 64 * 1024 + 150 * 200, kept          # the job's cap, and a short note per datum past it
    assert any("the job's logs reached" in e.get("stdout", "") for e in logs.values())
    failed = [e for e in logs.values() if e.get("exit") == 7]
    assert len(failed) == 1 and failed[0]["error"]


# -- the cgroup join does not change what the command sees ----------------------------------

async def test_in_a_cgroup_a_command_sees_exactly_its_env_uid_and_no_groups(cgroups: DatumCgroups,
                                                                           dirs: AttemptDirs) -> None:
    """The join wraps the command (sh joins, setpriv drops to the owner, env -i
    sets the environment): the command still gets exactly its env, its uid
    and gid and no extra groups, and nothing of the env reaches the root
    shell of the join (no PATH lookup of its tools, no SHELLOPTS/PS4/ENV)."""
    os.chmod(dirs.input, 0o755)
    os.chmod(dirs.output, 0o777)
    trap = dirs.output + "/pwned"
    hostile = {"PATH": f"{dirs.output}:/usr/bin:/bin", "SHELLOPTS": "xtrace", "PS4": f"$(touch {trap})",
               "ENV": "/dev/null", "BASH_ENV": "/dev/null", "IFS": "/", "A": "x y\nz"}
    with open(os.path.join(dirs.output, "setpriv"), "w") as f:     # a decoy on the datum's PATH
        f.write(f"#!/bin/sh\ntouch {trap}\n")
    os.chmod(os.path.join(dirs.output, "setpriv"), 0o755)
    command = Command(["/bin/sh", "-c", 'env; echo "ids $(id -u) $(id -g) $(id -G)"'], hostile, None, 60.0,
                      65534, 65534)
    result = await run_command(command, dirs, {"TRUNKFS_JOB": "j"}, sandbox=Sandbox(cgroups=cgroups))
    assert result.ok, result
    seen = dict(line.split("=", 1) for line in result.stdout.split("\n") if "=" in line and not
                line.startswith("ids"))
    expected = {**hostile, "TRUNKFS_JOB": "j", "TRUNKFS_INPUT": dirs.input, "TRUNKFS_OUTPUT": dirs.output}
    expected.pop("A")
    expected.pop("IFS")       # the command's own sh resets IFS when it starts
    for key, value in expected.items():
        assert seen.get(key) == value, (key, seen.get(key))
    assert "A=x y\nz" in result.stdout
    assert "ids 65534 65534 65534" in result.stdout
    assert not os.path.exists(trap), "the datum's environment reached the root shell of the join"


async def test_in_a_cgroup_a_missing_command_cannot_start(cgroups: DatumCgroups, dirs: AttemptDirs) -> None:
    result = await run_command(Command(["/nonexistent/command"]), dirs, sandbox=Sandbox(cgroups=cgroups))
    assert result.exit is None and "cannot start '/nonexistent/command'" in (result.error or "")
    result = await run_command(Command(["no-such-tool-anywhere"], {"PATH": "/usr/bin:/bin"}), dirs,
                               sandbox=Sandbox(cgroups=cgroups))
    assert result.exit is None and "cannot start 'no-such-tool-anywhere'" in (result.error or "")
