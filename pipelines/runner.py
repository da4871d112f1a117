"""The process sandbox: one datum's command as a subprocess.

The command runs as the pipeline's owner (uid and gid, no extra groups) when
the daemon is root, in a session and process group of its own, with an
environment made only of the spec's ``env`` and the ``TRUNKFS_*`` variables,
its working directory the datum's input.

Where the machine has cgroup v2 with ``cgroup.kill`` (:mod:`.cgroups`),
each attempt runs in a cgroup of its own, joined by the child before it
execs; when the attempt ends (success, failure, timeout, or the job is
cancelled) everything in that cgroup is killed, including processes that
left the process group with ``setsid``, and the cgroup is removed.
Elsewhere the process group is killed, as before.

Its stdout and stderr are drained as it runs, so a full pipe never blocks
the command; what is kept of them is capped (:class:`OutputCapture`): the
start and the end, with the number of bytes dropped between, so memory
stays bounded however much a command writes.

:func:`run_datum` runs a datum with its retries, each attempt in fresh
directories that the caller prepares.
"""

from __future__ import annotations

import errno
import functools
import logging
import os
import shutil
import signal
import subprocess
from collections.abc import Callable, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol

import trio

from .cgroups import DatumCgroup, DatumCgroups

log = logging.getLogger(__name__)

LOG_LIMIT = 1024 * 1024   # bytes of a datum attempt's output kept (default of job_log_limit)
DRAIN_GRACE = 5.0         # seconds its pipes are read after the command's processes ended


@dataclass(frozen=True)
class Sandbox:
    """How the daemon runs datum commands: the cap on the output kept per
    attempt (``job_log_limit``, 0: no cap) and the datum cgroups (None:
    process groups only)."""
    log_limit: int = LOG_LIMIT
    cgroups: DatumCgroups | None = None



@dataclass(frozen=True)
class Command:
    """What to run for a datum, and as whom."""
    argv: list[str]
    env: Mapping[str, str] = field(default_factory=dict)
    stdin: str | None = None
    timeout: float = 3600.0
    uid: int = 0
    gid: int = 0


class AttemptDirs(NamedTuple):
    """The directories of one attempt: the datum's files, and where the
    command writes its output."""
    input: str
    output: str


@dataclass
class RunResult:
    """How one run of a command ended (the fields of a datum's log)."""
    exit: int | None          # None: it never started, or was killed by its timeout before exiting
    stdout: str
    stderr: str
    error: str | None = None  # None: it succeeded

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass
class DatumRun:
    """A datum's run, retries included: how its last attempt ended, and the
    directories of that attempt (its output is there when it succeeded)."""
    result: RunResult
    attempts: int
    dirs: AttemptDirs

    @property
    def ok(self) -> bool:
        return self.result.ok


class AttemptLog(Protocol):
    """Where a datum's attempts are recorded as they happen (a job's datum log)."""

    def attempt_started(self, attempt: int) -> None: ...

    def attempt_ended(self, result: RunResult) -> None: ...


PrepareAttempt = Callable[[int], AbstractAsyncContextManager[AttemptDirs]]


