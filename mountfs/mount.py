"""Mounting and unmounting: checks on the mount point, stale-mount recovery,
and running pyfuse3's loop inside the daemon's trio nursery."""

from __future__ import annotations

import ctypes
import errno
import logging
import os
import shutil
import subprocess

import pyfuse3
import trio

from ..store.errors import TrunkError
from .fuseloop import lean_read_lock

log = logging.getLogger(__name__)

FSNAME = "trunkfs"


class MountError(TrunkError):
    code = "mount_error"


def _mounted_here(path: str) -> str | None:
    """The fs type mounted exactly at ``path``, from /proc/self/mounts."""
    real = os.path.realpath(path)
    try:
        with open("/proc/self/mounts") as f:
            for line in f:
                fields = line.split()
                if len(fields) >= 3 and fields[1].encode().decode("unicode_escape") == real:
                    return fields[2]
    except OSError:
        return None
    return None


_libc = ctypes.CDLL(None, use_errno=True)


def write_back(mountpoint: str) -> None:
    """syncfs(2) of the mount, from a worker thread: the pages the kernel
    holds dirty (the FUSE writeback cache) come to the daemon as writes,
    which the event loop answers meanwhile.  A commit calls it before it
    freezes the staging, so it commits what was written, not what was
    flushed (an open file's bytes included, as a local disk would show them)."""
    fd = os.open(mountpoint, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        if _libc.syncfs(fd) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"syncfs of {mountpoint}: {os.strerror(err)}")
    finally:
        os.close(fd)


def lazy_unmount(path: str) -> None:
    tool = shutil.which("fusermount3") or shutil.which("fusermount")
    cmd = [tool, "-u", "-z", path] if tool else ["umount", "-l", path]
    subprocess.run(cmd, check=False, capture_output=True, timeout=30)


def check_mountpoint(path: str) -> str:
    """Return the absolute mount point, clearing a stale trunkfs mount first.

    Refuses anything that is not an empty directory with a clear message.
    """
    path = os.path.abspath(path)
    fstype = _mounted_here(path)
    if fstype and fstype.startswith("fuse") and fstype.endswith(FSNAME):
        try:
            os.statvfs(path)  # needs an answer from the daemon: attributes may be cached
        except OSError as exc:
            if exc.errno != errno.ENOTCONN:
                raise MountError(f"cannot use mount point {path}: {exc.strerror}") from None
            log.warning("clearing a stale trunkfs mount at %s (its daemon is gone)", path)
            lazy_unmount(path)
        else:
            raise MountError(f"{path} is already a live trunkfs mount (another daemon?); "
                             f"unmount it with `fusermount3 -u {path}` first")
    try:
        os.stat(path)
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            raise MountError(f"mount point {path} does not exist; create an empty directory there") from None
        if exc.errno == errno.ENOTCONN:
            raise MountError(f"{path} is a stale FUSE mount of another file system; "
                             f"detach it with `fusermount3 -u -z {path}`") from None
        raise MountError(f"cannot use mount point {path}: {exc.strerror}") from None
    if not os.path.isdir(path):
        raise MountError(f"mount point {path} is not a directory")
    if os.listdir(path):
        raise MountError(f"mount point {path} is not empty")
    return path


def mount_options(allow_other: bool) -> set[str]:
    opts = set(pyfuse3.default_options)      # default_permissions
    opts |= {f"fsname={FSNAME}", f"subtype={FSNAME}"}
    if allow_other:
        opts.add("allow_other")
    return opts


READ_AHEAD_KIB = 1024


def tune_readahead(mountpoint: str, kib: int = READ_AHEAD_KIB) -> None:
    """Let the kernel read ahead 1 MiB (not 128 KiB) on this mount.

    FUSE then sends 1 MiB reads, a chunk's worth, instead of eight 128 KiB
    ones: a cold sequential read costs an eighth of the round trips.  Needs
    root (the knob is in /sys/class/bdi); without it the default stays.
    """
    dev = os.stat(mountpoint).st_dev
    path = f"/sys/class/bdi/{os.major(dev)}:{os.minor(dev)}/read_ahead_kb"
    try:
        with open(path, "w") as f:
            f.write(f"{kib}\n")
    except OSError as exc:
        log.debug("cannot set %s: %s", path, exc)


async def serve_mount(ops: pyfuse3.Operations, mountpoint: str, options: set[str], lean_loop: bool = True,
                      task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    """Mount, serve until cancelled (or unmounted from outside), then unmount.
    ``lean_loop``: pyfuse3's loop takes its read lock as :mod:`.fuseloop` does."""
    try:
        pyfuse3.init(ops, mountpoint, options)
    except RuntimeError as exc:
        raise MountError(f"cannot mount at {mountpoint}: {exc} (is /dev/fuse usable? run as root)") from None
    log.info("mounted at %s", mountpoint)
    try:
        task_status.started()
        async def tune() -> None:
            # stat() of the mount point needs the loop below to answer it
            await trio.to_thread.run_sync(tune_readahead, mountpoint)
        with lean_read_lock(lean_loop) as lean:
            log.info("serving FUSE requests with %s", "the lean read lock (mountfs/fuseloop.py)" if lean
                     else "pyfuse3's own loop")
            async with trio.open_nursery() as nursery:
                nursery.start_soon(tune)
                await pyfuse3.main(min_tasks=2, max_tasks=64)
        log.info("the mount at %s was unmounted from outside", mountpoint)
    finally:
        pyfuse3.close(unmount=True)
        log.info("unmounted %s", mountpoint)
