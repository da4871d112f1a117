"""Datum inputs through the mount: bind the datum's paths of the read-only
commit view ``<mount>/<repo>@<commit>`` into the datum's input directory.

No bytes are copied: the command reads through the FUSE mount (and its
chunk cache).  Needs root (mount(2)); the caller falls back to copying the
files when this is not possible.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import logging
import os

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
    if _libc.umount2(target.encode(), MNT_DETACH) != 0:
        err = ctypes.get_errno()
        if err not in (errno.EINVAL, errno.ENOENT):
            log.warning("cannot unmount %s: %s", target, os.strerror(err))


def bind_datum(view: str, datum: list[tuple[str, dict]], root: str) -> list[str]:
    """Bind each datum path of ``view`` under ``root``; return the mount points."""
    done: list[str] = []
    try:
        for path, entry in datum:
            rel = path.lstrip("/")
            target = os.path.join(root, rel)
            os.makedirs(os.path.dirname(target), mode=0o755, exist_ok=True)
            if entry["type"] == "symlink":
                os.symlink(entry.get("target", ""), target)
                continue
            if entry["type"] == "dir":
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


def clear_stale_binds() -> int:
    """Detach binds left in job directories by a daemon that died mid-job."""
    count = 0
    try:
        with open("/proc/self/mounts") as f:
            targets = [line.split()[1] for line in f]
    except OSError:
        return 0
    for t in targets:
        t = t.encode().decode("unicode_escape")
        if f"/{JOB_DIR_PREFIX}" in t:
            unmount(t)
            count += 1
    if count:
        log.info("detached %d datum input binds left by a previous run", count)
    return count
