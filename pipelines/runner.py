"""The process sandbox: one datum's command as a subprocess.

The command runs as the pipeline's owner (uid and gid, no extra groups) when
the daemon is root, in a session and process group of its own, with an
environment made only of the spec's ``env`` and the ``TRUNKFS_*`` variables,
its working directory the datum's input.  Its stdout and stderr are drained
as it runs and only their tails are kept (``LOG_LIMIT`` bytes each).  When
the timeout passes, or the job is cancelled, the whole process group is
killed; so is whatever the command left running in its group when it exits.

:func:`run_datum` runs a datum with its retries, each attempt in fresh
directories that the caller prepares.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
from collections.abc import Callable, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol

import trio

log = logging.getLogger(__name__)

LOG_LIMIT = 16 * 1024   # bytes of stdout and of stderr kept per datum


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


def tail(data: bytes, limit: int = LOG_LIMIT) -> str:
    """The last ``limit`` bytes of a stream, marked when cut, as text."""
    if len(data) > limit:
        data = b"...\n" + data[-limit:]
    return data.decode("utf-8", "replace")


def kill_group(pid: int) -> None:
    """SIGKILL a process group (gone already is fine)."""
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


async def run_command(command: Command, dirs: AttemptDirs, env: Mapping[str, str] | None = None,
                      log_limit: int = LOG_LIMIT) -> RunResult:
    """Run ``command`` once in ``dirs.input`` writing to ``dirs.output``;
    ``env`` adds variables (``TRUNKFS_INPUT`` and ``TRUNKFS_OUTPUT`` are set here)."""
    root = os.geteuid() == 0
    if root:
        os.chown(dirs.output, command.uid, command.gid)
    full_env = dict(command.env)
    full_env.update(env or {})
    full_env.update(TRUNKFS_INPUT=dirs.input, TRUNKFS_OUTPUT=dirs.output)
    switch = root and command.uid != 0
    try:
        proc = await trio.lowlevel.open_process(
            command.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            cwd=dirs.input, env=full_env, start_new_session=True,
            user=command.uid if switch else None, group=command.gid if switch else None,
            extra_groups=[] if switch else None)
    except OSError as exc:
        return RunResult(exit=None, stdout="", stderr="",
                         error=f"cannot start {command.argv[0]!r}: {exc.strerror}")
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    stdin, stdout, stderr = proc.stdin, proc.stdout, proc.stderr
    out, err = bytearray(), bytearray()

    async def drain(stream: trio.abc.ReceiveStream, buf: bytearray) -> None:
        async for data in stream:
            buf += data
            if len(buf) > 4 * log_limit:   # keep memory bounded; the tail is what is kept
                del buf[:len(buf) - 2 * log_limit]

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
                kill_group(proc.pid)
                await proc.wait()
            kill_group(proc.pid)  # what it left behind in its group
    finally:
        if proc.returncode is None:   # cancelled: the job was cancelled or the daemon stops
            with trio.CancelScope(shield=True):
                kill_group(proc.pid)
                await proc.wait()
    result = RunResult(exit=proc.returncode, stdout=tail(bytes(out), log_limit),
                       stderr=tail(bytes(err), log_limit))
    if timed_out:
        result.error = f"timed out after {command.timeout:g} s; its process group was killed"
    elif proc.returncode != 0:
        result.error = f"exited with {proc.returncode}"
    return result


async def run_datum(command: Command, retries: int, prepare: PrepareAttempt, attempts: AttemptLog,
                    env: Mapping[str, str] | None = None) -> DatumRun:
    """Run a datum until it succeeds, at most ``retries + 1`` times; each
    attempt runs in the directories ``prepare(attempt)`` yields (and cleans
    up after the run: input binds are undone before the next attempt)."""
    attempt = 0
    while True:
        attempt += 1
        attempts.attempt_started(attempt)
        async with prepare(attempt) as dirs:
            result = await run_command(command, dirs, env)
        attempts.attempt_ended(result)
        if result.ok or attempt > retries:
            return DatumRun(result, attempt, dirs)
        log.info("datum attempt %d failed (%s); trying again", attempt, result.error)
