"""Pipelines running for real: subprocesses, chains, reuse, failures, timeouts,
restarts and the owner's uid."""

from __future__ import annotations

import itertools
import json
import os
import queue
import signal
import threading
import time
from pathlib import Path
from typing import IO

import pytest

from tests.harness import create_pipeline_as


def register(d, workdir: Path, spec: dict) -> None:
    path = workdir / f"{spec['name']}.json"
    path.write_text(json.dumps(spec))
    d.cli("pipeline", "create", "-f", str(path))


def sh(script: str, **extra) -> dict:
    return {"cmd": ["/bin/sh", "-c", script], **extra}


def wait_all(d, timeout: float = 60) -> list[dict]:
    """Wait until no job is queued or running; return the jobs."""
    deadline = time.monotonic() + timeout
    while True:
        jobs = d.cli("job", "list", "--json").json()
        if jobs and all(j["state"] in ("succeeded", "failed", "cancelled") for j in jobs):
            return jobs
        assert time.monotonic() < deadline, jobs
        time.sleep(0.1)


def put_files(d, workdir: Path, repo: str, files: dict[str, bytes], name: str = "src") -> dict:
    src = workdir / name
    for rel, data in files.items():
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_bytes(data)
    return d.cli("put", repo, *[str(p) for p in sorted(src.iterdir())], "--json").json()


def test_three_stage_chain_with_provenance(daemon, workdir):
    d = daemon
    d.cli("repo", "create", "raw")
    # split: one datum per top-level file; writes one word per line
    register(d, workdir, {"name": "split", "input": {"repo": "raw", "glob": "/*"},
                          "transform": sh('for f in "$TRUNKFS_INPUT"/*; do { tr " " "\\n" < "$f"; echo; } > '
                                          '"$TRUNKFS_OUTPUT/$(basename "$f").words"; done')})
    # upper: one datum per file
    register(d, workdir, {"name": "upper", "input": {"repo": "split", "glob": "/**"},
                          "transform": sh('cd "$TRUNKFS_INPUT" && for f in *; do tr a-z A-Z < "$f" > '
                                          '"$TRUNKFS_OUTPUT/$f"; done')})
    # total: the whole commit as one datum
    register(d, workdir, {"name": "total", "input": {"repo": "upper", "glob": "/"},
                          "transform": sh('cat "$TRUNKFS_INPUT"/* | sort > "$TRUNKFS_OUTPUT/all.txt"; '
                                          'echo "$TRUNKFS_PIPELINE $TRUNKFS_DATUM" > "$TRUNKFS_OUTPUT/env.txt"')})
    r = put_files(d, workdir, "raw", {"a.txt": b"one two", "b.txt": b"three four five"})
    assert len(r["jobs"]) == 1
    jobs = wait_all(d)
    assert [j["state"] for j in jobs] == ["succeeded"] * 3
    assert d.cli("cat", "split:/a.txt.words").stdout == b"one\ntwo\n"
    assert d.cli("cat", "upper:/b.txt.words").stdout == b"THREE\nFOUR\nFIVE\n"
    assert d.cli("cat", "total:/all.txt").stdout == b"FIVE\nFOUR\nONE\nTHREE\nTWO\n"
    assert d.cli("cat", "total:/env.txt").stdout == b"total /a.txt.words\n/b.txt.words\n"
    show = d.cli("show", "total@main", "--json").json()
    upper_head = d.cli("log", "upper", "--json").json()[0]["id"]
    assert show["provenance"] == [{"repo": "upper", "branch": "main", "commit": upper_head}]
    assert show["origin"]["pipeline"] == "total" and show["origin"]["version"] == 1
    chain = d.cli("provenance", "total@main", "--json").json()
    assert [(x["depth"], x["repo"]) for x in chain] == [(0, "total"), (1, "upper"), (2, "split"), (3, "raw")]
    assert chain[-1]["commit"] == r["commit"]
    assert "pipeline upper v1" in d.cli("provenance", "total").out
    # the job's own record
    job = d.cli("job", "show", r["jobs"][0], "--json").json()
    assert job["state"] == "succeeded" and job["datums"]["total"] == 2 and job["output_commit"]
    assert d.cli("job", "wait", r["jobs"][0]).returncode == 0


