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
from .local_walk import (LocalChanged, LocalEntry, kind_of, open_listed_file, put_type, read_listed_link,
                         walk_local)
from .tree_writer import Destination, TreeWriter

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing is only needed by the type checker
    from collections.abc import Generator, Iterator, Sequence
    from typing import BinaryIO
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
    """The bytes of the regular files at and below ``paths`` (a hard-linked
    file once: its bytes are sent once)."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for local in paths:
        for e in walk_local(local, ""):
            st = e.st
            if not statmod.S_ISREG(st.st_mode):
                continue
            if st.st_nlink > 1:
                if (st.st_dev, st.st_ino) in seen:
                    continue
                seen.add((st.st_dev, st.st_ino))
            total += st.st_size
    return total


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


def open_regular_file(local: str) -> BinaryIO:
    """``local`` opened for reading (``OSError`` as ``open`` raises it) when
    it is a regular file (a FIFO never blocks the open); ``io_error``
    naming what it is otherwise."""
    fd = os.open(local, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    mode = os.fstat(fd).st_mode
    if not statmod.S_ISREG(mode):
        os.close(fd)
        what = "a directory" if statmod.S_ISDIR(mode) else kind_of(mode)
        raise ClientError("io_error", f"cannot send {local}: {what}, not a regular file")
    return os.fdopen(fd, "rb")


def _walk(local: str) -> Iterator[LocalEntry]:
    try:
        yield from walk_local(local, put_name(local))
    except OSError as exc:
        where = exc.filename if isinstance(exc.filename, str) else local
        raise ClientError("io_error", f"cannot read {where}: {exc.strerror}") from None


def send_put_entries(conn: Connection, paths: Sequence[str], progress: Progress | None = None,
                     total: int = 0) -> dict[str, str]:
    """Send the entries of ``paths`` and the bytes of their files, then
    ``end``; returns the local paths skipped, each with the reason: of no
    type a put sends, a device when not running as root, or changed
    between being listed and being opened (see :mod:`.local_walk`)."""
    sender = _PutSender(conn, progress, total)
    for local in paths:
        for e in _walk(local):
            sender.send(e)
    conn.send({"end": True})
    return sender.skipped


class _PutSender:
    """Sends listed local entries on a put stream.  Names of one local file
    (the same device and inode, ``st_nlink`` > 1) form a hard-link group:
    the first name sent carries a fresh ``link`` id and the content, each
    later one that id and ``link_to``, the first name's path (docs/protocol.md)."""

    def __init__(self, conn: Connection, progress: Progress | None, total: int) -> None:
        self.conn, self.progress, self.total = conn, progress, total
        self.done = 0
        self.skipped: dict[str, str] = {}
        self.groups: dict[tuple[int, int], tuple[str, str]] = {}   # (dev, ino) -> (link id, first path)
        self.may_mknod = os.geteuid() == 0     # the daemon refuses devices from anyone else

    def skip(self, entry: LocalEntry, why: str) -> None:
        _log().info("put: skipping %s: %s", entry.path, why)
        self.skipped[entry.path] = why

    def send(self, e: LocalEntry) -> None:
        st = e.st
        kind = put_type(st.st_mode)
        if e.problem is not None:
            self.skip(e, e.problem)
        elif kind == "dir":
            self.conn.send({"entry": self._head(e, "dir")})
        elif kind is None:
            self.skip(e, f"{kind_of(st.st_mode)}: put does not send it")
        elif kind in ("char", "block") and not self.may_mknod:
            self.skip(e, f"{kind_of(st.st_mode)}: only root may put a device (as mknod(2) allows)")
        else:
            key = (st.st_dev, st.st_ino) if st.st_nlink > 1 else None
            group = self.groups.get(key) if key else None
            if group is not None:
                self.conn.send({"entry": {"path": e.rel, "type": kind, "link": group[0], "link_to": group[1]}})
                return
            head = self._head(e, kind)
            if key is not None:
                head["link"] = os.urandom(8).hex()   # 16 hex digits: a group within this put
            if self._send_named(e, head) and key is not None:
                self.groups[key] = (head["link"], e.rel)

    @staticmethod
    def _head(e: LocalEntry, kind: str) -> dict:
        head = {"path": e.rel, "type": kind, "mode": statmod.S_IMODE(e.st.st_mode), "mtime": e.st.st_mtime_ns}
        if kind in ("char", "block"):
            head["rdev"] = e.st.st_rdev
        return head

    def _send_named(self, e: LocalEntry, head: dict) -> bool:
        """Send a non-directory entry (a file with its bytes); False when it was skipped."""
        if head["type"] == "symlink":
            try:
                head["target"] = read_listed_link(e)
            except LocalChanged as why:
                self.skip(e, str(why))
                return False
        elif head["type"] == "file":
            return self._send_file(e, head)
        self.conn.send({"entry": head})   # FIFOs, sockets and devices: their listing, never opened
        return True

    def _send_file(self, e: LocalEntry, head: dict) -> bool:
        frames = _file_frames(e)
        try:
            try:  # a file we cannot open, or another one now, fails before its entry goes out
                first = next(frames, None)
            except LocalChanged as why:
                self.skip(e, str(why))
                return False
            self.conn.send({"entry": head})
            data = first
            while data is not None:
                self.conn.send_data(data)
                self.done += len(data)
                if self.progress:
                    self.progress(self.done, self.total)
                data = next(frames, None)
        finally:
            frames.close()
        self.conn.send({"eof": True})
        return True


# -- get: the stream -> local files ---------------------------------------------

def receive_tree(conn: Connection, target: str | Destination, progress: Progress | None = None,
                 total: int = 0, on_end: Callable[[dict], object] | None = None,
                 preserve_setuid: bool = False, not_written: dict[str, str] | None = None) -> int:
    """Write the stream after a ``get`` reply at ``target`` (a path, or a
    :class:`Destination` resolved once); the number of files.  ``on_end``
    gets the stream's end line (it says what the daemon left out:
    ``skipped``, ``skipped_paths``); ``not_written`` gets the local paths
    not made, each with why (a device when not running as root);
    ``preserve_setuid`` as in :class:`TreeWriter`, which says how a
    destination another user can write is kept safe."""
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
        if not_written is not None:
            not_written.update(writer.not_written)
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
