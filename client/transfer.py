"""Moving file bytes over a connection: the ``put`` stream of local files
and directories, the ``get`` stream written out to a local path, and the
bytes of one file for ``cat`` (the streams of docs/protocol.md)."""

from __future__ import annotations

import os
import stat as statmod
from collections.abc import Callable

from .connection import FRAME_SIZE, Connection
from .errors import ClientError, ProtocolError, error_from_reply

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing is only needed by the type checker
    from collections.abc import Generator, Iterator, Sequence
    from logging import Logger
    from typing import BinaryIO

Progress = Callable[[int, int], None]
"""A progress callback: (bytes done, bytes in all)."""


def _log() -> Logger:
    """This module's logger.  ``logging`` is imported on first use: it pulls
    in threading and traceback, which every ``trunkfs`` command would pay
    for at start, and the client only logs a skipped local file."""
    import logging
    return logging.getLogger(__name__)


# -- put: local files -> the stream ---------------------------------------------

def walk_local(local: str, rel: str) -> Iterator[tuple[str, os.stat_result, str]]:
    """(path relative to the put's destination, lstat, local path) of
    ``local`` and everything below it, parents first, names sorted."""
    st = os.lstat(local)
    yield rel, st, local
    if statmod.S_ISDIR(st.st_mode):
        with os.scandir(local) as it:
            names = sorted(e.name for e in it)
        for name in names:
            yield from walk_local(os.path.join(local, name), f"{rel}/{name}")


def put_name(local: str) -> str:
    """The name ``local`` gets at the destination (``cp -r`` semantics)."""
    return os.path.basename(os.path.normpath(local)) or "root"


def local_bytes(paths: Sequence[str]) -> int:
    """The bytes of the regular files at and below ``paths``."""
    return sum(st.st_size for local in paths for _, st, _ in walk_local(local, "")
               if statmod.S_ISREG(st.st_mode))


def _file_frames(path: str) -> Generator[bytes, None, None]:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as exc:
        raise ClientError("io_error", f"cannot read {path}: {exc.strerror}") from None
    try:
        while True:
            try:
                data = os.read(fd, FRAME_SIZE)
            except OSError as exc:
                raise ClientError("io_error", f"cannot read {path}: {exc.strerror}") from None
            if not data:
                return
            yield data
    finally:
        os.close(fd)


def send_put_entries(conn: Connection, paths: Sequence[str], progress: Progress | None = None,
                     total: int = 0) -> list[str]:
    """Send the entries of ``paths`` and the bytes of their files, then
    ``end``; returns the local paths skipped (neither a regular file, a
    directory nor a symlink)."""
    skipped: list[str] = []
    done = 0
    for local in paths:
        for rel, st, path in walk_local(local, put_name(local)):
            head = {"path": rel, "mode": statmod.S_IMODE(st.st_mode), "mtime": st.st_mtime_ns}
            if statmod.S_ISDIR(st.st_mode):
                conn.send({"entry": dict(head, type="dir")})
            elif statmod.S_ISLNK(st.st_mode):
                conn.send({"entry": dict(head, type="symlink", target=os.readlink(path))})
            elif statmod.S_ISREG(st.st_mode):
                frames = _file_frames(path)
                try:
                    first = next(frames, None)  # a file we cannot open fails before its entry goes out
                    conn.send({"entry": dict(head, type="file")})
                    data = first
                    while data is not None:
                        conn.send_data(data)
                        done += len(data)
                        if progress:
                            progress(done, total)
                        data = next(frames, None)
                finally:
                    frames.close()
                conn.send({"eof": True})
            else:
                _log().info("put: skipping %s: not a regular file, directory or symlink", path)
                skipped.append(path)
    conn.send({"end": True})
    return skipped


# -- get: the stream -> local files ---------------------------------------------