def test_incremental_reuse_runs_only_changed_datums(daemon, workdir):
    d = daemon
    d.cli("repo", "create", "raw")
    calls = workdir / "calls.log"
    calls.touch()
    os.chmod(workdir, 0o755)
    os.chmod(calls, 0o666)
    register(d, workdir, {"name": "count", "input": {"repo": "raw", "glob": "/*"}, "parallelism": 4,
                          "transform": sh(f'echo "$TRUNKFS_DATUM" >> {calls}; '
                                          'for f in "$TRUNKFS_INPUT"/*; do wc -c < "$f" > '
                                          '"$TRUNKFS_OUTPUT/$(basename "$f").n"; done')})
    files = {f"f{i:03d}": b"x" * i for i in range(100)}
    put_files(d, workdir, "raw", files)
    first = wait_all(d)[-1]
    assert first["state"] == "succeeded"
    assert first["datums"] == {"total": 100, "processed": 100, "skipped": 0, "failed": 0}
    assert len(calls.read_text().splitlines()) == 100
    (workdir / "src" / "f042").write_bytes(b"changed!")
    d.cli("put", "raw", str(workdir / "src" / "f042"))
    second = wait_all(d)[-1]
    assert second["datums"] == {"total": 100, "processed": 1, "skipped": 99, "failed": 0}
    assert calls.read_text().splitlines()[-1] == "/f042"
    assert len(calls.read_text().splitlines()) == 101
    assert d.cli("cat", "count:/f042.n").stdout.strip() == b"8"
    assert d.cli("cat", "count:/f099.n").stdout.strip() == b"99"
    assert len(d.cli("ls", "count", "--json").json()["entries"]) == 100


@pytest.mark.allow_warnings  # a failed job is logged as a warning
def test_a_failing_datum_fails_the_job_and_the_output_stays(daemon, workdir):
    d = daemon
    d.cli("repo", "create", "raw")
    register(d, workdir, {"name": "picky", "input": {"repo": "raw", "glob": "/*"}, "retries": 1,
                          "transform": sh('if [ -e "$TRUNKFS_INPUT/bad" ]; then echo "bad input" >&2; '
                                          'exit 3; fi; echo fine; cp "$TRUNKFS_INPUT"/* "$TRUNKFS_OUTPUT"/')})
    put_files(d, workdir, "raw", {"good": b"1"})
    assert wait_all(d)[-1]["state"] == "succeeded"
    head = d.cli("log", "picky", "--json").json()[0]["id"]
    put_files(d, workdir, "raw", {"bad": b"2"}, name="src2")
    job = wait_all(d)[-1]
    assert job["state"] == "failed" and "datum" in job["error"] and "exited with 3" in job["error"]
    assert d.cli("log", "picky", "--json").json()[0]["id"] == head  # the output branch did not move
    logs = d.cli("job", "logs", job["id"], "--json").json()["logs"]
    bad = [e for e in logs.values() if e["paths"] == ["/bad"]][0]
    assert bad["exit"] == 3 and bad["stderr"] == "bad input\n" and bad["attempts"] == 2
    text = d.cli("job", "logs", job["id"]).out
    assert "bad input" in text
    assert d.cli("job", "wait", job["id"], check=False).returncode == 1


@pytest.mark.allow_warnings
def test_timeout_kills_the_whole_process_group(daemon, workdir):
    d = daemon
    d.cli("repo", "create", "raw")
    pidfile = workdir / "child.pid"
    os.chmod(workdir, 0o777)
    register(d, workdir, {"name": "slow", "input": {"repo": "raw", "glob": "/"}, "timeout": 1,
                          "transform": sh(f"sleep 300 & echo $! > {pidfile}; sleep 300")})
    put_files(d, workdir, "raw", {"x": b"1"})
    job = wait_all(d, timeout=30)[-1]
    assert job["state"] == "failed" and "timed out" in job["error"]
    child = int(pidfile.read_text())
    deadline = time.monotonic() + 5
    while os.path.exists(f"/proc/{child}") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not os.path.exists(f"/proc/{child}"), "the background child survived the timeout"


def test_a_job_survives_a_daemon_restart(daemon, workdir):
    d = daemon
    d.cli("repo", "create", "raw")
    marker = workdir / "started"
    os.chmod(workdir, 0o777)
    register(d, workdir, {"name": "nap", "input": {"repo": "raw", "glob": "/"},
                          "transform": sh(f'echo run >> {marker}; sleep 2; echo done > "$TRUNKFS_OUTPUT/out"')})
    r = put_files(d, workdir, "raw", {"x": b"1"})
    deadline = time.monotonic() + 20
    while not marker.exists():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert d.stop() == 0  # mid-job
    d.start()
    job = d.cli("job", "wait", r["jobs"][0], "--json").json()
    assert job["state"] == "succeeded"
    assert marker.read_text().splitlines() == ["run", "run"]
    assert d.cli("cat", "nap:/out").stdout == b"done\n"


