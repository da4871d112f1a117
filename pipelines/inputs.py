"""Datum inputs: the directory a datum's command reads.

With a mount (and root, for mount(2)), each datum path of the read-only
commit view ``<mount>/<repo>@<commit>`` is bound into the datum's input
directory: no bytes are copied, and the command reads through the FUSE
mount and its chunk cache.  Otherwise, or when binding fails, the datum's
files are copied out of the store (:func:`materialize`).  Either way the
input is read-only to the command.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import logging
import os
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable
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


def materialize(store: Store, datum: Datum, root: str) -> None:
    """Copy a datum's files out of the store under ``root`` at their paths, read-only."""
    def put(path: str, e: dict) -> None:
        target = os.path.join(root, path.lstrip("/"))
        if e["type"] == DIR:
            os.makedirs(target, mode=0o755, exist_ok=True)
        elif e["type"] == SYMLINK:
            os.symlink(e.get("target", ""), target)
        else:
            with open(target, "wb") as f:
                for data in store.iter_file(e):
                    f.write(data)
            os.chmod(target, 0o444)

    for path, entry in datum:
        os.makedirs(os.path.dirname(os.path.join(root, path.lstrip("/"))), mode=0o755, exist_ok=True)
        put(path, entry)
        for below, e in walk.walk(store, entry, path):   # each directory before what it holds
            put(below, e)
    for dirpath, _, _ in os.walk(root):
        os.chmod(dirpath, 0o555)


def remove_tree(path: str) -> None:
    """Remove a job's work directory, read-only inputs included."""
    for dirpath, dirnames, _ in os.walk(path):
        for d in dirnames:
            try:
                os.chmod(os.path.join(dirpath, d), 0o755)
            except OSError:
                pass
    shutil.rmtree(path, ignore_errors=True)


class DatumInputs:
    """Prepares each attempt of a datum: fresh input and output directories,
    the input bound from the mount or copied from the store."""

    def __init__(self, store: Store, run: Run, mountpoint: str | None) -> None:
        self.store = store
        self.run = run
        self.mountpoint = mountpoint  # when the daemon mounts: inputs come through it

    @asynccontextmanager
    async def attempt(self, base: str, repo: str, commit: str, datum: Datum) -> AsyncIterator[AttemptDirs]:
        """Directories for one attempt under ``base`` (which must not exist);
        binds are undone when the block ends."""
        dirs = AttemptDirs(os.path.join(base, "in"), os.path.join(base, "out"))
        os.makedirs(dirs.input)
        os.makedirs(dirs.output)
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
                await self.run(materialize, self.store, datum, dirs.input)
        else:
            await self.run(materialize, self.store, datum, dirs.input)
        try:
            yield dirs
        finally:
            for target in reversed(binds):
                unmount(target)
