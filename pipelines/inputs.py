"""Datum inputs: the directory a datum's command reads.

With a mount (and root, for mount(2)), each datum path of the read-only
commit view ``<mount>/<repo>@<commit>`` is bound into the datum's input
directory: no bytes are copied, and the command reads through the FUSE
mount and its chunk cache.  Otherwise, or when binding fails, the datum's
files are copied out of the store (:func:`materialize`) into a directory
only the pipeline's owner may enter.  Either way the input is read-only to
the command.  Job directories are removed fd-relative (:func:`remove_tree`):
they hold what the datum's user wrote, symlinks and renames included.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import logging
import os
import stat
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from typing import Any

from ..store import walk
from ..store.objects import DIR, SYMLINK
from ..store.store import Store
from .datums import Datum
from .runner import AttemptDirs

Run = Callable[..., Awaitable[Any]]   # runs a blocking call in a worker thread

log = logging.getLogger(__name__)

MS_BIND = 4096
MNT_DETACH = 2
JOB_DIR_PREFIX = "trunkfs-job-"

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def _bind(source: str, target: str) -> None:
    if _libc.mount(source.encode(), target.encode(), None, MS_BIND, None) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"bind mount of {source} on {target}: {os.strerror(err)}")


def unmount(target: str) -> None:
    """Detach a bind (gone already is fine)."""
    if _libc.umount2(target.encode(), MNT_DETACH) != 0:
        err = ctypes.get_errno()
        if err not in (errno.EINVAL, errno.ENOENT):
            log.warning("cannot unmount %s: %s", target, os.strerror(err))


def bind_datum(view: str, datum: Datum, root: str) -> list[str]:
    """Bind each datum path of ``view`` under ``root``; return the mount points."""
    done: list[str] = []
    try:
        for path, entry in datum:
            rel = path.lstrip("/")
            target = os.path.join(root, rel)
            os.makedirs(os.path.dirname(target), mode=0o755, exist_ok=True)
            if entry["type"] == SYMLINK:
                os.symlink(entry.get("target", ""), target)
                continue
            if entry["type"] == DIR:
                os.makedirs(target, exist_ok=True)
            else:
                open(target, "wb").close()
            _bind(os.path.join(view, rel), target)
            done.append(target)
    except BaseException:
        for t in reversed(done):
            unmount(t)
        raise
    return done


def clear_stale_binds(prefix: str = JOB_DIR_PREFIX) -> int:
    """Detach binds left by a daemon that died mid-job in job directories
    whose names start with ``prefix`` (this daemon's)."""
    count = 0
    try:
        with open("/proc/self/mounts") as f:
            targets = [line.split()[1] for line in f]
    except OSError:
        return 0
    for t in targets:
        t = t.encode().decode("unicode_escape")
        if f"/{prefix}" in t:
            unmount(t)
            count += 1
    if count:
        log.info("detached %d datum input binds left by a previous run", count)
    return count


ReadFile = Callable[[dict], Iterable[bytes]]   # a file entry's bytes, chunk by chunk


def materialize(store: Store, datum: Datum, root: str, owner: tuple[int, int] | None = None,
                read: ReadFile | None = None) -> None:
    """Copy a datum's files out of the store under ``root`` at their paths,
    read-only.  With ``owner`` (uid, gid: the daemon is root), ``root``
    becomes theirs, mode 0500, so no other local user can read the copies
    while the job runs; what is inside keeps its (read-only) modes.
    ``read`` reads a file's bytes (default: straight from the store; a
    Dask worker reads through its chunk cache)."""
    read = read or store.iter_file

    def put(path: str, e: dict) -> None:
        target = os.path.join(root, path.lstrip("/"))
        if e["type"] == DIR:
            os.makedirs(target, mode=0o755, exist_ok=True)
        elif e["type"] == SYMLINK:
            os.symlink(e.get("target", ""), target)
        else:
            with open(target, "wb") as f:
                for data in read(e):
                    f.write(data)
            os.chmod(target, 0o444)

    os.chmod(root, 0o700)   # root's alone while it is filled
    for path, entry in datum:
        os.makedirs(os.path.dirname(os.path.join(root, path.lstrip("/"))), mode=0o755, exist_ok=True)
        put(path, entry)
        for below, e in walk.walk(store, entry, path):   # each directory before what it holds
            put(below, e)
    for dirpath, _, _ in os.walk(root):
        os.chmod(dirpath, 0o555)
    fd = os.open(root, _DIR_FLAGS)
    try:
        if owner is not None:
            os.fchown(fd, owner[0], owner[1])
        os.fchmod(fd, 0o500)
    finally:
        os.close(fd)


_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
MAX_REMOVE_DEPTH = 400   # deeper directories are left (and logged), never a crash


def remove_tree(path: str) -> None:
    """Remove a job's work directory, read-only inputs and whatever the
    datum's user left in its output included.

    The user may plant symlinks there and rename directories while this
    runs, so nothing is looked up by path below ``path``: each directory is
    opened ``O_NOFOLLOW`` relative to its parent's fd, entries are unlinked
    and directories removed relative to their parent's fd, and nothing is
    ever chmodded or followed through a symlink (a symlink is unlinked
    itself).  A mount point (a datum input bind that could not be
    detached) is never entered.  Failures are logged, never raised."""
    parent, name = os.path.split(os.path.abspath(path))
    try:
        pfd = os.open(parent, _DIR_FLAGS)
    except OSError as exc:
        log.info("cannot remove %s: %s", path, exc.strerror)
        return
    try:
        _remove_entry(pfd, name, os.fstat(pfd).st_dev, path, 0)
    finally:
        os.close(pfd)


def _remove_entry(dir_fd: int, name: str, dev: int, where: str, depth: int) -> None:
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        if not stat.S_ISDIR(st.st_mode):
            os.unlink(name, dir_fd=dir_fd)
            return
        if st.st_dev != dev:
            log.info("not removing %s: something is mounted there", where)
            return
        if depth > MAX_REMOVE_DEPTH:
            log.info("not removing %s: nested deeper than %d directories", where, MAX_REMOVE_DEPTH)
            return
        fd = os.open(name, _DIR_FLAGS, dir_fd=dir_fd)   # ELOOP/ENOTDIR: swapped since the stat
        try:
            if stat.S_IMODE(st.st_mode) & 0o700 != 0o700 and os.geteuid() != 0:
                os.fchmod(fd, stat.S_IMODE(st.st_mode) | 0o700)   # our own read-only input
            for child in os.listdir(fd):
                _remove_entry(fd, child, dev, f"{where}/{child}", depth + 1)
        finally:
            os.close(fd)
        os.rmdir(name, dir_fd=dir_fd)
    except FileNotFoundError:
        pass
    except OSError as exc:
        log.info("cannot remove %s: %s", where, exc.strerror)


class DatumInputs:
    """Prepares each attempt of a datum: fresh input and output directories,
    the input bound from the mount or copied from the store."""

    def __init__(self, store: Store, run: Run, mountpoint: str | None, read: ReadFile | None = None) -> None:
        self.store = store
        self.run = run
        self.mountpoint = mountpoint  # when the daemon mounts: inputs come through it
        self.read = read              # how copied files are read (default: from the store)

    @asynccontextmanager
    async def attempt(self, base: str, repo: str, commit: str, datum: Datum,
                      owner: tuple[int, int] | None = None) -> AsyncIterator[AttemptDirs]:
        """Directories for one attempt under ``base`` (which must not exist);
        binds are undone when the block ends.  ``owner`` (uid, gid) is whom
        the command runs as when the daemon is root: copied inputs are
        theirs alone.  The output directory is 0700 (the runner gives it to
        the command's user), so other users cannot read it either."""
        dirs = AttemptDirs(os.path.join(base, "in"), os.path.join(base, "out"))
        os.makedirs(dirs.input)
        os.makedirs(dirs.output, mode=0o700)
        os.chmod(dirs.output, 0o700)
        os.chmod(base, 0o711)
        binds: list[str] = []
        if self.mountpoint and os.geteuid() == 0:  # read through the mount: nothing is copied
            view = os.path.join(self.mountpoint, f"{repo}@{commit}")
            try:
                binds = await self.run(bind_datum, view, datum, dirs.input)
            except OSError as exc:
                log.info("datum input through the mount failed (%s); copying instead", exc)
                await self.run(remove_tree, dirs.input)
                os.makedirs(dirs.input)
                await self.run(materialize, self.store, datum, dirs.input, owner, self.read)
        else:
            await self.run(materialize, self.store, datum, dirs.input, owner, self.read)
        try:
            yield dirs
        finally:
            for target in reversed(binds):
                unmount(target)