def test_commands_run_as_the_registering_user(daemon, workdir):
    if os.getuid() != 0:
        pytest.skip("needs root to register as another user")
    d = daemon
    d.cli("repo", "create", "raw")
    secret = workdir / "secret"
    secret.write_text("root only")
    os.chmod(secret, 0o600)
    os.chmod(workdir, 0o755)
    os.chmod(d.socket, 0o666)
    spec = workdir / "who.json"
    spec.write_text(json.dumps({"name": "who", "input": {"repo": "raw", "glob": "/"},
                                "transform": sh(f'id -u > "$TRUNKFS_OUTPUT/uid"; env | sort > "$TRUNKFS_OUTPUT/env"; '
                                                f'cat {secret} > "$TRUNKFS_OUTPUT/secret" 2>&1 || '
                                                'echo denied > "$TRUNKFS_OUTPUT/secret"')}))
    os.chmod(spec, 0o644)
    reg = create_pipeline_as(65534, d.socket, spec)
    assert reg.returncode == 0, reg.stderr
    reply = json.loads(reg.stdout)
    assert reply["ok"], reply
    assert reply["result"]["owner"]["uid"] == 65534
    put_files(d, workdir, "raw", {"x": b"1"})
    job = wait_all(d)[-1]
    assert job["state"] == "succeeded", d.cli("job", "logs", job["id"]).out
    assert d.cli("cat", "who:/uid").stdout == b"65534\n"
    assert d.cli("cat", "who:/secret").stdout == b"denied\n"
    env = d.cli("cat", "who:/env").stdout.decode()
    names = {line.split("=", 1)[0] for line in env.splitlines()}
    assert {"TRUNKFS_INPUT", "TRUNKFS_OUTPUT", "TRUNKFS_JOB", "TRUNKFS_PIPELINE",
            "TRUNKFS_INPUT_COMMIT", "TRUNKFS_DATUM"} <= names
    assert "TRUNKFS_SOCKET" not in names and "HOME" not in names


def watcher_lines(stream: IO[str]) -> queue.Queue[str]:
    """The lines a watcher prints, as they come (read by a thread of their own)."""
    lines: queue.Queue[str] = queue.Queue()

    def read() -> None:
        for line in stream:
            lines.put(line)
    threading.Thread(target=read, daemon=True).start()
    return lines


def wait_until_watching(d, workdir: Path, lines: queue.Queue[str], repo: str, timeout: float = 30) -> None:
    """Commit to a side branch of ``repo`` until the watcher prints such a
    commit: from then on it sees every event."""
    d.cli("branch", "create", f"{repo}@probe")
    deadline = time.monotonic() + timeout
    for n in itertools.count():
        (workdir / "probe").write_text(str(n))
        d.cli("put", f"{repo}@probe", str(workdir / "probe"))
        while True:   # the events so far; wait a little for the one just made
            try:
                event = json.loads(lines.get(timeout=1))
            except queue.Empty:
                break
            if event.get("type") == "commit" and event.get("branch") == "probe":
                return
        assert time.monotonic() < deadline, "the watcher printed no event"


