"""Moving file bytes over a connection: the ``put`` stream of local files
and directories, the ``get`` stream written out to a local path, and the
bytes of one file for ``cat`` (the streams of docs/protocol.md).  The
local ends are safe against another user changing the files meanwhile:
:mod:`.local_walk` reads for ``put``, :mod:`.tree_writer` writes for ``get``."""

from __future__ import annotations

import os
import stat as statmod
from collections.abc import Callable

from .connection import FRAME_SIZE, Connection
from .errors import ClientError, ProtocolError, error_from_reply
from .local_walk import LocalChanged, LocalEntry, kind_of, open_listed_file, read_listed_link, walk_local
from .tree_writer import Destination, TreeWriter

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing is only needed by the type checker
    from collections.abc import Generator, Iterator, Sequence
    from logging import Logger

Progress = Callable[[int, int], None]
"""A progress callback: (bytes done, bytes in all)."""


def _log() -> Logger:
    """This module's logger.  ``logging`` is imported on first use: it pulls
    in threading and traceback, which every ``trunkfs`` command would pay
    for at start, and the client only logs a skipped local file."""
    import logging
    return logging.getLogger(__name__)


# -- put: local files -> the stream ---------------------------------------------

def put_name(local: str) -> str:
    """The name ``local`` gets at the destination (``cp -r`` semantics)."""
    return os.path.basename(os.path.normpath(local)) or "root"


def local_bytes(paths: Sequence[str]) -> int:
    """The bytes of the regular files at and below ``paths``."""
    return sum(e.st.st_size for local in paths for e in walk_local(local, "")
               if statmod.S_ISREG(e.st.st_mode))


def _file_frames(entry: LocalEntry) -> Generator[bytes, None, None]:
    """The bytes of a listed regular file; :class:`LocalChanged` before the
    first frame when it is no longer that file."""
    try:
        fd = open_listed_file(entry)
    except OSError as exc:
        raise ClientError("io_error", f"cannot read {entry.path}: {exc.strerror}") from None
    try:
        while True:
            try:
                data = os.read(fd, FRAME_SIZE)
            except OSError as exc:
                raise ClientError("io_error", f"cannot read {entry.path}: {exc.strerror}") from None
            if not data:
                return
            yield data
    finally:
        os.close(fd)


def _walk(local: str) -> Iterator[LocalEntry]:
    try:
        yield from walk_local(local, put_name(local))
    except OSError as exc:
        where = exc.filename if isinstance(exc.filename, str) else local
        raise ClientError("io_error", f"cannot read {where}: {exc.strerror}") from None


def send_put_entries(conn: Connection, paths: Sequence[str], progress: Progress | None = None,
                     total: int = 0) -> dict[str, str]:
    """Send the entries of ``paths`` and the bytes of their files, then
    ``end``; returns the local paths skipped, each with the reason: neither
    a regular file, a directory nor a symlink, or changed between being
    listed and being opened (see :mod:`.local_walk`)."""
    skipped: dict[str, str] = {}

    def skip(entry: LocalEntry, why: str) -> None:
        _log().info("put: skipping %s: %s", entry.path, why)
        skipped[entry.path] = why
    done = 0
    for local in paths:
        for e in _walk(local):
            st = e.st
            head = {"path": e.rel, "mode": statmod.S_IMODE(st.st_mode), "mtime": st.st_mtime_ns}
            if e.problem is not None:
                skip(e, e.problem)
            elif statmod.S_ISDIR(st.st_mode):
                conn.send({"entry": dict(head, type="dir")})
            elif statmod.S_ISLNK(st.st_mode):
                try:
                    target = read_listed_link(e)
                except LocalChanged as why:
                    skip(e, str(why))
                    continue
                conn.send({"entry": dict(head, type="symlink", target=target)})
            elif statmod.S_ISREG(st.st_mode):
                frames = _file_frames(e)
                try:
                    try:  # a file we cannot open, or another one now, fails before its entry goes out
                        first = next(frames, None)
                    except LocalChanged as why:
                        skip(e, str(why))
                        continue
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
                skip(e, f"{kind_of(st.st_mode)}: only regular files, directories and symlinks are sent")
    conn.send({"end": True})
    return skipped


# -- get: the stream -> local files ---------------------------------------------

def receive_tree(conn: Connection, target: str | Destination, progress: Progress | None = None,
                 total: int = 0, on_end: Callable[[dict], object] | None = None,
                 preserve_setuid: bool = False) -> int:
    """Write the stream after a ``get`` reply at ``target`` (a path, or a
    :class:`Destination` resolved once); the number of files.  ``on_end``
    gets the stream's end line (it says what the daemon left out:
    ``skipped``, ``skipped_paths``); ``preserve_setuid`` as in
    :class:`TreeWriter`, which says how a destination another user can
    write is kept safe."""
    dest = Destination.at(target) if isinstance(target, str) else target
    writer = TreeWriter(dest, preserve_setuid)
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
        writer.finish()
    finally:
        writer.abort()
        if isinstance(target, str):
            dest.close()
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
