"""Datum cgroups: every process a datum attempt starts, in one cgroup v2
that is killed as a whole when the attempt ends.

A process group does not hold a datum's processes: ``setsid`` (or a
daemonizing tool) leaves it, and survives a kill of the group.  A cgroup
does hold them: a process cannot leave its cgroup without write access to
the cgroup tree, which the pipeline's uid does not have.  Writing ``1`` to
``cgroup.kill`` (Linux 5.14) SIGKILLs every process in it at once.

Layout, below the cgroup the daemon runs in (``0::<path>`` of
``/proc/self/cgroup``, under the cgroup2 mount found in
``/proc/self/mountinfo``)::

    <own>/daemon/                       the daemon itself, when it moved (see below)
    <own>/trunkfs-jobs/<daemon pid>/    this daemon's datum cgroups
    <own>/trunkfs-jobs/<daemon pid>/<job>-<n>-<attempt>/

Under systemd with ``Delegate=yes`` the service's cgroup is the daemon's to
manage, but a cgroup that hands resources to children may hold no processes
of its own ("no internal processes"): a daemon alone in its cgroup moves
itself into the leaf ``<own>/daemon`` first.  The directory per daemon pid
keeps two daemons in one cgroup (tests, or two state directories) apart; a
starting daemon kills and removes the directories of daemons that are gone.

Where there is no cgroup2 mount, no ``cgroup.kill`` or no right to create
cgroups, :meth:`DatumCgroups.setup` returns None (logged once, at INFO) and
the runner kills process groups as before.
"""

from __future__ import annotations

import atexit
import errno
import itertools
import logging
import os
import time
from collections.abc import Callable

import trio

log = logging.getLogger(__name__)

JOBS_DIR = "trunkfs-jobs"     # below the daemon's own cgroup
LEAF = "daemon"               # where a daemon alone in its cgroup moves itself
KILL_WAIT = 10.0              # seconds to wait for a killed cgroup to empty