class TreeWriter:
    """Writes the entries of a ``get`` stream below ``target``, as ``cp -r``
    would: directories merge, files and symlinks replace.  Paths from the
    daemon that are absolute, contain ``..`` or lead through a symlink this
    get created are refused (``bad_reply``), so a daemon cannot make us
    write outside ``target``.

    Setuid and setgid bits of files (and setuid of directories) are not
    restored unless ``preserve_setuid`` is given and this process runs as
    root, as ``cp`` without ``-p`` and ``tar`` without
    ``--same-permissions`` leave them off."""

    def __init__(self, target: str, preserve_setuid: bool = False) -> None:
        self.target = target
        self.keep_setid = preserve_setuid and os.geteuid() == 0
        self.files = 0
        self._dirs: list[tuple[str, dict]] = []   # mode and mtime are set last, deepest first
        self._symlinks: set[str] = set()
        self._out: BinaryIO | None = None
        self._current: tuple[str, dict] | None = None

    def _local(self, rel: str) -> str:
        parts = rel.split("/")
        if rel.startswith("/") or ".." in parts:
            raise ProtocolError("bad_reply", f"daemon sent an unsafe path {rel!r}")
        for i in range(1, len(parts)):
            if "/".join(parts[:i]) in self._symlinks:
                raise ProtocolError("bad_reply", f"daemon sent a path below a symlink: {rel!r}")
        return os.path.join(self.target, rel) if rel else self.target

    def entry(self, head: dict) -> None:
        rel = head.get("path")
        if not isinstance(rel, str):
            raise ProtocolError("bad_reply", "daemon sent an entry without a path")
        p = self._local(rel)
        kind = head.get("type")
        if kind == "dir":
            os.makedirs(p, exist_ok=True)
            self._dirs.append((p, head))
        elif kind == "symlink":
            if os.path.lexists(p):
                os.unlink(p)
            os.symlink(str(head.get("target", "")), p)
            self._symlinks.add(rel)
        else:
            if os.path.islink(p):
                os.unlink(p)
            self._out = open(p, "wb")
            self._current = (p, head)

    def data(self, data: bytes) -> None:
        if self._out is None:
            raise ProtocolError("bad_reply", "daemon sent file bytes outside a file")
        self._out.write(data)

    def eof(self) -> None:
        if self._out is None or self._current is None:
            raise ProtocolError("bad_reply", "daemon sent the end of a file outside a file")
        self._out.close()
        self._out = None
        p, head = self._current
        os.chmod(p, self._mode(head.get("mode") or 0o644, statmod.S_ISUID | statmod.S_ISGID))
        mt = head.get("mtime") or 0
        os.utime(p, ns=(mt, mt))
        self.files += 1

    def _mode(self, mode: int, setid: int) -> int:
        """``mode`` without the ``setid`` bits unless they are to be kept."""
        return mode if self.keep_setid else mode & ~setid

    def finish(self) -> None:
        """Give directories their mode and mtime (after their content was written)."""
        for p, head in reversed(self._dirs):
            os.chmod(p, self._mode(head.get("mode") or 0o755, statmod.S_ISUID))
            mt = head.get("mtime") or 0
            if mt:
                os.utime(p, ns=(mt, mt))

    def abort(self) -> None:
        if self._out is not None:
            self._out.close()
            self._out = None


def receive_tree(conn: Connection, target: str, progress: Progress | None = None,
                 total: int = 0, on_end: Callable[[dict], object] | None = None,
                 preserve_setuid: bool = False) -> int:
    """Write the stream after a ``get`` reply below ``target``; the number of
    files.  ``on_end`` gets the stream's end line (it says what the daemon
    left out: ``skipped``, ``skipped_paths``); ``preserve_setuid`` as in
    :class:`TreeWriter`."""
    writer = TreeWriter(target, preserve_setuid)
    done = 0
    try:
        while True:
            msg = conn.read_message()
            if "data" in msg:
                data = conn.read_exact(_frame_size(msg))
                writer.data(data)
                done += len(data)
                if progress:
                    progress(done, total)
            elif msg.get("ok") is False:
                raise error_from_reply(msg)
            elif msg.get("eof"):
                writer.eof()
            elif msg.get("end"):
                if on_end is not None:
                    on_end(msg)
                break
            elif isinstance(msg.get("entry"), dict):
                writer.entry(msg["entry"])
            else:
                raise ProtocolError("bad_reply", "daemon sent an unexpected line in a get stream")
    finally:
        writer.abort()
    writer.finish()
    return writer.files


def receive_file(conn: Connection, write: Callable[[bytes], object]) -> int:
    """Hand the bytes of the one file of a ``get`` stream to ``write``; the byte count."""
    n = 0
    while True:
        msg = conn.read_message()
        if "data" in msg:
            data = conn.read_exact(_frame_size(msg))
            write(data)
            n += len(data)
        elif msg.get("end"):
            return n
        elif msg.get("ok") is False:
            raise error_from_reply(msg)
        # the entry line and eof carry nothing cat needs


def _frame_size(msg: dict) -> int:
    n = msg.get("data")
    if not isinstance(n, int) or isinstance(n, bool) or n < 0:
        raise ProtocolError("bad_reply", f"daemon sent a bad data frame header {msg!r}")
    return n
