"""A store in a local directory: the embedded default backend.

Every write is atomic and durable: a temp file in ``<root>/tmp``, fsync,
rename into place, fsync of the directory.  Compare-and-swap on refs holds an
exclusive ``flock`` on ``<root>/locks/cas`` while it reads, compares and
replaces, so that several threads or processes stay consistent.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import shutil
import stat
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator

import blake3

from ..errors import AccessDenied, BackendError, Conflict, NoSpace, ObjectMissing
from .base import Backend

log = logging.getLogger(__name__)

MAX_OPEN_PACKS = 64
TMP_LEFTOVER_AGE = 86400.0   # seconds: a temp file untouched this long was left by a killed writer


def _version_of(data: bytes) -> str:
    return blake3.blake3(data).hexdigest()[:32]


def _forget_pages(fd: int) -> None:
    """Let the kernel drop the cached pages of a file just made durable.

    A stored pack is rarely read back at once, and its clean pages would
    otherwise stay cached while every new pack takes fresh ones: measured
    here, copying 1 GiB of packs into the page cache took 0.5 s when the
    pages of the packs before were dropped after their fsync and 2.1-2.4 s
    when they were kept (a commit of a 1 GiB file spent two thirds of its
    pack writing threads' time in that copy)."""
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    except OSError:     # advice only
        pass


class LocalBackend(Backend):
    def __init__(self, root: str, *, create: bool = True) -> None:
        self.root = os.path.abspath(root)
        self.url = "file://" + self.root
        if create:
            for sub in ("", "tmp", "locks"):
                os.makedirs(os.path.join(self.root, sub), exist_ok=True)
        elif not os.path.isdir(self.root):
            raise ObjectMissing(f"store directory {self.root} does not exist")
        self._tmp = os.path.join(self.root, "tmp")
        self._fds: OrderedDict[str, int] = OrderedDict()
        self._fd_lock = threading.Lock()
        os.makedirs(self._tmp, exist_ok=True)
        os.makedirs(os.path.join(self.root, "locks"), exist_ok=True)

    # -- helpers -------------------------------------------------------------

    def _path(self, key: str) -> str:
        if not key or key.startswith("/") or "\0" in key or any(
            part in ("", ".", "..") for part in key.split("/")
        ) or key.split("/", 1)[0] in ("tmp", "locks"):
            raise BackendError(f"invalid store key {key!r}")
        return os.path.join(self.root, key)

    def _error(self, exc: OSError, action: str, key: str) -> BackendError:
        where = f"{action} {key!r} in {self.url}"
        if exc.errno == errno.ENOSPC or exc.errno == errno.EDQUOT:
            return NoSpace(f"no space left to {where}")
        if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            return AccessDenied(f"permission denied to {where}: {exc.strerror}")
        return BackendError(f"cannot {where}: {exc.strerror or exc}")

    def _fsync_dir(self, path: str) -> None:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def _install(self, tmp: str, key: str) -> None:
        dest = self._path(key)
        parent = os.path.dirname(dest)
        os.makedirs(parent, exist_ok=True)
        os.replace(tmp, dest)
        self._fsync_dir(parent)

    def _write_tmp(self, data: bytes) -> str:
        fd, tmp = tempfile.mkstemp(dir=self._tmp, prefix="put-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        return tmp

    # -- interface -----------------------------------------------------------

    def put(self, key: str, data: bytes) -> None:
        self._path(key)
        try:
            tmp = self._write_tmp(data)
            try:
                self._install(tmp, key)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
        except OSError as exc:
            raise self._error(exc, "write", key) from exc

    def put_file(self, key: str, path: str) -> None:
        self._path(key)
        try:
            if os.path.dirname(os.path.abspath(path)) == self._tmp:
                fd = os.open(path, os.O_RDONLY)
                try:
                    os.fsync(fd)
                    _forget_pages(fd)
                finally:
                    os.close(fd)
                self._install(path, key)
                return
            fd, tmp = tempfile.mkstemp(dir=self._tmp, prefix="put-")
            try:
                with os.fdopen(fd, "wb") as dst, open(path, "rb") as src:
                    shutil.copyfileobj(src, dst, 1 << 20)
                    dst.flush()
                    os.fsync(dst.fileno())
                    _forget_pages(dst.fileno())
                self._install(tmp, key)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
        except OSError as exc:
            raise self._error(exc, "write", key) from exc

    def _pack_fd(self, key: str, path: str) -> int:
        """A kept-open descriptor of an immutable pack: ranged reads of one pack
        then share the kernel's readahead instead of starting cold each time."""
        with self._fd_lock:
            fd = self._fds.get(key)
            if fd is not None:
                self._fds.move_to_end(key)
                return fd
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        with self._fd_lock:
            if key in self._fds:
                os.close(fd)
                return self._fds[key]
            self._fds[key] = fd
            while len(self._fds) > MAX_OPEN_PACKS:
                _, old = self._fds.popitem(last=False)
                os.close(old)
        return fd

    def get(self, key: str, offset: int = 0, length: int | None = None) -> bytes:
        path = self._path(key)
        if length is not None and key.startswith("packs/"):
            try:
                return os.pread(self._pack_fd(key, path), length, offset)
            except FileNotFoundError as exc:
                raise ObjectMissing(f"object {key!r} is missing from {self.url}") from exc
            except OSError as exc:
                raise self._error(exc, "read", key) from exc
        try:
            with open(path, "rb", buffering=0) as f:
                if length is None:
                    f.seek(offset)
                    return f.read()
                return os.pread(f.fileno(), length, offset)
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as exc:
            # a "directory" is only a prefix of other keys, as on S3
            raise ObjectMissing(f"object {key!r} is missing from {self.url}") from exc
        except OSError as exc:
            raise self._error(exc, "read", key) from exc

    def _object_stat(self, key: str) -> os.stat_result | None:
        """The stat of ``key``'s file, None when there is no such object (a
        directory is only a prefix of other keys, not an object, as on S3)."""
        try:
            st = os.stat(self._path(key))
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            raise self._error(exc, "stat", key) from exc
        return st if stat.S_ISREG(st.st_mode) else None

    def stat(self, key: str) -> int | None:
        st = self._object_stat(key)
        return None if st is None else st.st_size

    def modified(self, key: str) -> float | None:
        st = self._object_stat(key)
        return None if st is None else st.st_mtime

    def list(self, prefix: str = "") -> Iterator[str]:
        base = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        parts = base.split("/")
        if base and (base.startswith("/") or parts[0] in ("tmp", "locks")
                     or any(part in ("", ".", "..") for part in parts)):
            return  # no key lives there (and never walk outside the root)
        start = os.path.join(self.root, base) if base else self.root
        if not os.path.isdir(start):
            return
        for dirpath, dirnames, filenames in os.walk(start):
            rel = os.path.relpath(dirpath, self.root)
            rel = "" if rel == "." else rel + "/"
            if not rel:
                dirnames[:] = [d for d in dirnames if d not in ("tmp", "locks")]
            dirnames.sort()
            for name in sorted(filenames):
                key = rel + name
                if key.startswith(prefix):
                    yield key

    def delete(self, key: str) -> None:
        with self._fd_lock:
            fd = self._fds.pop(key, None)
        if fd is not None:
            os.close(fd)
        try:
            os.unlink(self._path(key))
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise self._error(exc, "delete", key) from exc

    @contextlib.contextmanager
    def _cas_lock(self) -> Iterator[None]:
        fd = os.open(os.path.join(self.root, "locks", "cas"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def get_versioned(self, key: str) -> tuple[bytes, str] | None:
        try:
            data = self.get(key)
        except ObjectMissing:
            return None
        return data, _version_of(data)

    def put_if(self, key: str, data: bytes, expected: str | None) -> str:
        with self._cas_lock():
            current = self.get_versioned(key)
            current_version = current[1] if current else None
            if current_version != expected:
                raise Conflict(
                    f"{key!r} changed concurrently (expected {expected}, found {current_version})"
                )
            self.put(key, data)
        return _version_of(data)

    def delete_if(self, key: str, expected: str) -> None:
        with self._cas_lock():
            current = self.get_versioned(key)
            if current is None or current[1] != expected:
                raise Conflict(f"{key!r} changed concurrently; not deleted")
            self.delete(key)

    def close(self) -> None:
        with self._fd_lock:
            fds, self._fds = list(self._fds.values()), OrderedDict()
        for fd in fds:
            os.close(fd)

    def staging_dir(self) -> str | None:
        return self._tmp

    def clean_tmp(self, older_than: float = TMP_LEFTOVER_AGE) -> int:
        """Remove temp files left by a killed writer (untouched for
        ``older_than`` seconds: other daemons and Dask workers sharing the
        directory write their packs here now); returns how many."""
        removed = 0
        horizon = time.time() - older_than
        for name in os.listdir(self._tmp):
            with contextlib.suppress(OSError):
                path = os.path.join(self._tmp, name)
                if os.lstat(path).st_mtime > horizon:
                    continue
                os.unlink(path)
                removed += 1
        if removed:
            log.info("removed %d unfinished temp files from %s", removed, self._tmp)
        return removed