def _unescape(field: str) -> str:
    """A path field of mountinfo (spaces and the like are octal escapes)."""
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and len(field[i + 1:i + 4]) == 3 and field[i + 1:i + 4].isdigit():
            out.append(chr(int(field[i + 1:i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def cgroup2_mount(mountinfo: str = "/proc/self/mountinfo") -> tuple[str, str] | None:
    """The first cgroup2 mount: (the cgroup it shows, its mount point)."""
    try:
        with open(mountinfo) as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    for line in lines:
        left, sep, right = line.partition(" - ")
        fields = left.split()
        if sep and right.split()[:1] == ["cgroup2"] and len(fields) >= 5:
            return _unescape(fields[3]), _unescape(fields[4])
    return None


def own_cgroup(proc_cgroup: str = "/proc/self/cgroup") -> str | None:
    """This process's cgroup v2 path (the ``0::`` line), or None."""
    try:
        with open(proc_cgroup) as f:
            for line in f:
                if line.startswith("0::"):
                    return line[3:].rstrip("\n")
    except OSError:
        pass
    return None


def _procs(directory: str) -> list[int]:
    with open(os.path.join(directory, "cgroup.procs")) as f:
        return [int(p) for p in f.read().split()]


def _populated(directory: str) -> bool:
    with open(os.path.join(directory, "cgroup.events")) as f:
        for line in f:
            key, _, value = line.partition(" ")
            if key == "populated":
                return value.strip() != "0"
    return False


def _write(path: str, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def _kill_and_remove_sync(directory: str) -> bool:
    """Kill everything in ``directory`` and below, wait until it is empty,
    remove it and its children (at start, for what a dead daemon left)."""
    try:
        _write(os.path.join(directory, "cgroup.kill"), b"1")
        deadline = time.monotonic() + KILL_WAIT
        while _populated(directory) and time.monotonic() < deadline:
            time.sleep(0.01)
        for dirpath, _, _ in sorted(os.walk(directory), key=lambda w: -len(w[0])):
            os.rmdir(dirpath)
        return True
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            return True
        log.warning("cannot remove the stale datum cgroup %s: %s", directory, exc.strerror)
        return False


class DatumCgroup:
    """The cgroup of one datum attempt: made empty, joined by the command
    before it execs, killed and removed when the attempt ends."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._procs_fd: int | None = None

    def try_open(self) -> bool:
        """Create it and open its ``cgroup.procs``; False (nothing done) when a
        cgroup of that name is there already (then :meth:`open`, in a thread)."""
        try:
            os.mkdir(self.path, 0o755)
        except FileExistsError:
            return False
        self._procs_fd = os.open(self.procs_path, os.O_WRONLY | os.O_CLOEXEC)
        return True

    def open(self) -> None:
        """Create it (a leftover of the same name, from a dead daemon with
        this pid, is killed first) and open its ``cgroup.procs``."""
        if not self.try_open():
            _kill_and_remove_sync(self.path)
            if not self.try_open():
                raise FileExistsError(errno.EEXIST, "a datum cgroup of this name is back", self.path)

    @property
    def procs_path(self) -> str:
        """Its ``cgroup.procs``: a process that writes ``0`` there joins it."""
        return os.path.join(self.path, "cgroup.procs")

    def joiner(self, uid: int | None = None, gid: int | None = None) -> Callable[[], None]:
        """The child's step between fork and exec (``preexec_fn``): join this
        cgroup (while still root: moving a process needs write access to the
        cgroups on both sides), then drop to ``uid``/``gid`` with no extra
        groups.  The child is in the cgroup before it can start anything."""
        fd = self._procs_fd
        assert fd is not None, "open() the cgroup first"

        def join() -> None:
            os.write(fd, b"0")          # 0: the writing process
            if uid is not None and gid is not None:
                os.setgroups([])
                os.setgid(gid)
                os.setuid(uid)
        return join

    def close_procs(self) -> None:
        """Close the parent's ``cgroup.procs`` descriptor (after the spawn)."""
        if self._procs_fd is not None:
            os.close(self._procs_fd)
            self._procs_fd = None

    def kill(self) -> None:
        """SIGKILL every process in the cgroup (an empty or gone one is fine)."""
        try:
            _write(os.path.join(self.path, "cgroup.kill"), b"1")
        except FileNotFoundError:
            pass

    async def kill_and_remove(self) -> None:
        """Kill all, wait until the kernel has taken every process out, then
        remove the cgroup.  One still busy after ``KILL_WAIT`` seconds (a
        process in uninterruptible sleep) is logged and left; the next start
        of the daemon removes it."""
        self.close_procs()
        self.kill()
        deadline = trio.current_time() + KILL_WAIT
        delay = 0.0002    # the kernel empties a cgroup within a fraction of a millisecond of the kill
        try:
            while _populated(self.path):
                if trio.current_time() > deadline:
                    log.warning("datum cgroup %s still has processes %s s after it was killed; "
                                "it is left for the next start", self.path, KILL_WAIT)
                    return
                await trio.sleep(delay)
                delay = min(delay * 2, 0.1)
            os.rmdir(self.path)
        except FileNotFoundError:
            pass
        except OSError as exc:
            log.warning("cannot remove datum cgroup %s: %s", self.path, exc.strerror)


class DatumCgroups:
    """The daemon's subtree of datum cgroups (``<own>/trunkfs-jobs/<pid>``)."""

    def __init__(self, root: str) -> None:
        self.root = root
        self._seq = itertools.count(1)

    @classmethod
    def setup(cls, mountinfo: str = "/proc/self/mountinfo",
              proc_cgroup: str = "/proc/self/cgroup") -> "DatumCgroups | None":
        """This daemon's datum cgroups, ready to use, or None where cgroup v2
        with ``cgroup.kill`` cannot be used (logged at INFO).  Blocking: run
        it once, at start.  A daemon alone in a cgroup other than the root
        moves into ``<own>/daemon`` (systemd's delegation rules)."""
        mount = cgroup2_mount(mountinfo)
        own = own_cgroup(proc_cgroup)
        if mount is None or own is None:
            log.info("no cgroup v2 here: a datum's processes are ended by killing its "
                     "process group (processes that left it with setsid survive)")
            return None
        mount_root, mountpoint = mount
        rel = os.path.relpath(own, mount_root)
        if rel.startswith(".."):
            log.info("this process's cgroup %s is not below the cgroup2 mount %s: datum "
                     "processes are ended by killing their process group", own, mountpoint)
            return None
        base = os.path.normpath(os.path.join(mountpoint, rel))
        try:
            base = cls._leave_internal(base, mountpoint)
            jobs = os.path.join(base, JOBS_DIR)
            os.makedirs(jobs, mode=0o755, exist_ok=True)
            cls._remove_stale(jobs)
            root = os.path.join(jobs, str(os.getpid()))
            os.makedirs(root, mode=0o755, exist_ok=True)
            if not os.path.exists(os.path.join(root, "cgroup.kill")):
                log.info("cgroup v2 without cgroup.kill (Linux before 5.14): datum processes "
                         "are ended by killing their process group")
                os.rmdir(root)
                return None
        except OSError as exc:
            log.info("cannot create datum cgroups below %s (%s): datum processes are ended by "
                     "killing their process group", base, exc.strerror or exc)
            return None
        log.info("datum processes run in cgroups below %s", root)
        made = cls(root)
        atexit.register(made.close)   # the daemon's directory goes with it (a crash: the next start)
        return made

    @staticmethod
    def _leave_internal(base: str, mountpoint: str) -> str:
        """The cgroup to create ``trunkfs-jobs`` in: the daemon's own, after
        the daemon moved into the leaf ``<own>/daemon`` when it is alone
        there (under systemd); the parent of that leaf when it is in it."""
        if os.path.basename(base) == LEAF and os.path.isdir(os.path.join(os.path.dirname(base), JOBS_DIR)):
            return os.path.dirname(base)
        if os.path.samefile(base, mountpoint):
            return base                  # the root cgroup may hold processes and children
        if _procs(base) == [os.getpid()]:
            leaf = os.path.join(base, LEAF)
            os.makedirs(leaf, mode=0o755, exist_ok=True)
            _write(os.path.join(leaf, "cgroup.procs"), b"0")
            log.info("the daemon moved into the cgroup %s, so that %s holds no processes of its own",
                     leaf, base)
        return base

    @staticmethod
    def _remove_stale(jobs: str) -> None:
        """Kill and remove the datum cgroups of daemons that are gone."""
        for name in os.listdir(jobs):
            path = os.path.join(jobs, name)
            if name.isdigit() and int(name) != os.getpid() and not os.path.exists(f"/proc/{name}") \
                    and os.path.isdir(path):
                if _kill_and_remove_sync(path):
                    log.info("removed the datum cgroups of daemon %s, which is gone", name)

    def new(self, label: str, attempt: int) -> DatumCgroup:
        """A new (not yet created) cgroup for an attempt of a datum of ``label`` (the job)."""
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in label)[:64] or "datum"
        return DatumCgroup(os.path.join(self.root, f"{safe}-{next(self._seq)}-{attempt}"))

    def close(self) -> None:
        """Remove this daemon's directory (empty once no attempt runs)."""
        try:
            os.rmdir(self.root)
        except OSError as exc:
            if exc.errno not in (errno.ENOENT,):
                log.info("datum cgroup directory %s left behind: %s", self.root, exc.strerror)