class OutputCapture:
    """What is kept of one output stream: its first and its last bytes
    (``limit`` in all, half each), and how many bytes fell between.  Memory
    stays under twice ``limit`` whatever is fed; ``limit`` 0 keeps all."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.head_size = limit // 2
        self.tail_size = limit - self.head_size
        self.head = bytearray()
        self.tail = bytearray()
        self.total = 0

    def feed(self, data: bytes | bytearray) -> None:
        self.total += len(data)
        if not self.limit:
            self.head += data
            return
        room = self.head_size - len(self.head)
        if room > 0:
            self.head += data[:room]
            data = data[room:]
        self.tail += data
        if len(self.tail) > 2 * self.tail_size:
            del self.tail[:len(self.tail) - self.tail_size]

    @property
    def dropped(self) -> int:
        """Bytes of the stream that are not kept."""
        if not self.limit:
            return 0
        return self.total - len(self.head) - min(len(self.tail), self.tail_size)

    def text(self) -> str:
        """The kept bytes as text, with a line saying how many were dropped."""
        if not self.limit or not self.dropped:
            return bytes(self.head + self.tail).decode("utf-8", "replace")
        kept_tail = bytes(self.tail[len(self.tail) - self.tail_size:])
        note = f"\n[trunkfs: {self.dropped} bytes of output dropped here (job_log_limit)]\n".encode()
        return (bytes(self.head) + note + kept_tail).decode("utf-8", "replace")


def kill_group(pid: int) -> None:
    """SIGKILL a process group (gone already is fine)."""
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def output_captures(log_limit: int) -> tuple[OutputCapture, OutputCapture]:
    """Captures of stdout and stderr sharing an attempt's cap (0: no cap)."""
    if not log_limit:
        return OutputCapture(0), OutputCapture(0)
    half = max(1, log_limit // 2)
    return OutputCapture(half), OutputCapture(max(1, log_limit - half))


class _Processes:
    """Everything an attempt started: its cgroup where there is one, else
    its process group."""

    def __init__(self, pid: int, cgroup: DatumCgroup | None) -> None:
        self.pid, self.cgroup = pid, cgroup
        self.ended = False

    def kill(self) -> None:
        if self.cgroup is not None:
            self.cgroup.kill()
        else:
            kill_group(self.pid)

    async def end(self) -> None:
        """Kill what is left and remove the cgroup (once)."""
        if self.ended:
            return
        self.ended = True
        if self.cgroup is not None:
            await self.cgroup.kill_and_remove()
        else:
            kill_group(self.pid)


SYSTEM_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"   # where the join's tools are looked up: never the datum's PATH
# Joins the cgroup whose cgroup.procs is $1, then execs the rest (as root: a
# fixed script, an empty environment, tools by absolute path).
JOIN_SCRIPT = 'echo 0 > "$1" || exit 126; shift; exec "$@"'


@functools.cache
def _system_tool(name: str) -> str | None:
    """A tool's absolute path in the system directories (looked up once per daemon)."""
    return shutil.which(name, path=SYSTEM_PATH)


def joining_argv(command: Command, env: Mapping[str, str], procs: str, switch: bool) -> list[str] | None:
    """The argv that runs ``command`` in the cgroup whose ``cgroup.procs`` is
    ``procs``, with exactly ``env``, as its uid and gid when ``switch``:
    ``/bin/sh`` joins the cgroup, ``setpriv`` drops to the owner (no extra
    groups), ``env -i`` sets the environment, then the command.  None where
    a tool is missing (the caller then joins in a ``preexec_fn``).

    Why not ``preexec_fn``: it makes Python fork the whole daemon, whose
    page tables grow with its memory (tens of milliseconds per datum for a
    daemon of a few hundred MiB), where these execs cost about a millisecond
    each and the spawn stays a vfork.  The wrapper runs with an empty
    environment, so nothing of the pipeline's ``env`` (PATH, SHELLOPTS,
    PS4, BASH_ENV...) reaches the shell that runs as root."""
    env_tool, setpriv = _system_tool("env"), _system_tool("setpriv")
    if not os.path.exists("/bin/sh") or env_tool is None or (switch and setpriv is None) \
            or "=" in command.argv[0]:      # env(1) would take it for a variable
        return None
    argv = ["/bin/sh", "-c", JOIN_SCRIPT, "trunkfs-join", procs]
    if switch:
        assert setpriv is not None
        argv += [setpriv, f"--reuid={command.uid}", f"--regid={command.gid}", "--clear-groups", "--"]
    return argv + [env_tool, "-i", "--", *(f"{k}={v}" for k, v in env.items()), *command.argv]


def _findable(command: Command, env: Mapping[str, str]) -> None:
    """FileNotFoundError unless the command names an executable (looked up
    in the datum's PATH, as exec will), so that a wrapped command that does
    not exist fails the way an unwrapped one does."""
    name = command.argv[0]
    if shutil.which(name, path=os.pathsep.join(os.get_exec_path(dict(env)))) is None:
        raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), name)


async def _spawn(command: Command, dirs: AttemptDirs, env: Mapping[str, str],
                 cgroup: DatumCgroup | None) -> trio.Process:
    """Start the command (in ``cgroup`` when given, which it joins before it
    execs, and as the pipeline's uid when the daemon is root)."""
    switch = os.geteuid() == 0 and command.uid != 0
    options: dict = {}
    argv: list[str] = command.argv
    if cgroup is not None:
        wrapped = joining_argv(command, env, cgroup.procs_path, switch)
        if wrapped is not None:
            _findable(command, env)
            argv, env = wrapped, {}
        else:
            options["preexec_fn"] = cgroup.joiner(command.uid if switch else None,
                                                  command.gid if switch else None)
    elif switch:
        options.update(user=command.uid, group=command.gid, extra_groups=[])
    return await trio.lowlevel.open_process(
        argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        cwd=dirs.input, env=env, start_new_session=True, **options)