def test_watch_reprocess_and_cancel(daemon, workdir):
    import subprocess
    import sys
    d = daemon
    d.cli("repo", "create", "raw")
    register(d, workdir, {"name": "copy", "input": {"repo": "raw", "glob": "/"},
                          "transform": sh('cp -r "$TRUNKFS_INPUT"/. "$TRUNKFS_OUTPUT"/')})
    watcher = subprocess.Popen([sys.executable, "-m", "trunkfs.daemon.cli", "watch", "raw", "--json"],
                               env=d.env, stdout=subprocess.PIPE, text=True)
    assert watcher.stdout is not None
    lines = watcher_lines(watcher.stdout)
    try:
        wait_until_watching(d, workdir, lines, "raw")
        r = put_files(d, workdir, "raw", {"x": b"1"})
        job_id = r["jobs"][0]
        events = []
        deadline = time.monotonic() + 30
        while not any(e["type"] == "job" and e["state"] == "succeeded" for e in events):
            assert time.monotonic() < deadline, events
            try:
                event = json.loads(lines.get(timeout=max(0.01, deadline - time.monotonic())))
            except queue.Empty:
                continue
            if event.get("branch") != "probe":   # a late event of the probe commits
                events.append(event)
        assert events[0] == {**events[0], "type": "commit", "repo": "raw", "commit": r["commit"],
                             "jobs": [job_id]}
        assert [e["state"] for e in events if e["type"] == "job"] == ["queued", "running", "succeeded"]
    finally:
        watcher.send_signal(signal.SIGINT)
        watcher.wait(10)
    assert d.cli("stats", "--json").returncode == 0  # the daemon is fine after the watcher left
    # update with --reprocess runs the new version on the current head
    spec = {"name": "copy", "input": {"repo": "raw", "glob": "/"},
            "transform": sh('echo v2 > "$TRUNKFS_OUTPUT/version"')}
    (workdir / "copy2.json").write_text(json.dumps(spec))
    up = d.cli("pipeline", "update", "-f", str(workdir / "copy2.json"), "--reprocess", "--json").json()
    assert up["version"] == 2 and len(up["jobs"]) == 1
    assert d.cli("job", "wait", up["jobs"][0]).returncode == 0
    assert d.cli("cat", "copy:/version").stdout == b"v2\n"
    assert d.cli("show", "copy@main", "--json").json()["origin"]["version"] == 2
    # cancel a running job
    spec = {"name": "copy", "input": {"repo": "raw", "glob": "/"}, "transform": sh("sleep 60")}
    (workdir / "copy3.json").write_text(json.dumps(spec))
    up = d.cli("pipeline", "update", "-f", str(workdir / "copy3.json"), "--reprocess", "--json").json()
    deadline = time.monotonic() + 20
    while d.cli("job", "show", up["jobs"][0], "--json").json()["state"] != "running":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    cancelled = d.cli("job", "cancel", up["jobs"][0], "--json").json()
    assert cancelled["state"] == "cancelled"
    assert d.cli("cat", "copy:/version").stdout == b"v2\n"  # the output did not move


def test_inputs_come_through_the_mount(daemon_factory, workdir):
    if os.getuid() != 0:
        pytest.skip("binding datum inputs needs root")
    d = daemon_factory(mount=True)
    d.cli("repo", "create", "raw")
    register(d, workdir, {"name": "where", "input": {"repo": "raw", "glob": "/*"},
                          "transform": sh('for f in "$TRUNKFS_INPUT"/*; do b=$(basename "$f"); '
                                          'df --output=source "$f" | tail -1 > "$TRUNKFS_OUTPUT/$b.src"; '
                                          'cat "$f" > "$TRUNKFS_OUTPUT/$b.copy"; '
                                          '(echo x > "$f") 2>/dev/null && echo writable > "$TRUNKFS_OUTPUT/$b.w"; '
                                          'ls "$TRUNKFS_INPUT" > "$TRUNKFS_OUTPUT/$b.ls"; done')})
    put_files(d, workdir, "raw", {"a": b"alpha", "dir/b": b"beta"})
    job = wait_all(d)[-1]
    assert job["state"] == "succeeded", d.cli("job", "logs", job["id"]).out
    assert d.cli("cat", "where:/a.src").stdout == b"trunkfs\n"
    assert d.cli("cat", "where:/dir.src").stdout == b"trunkfs\n"
    assert d.cli("cat", "where:/a.copy").stdout == b"alpha"
    assert d.cli("cat", "where:/a.ls").stdout == b"a\n"          # only this datum's files
    names = {e["name"] for e in d.cli("ls", "where", "--json").json()["entries"]}
    assert "a.w" not in names and "dir.w" not in names             # read-only
    with open("/proc/self/mounts") as f:
        assert "trunkfs-job-" not in f.read()                       # every bind is gone


@pytest.mark.allow_warnings
def test_two_datums_writing_one_path_fail_the_job(daemon, workdir):
    d = daemon
    d.cli("repo", "create", "raw")
    register(d, workdir, {"name": "clash", "input": {"repo": "raw", "glob": "/*"},
                          "transform": sh('echo "$TRUNKFS_DATUM" > "$TRUNKFS_OUTPUT/same.txt"')})
    put_files(d, workdir, "raw", {"a": b"1", "b": b"2"})
    job = wait_all(d)[-1]
    assert job["state"] == "failed"
    assert "same output path /same.txt" in job["error"]
    assert d.cli("log", "clash", "--json").json() == []