async def run_command(command: Command, dirs: AttemptDirs, env: Mapping[str, str] | None = None,
                      sandbox: Sandbox = Sandbox(), label: str = "datum",
                      attempt: int = 1) -> RunResult:
    """Run ``command`` once in ``dirs.input`` writing to ``dirs.output``;
    ``env`` adds variables (``TRUNKFS_INPUT`` and ``TRUNKFS_OUTPUT`` are set
    here).  ``label`` and ``attempt`` name its cgroup."""
    if os.geteuid() == 0:
        os.chown(dirs.output, command.uid, command.gid)
    full_env = dict(command.env)
    full_env.update(env or {})
    full_env.update(TRUNKFS_INPUT=dirs.input, TRUNKFS_OUTPUT=dirs.output)
    cgroup = sandbox.cgroups.new(label, attempt) if sandbox.cgroups is not None else None
    try:
        if cgroup is not None and not cgroup.try_open():   # a mkdir on cgroupfs: no thread hop
            await trio.to_thread.run_sync(cgroup.open)       # a leftover of that name to kill first
        proc = await _spawn(command, dirs, full_env, cgroup)
    except (OSError, subprocess.SubprocessError) as exc:
        if cgroup is not None:
            with trio.CancelScope(shield=True):
                await cgroup.kill_and_remove()
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        return RunResult(exit=None, stdout="", stderr="",
                         error=f"cannot start {command.argv[0]!r}: {reason}")
    if cgroup is not None:
        cgroup.close_procs()
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    stdin, stdout, stderr = proc.stdin, proc.stdout, proc.stderr
    processes = _Processes(proc.pid, cgroup)
    out, err = output_captures(sandbox.log_limit)

    async def drain(stream: trio.abc.ReceiveStream, capture: OutputCapture) -> None:
        async for data in stream:   # never stops reading: a full pipe would block the command
            capture.feed(data)

    async def feed() -> None:
        try:
            if command.stdin:
                await stdin.send_all(command.stdin.encode())
        except trio.BrokenResourceError:
            pass
        finally:
            await stdin.aclose()

    timed_out = False
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(drain, stdout, out)
            nursery.start_soon(drain, stderr, err)
            nursery.start_soon(feed)
            with trio.move_on_after(command.timeout) as timer:
                await proc.wait()
            if timer.cancelled_caught:
                timed_out = True
                processes.kill()
                await proc.wait()
            # what it left behind (holding the pipes open, too) ends with it
            with trio.CancelScope(shield=True):
                await processes.end()
            # without a cgroup, a process that left the group may still hold
            # the pipes: stop reading them after a grace period
            nursery.cancel_scope.deadline = trio.current_time() + DRAIN_GRACE
    finally:
        with trio.CancelScope(shield=True):
            if proc.returncode is None:   # cancelled: the job was cancelled or the daemon stops
                processes.kill()
                await proc.wait()
            await processes.end()
    result = RunResult(exit=proc.returncode, stdout=out.text(), stderr=err.text())
    what = "its cgroup was" if cgroup is not None else "its process group was"
    if timed_out:
        result.error = f"timed out after {command.timeout:g} s; {what} killed"
    elif proc.returncode != 0:
        result.error = f"exited with {proc.returncode}"
    return result


async def run_datum(command: Command, retries: int, prepare: PrepareAttempt, attempts: AttemptLog,
                    env: Mapping[str, str] | None = None, sandbox: Sandbox = Sandbox()) -> DatumRun:
    """Run a datum until it succeeds, at most ``retries + 1`` times; each
    attempt runs in the directories ``prepare(attempt)`` yields (and cleans
    up after the run: input binds are undone before the next attempt)."""
    label = (env or {}).get("TRUNKFS_JOB") or "datum"
    attempt = 0
    while True:
        attempt += 1
        attempts.attempt_started(attempt)
        async with prepare(attempt) as dirs:
            result = await run_command(command, dirs, env, sandbox, label, attempt)
        attempts.attempt_ended(result)
        if result.ok or attempt > retries:
            return DatumRun(result, attempt, dirs)
        log.info("datum attempt %d failed (%s); trying again", attempt, result.error)
