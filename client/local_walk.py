"""The local side of ``put``: walking files and directories that another
user may be changing while we read them.

``trunkfs put`` may run as root on a directory another user can write.
So each directory is opened once (``O_NOFOLLOW``) and everything below it
is listed, stat-ed and opened relative to that descriptor: a directory
renamed away and replaced by a symlink after it was listed changes
nothing.  A file is opened ``O_NOFOLLOW | O_NONBLOCK`` (a FIFO swapped in
never blocks) and must still be the regular file that was listed (same
device and inode), or it is skipped with the reason.  FIFOs, sockets and
devices are sent from their listing (type, mode, times, device number),
never opened.  Only the path given on the command line is looked up by
name, as the caller's own choice."""

from __future__ import annotations

import errno
import os
import stat as statmod

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing is only needed by the type checker
    from collections.abc import Iterator

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC

CHANGED = "changed since it was listed"


class LocalEntry:
    """One listed file, directory or other entry.  ``dir_fd`` is the open
    directory it was listed in (``None`` for a path from the command line,
    then ``name`` is that path); it stays open while the walk is at it."""

    __slots__ = ("rel", "path", "st", "dir_fd", "name", "problem")

    def __init__(self, rel: str, path: str, st: os.stat_result, dir_fd: int | None, name: str) -> None:
        self.rel = rel            # its path at the put's destination
        self.path = path          # its local path, for messages
        self.st = st              # its lstat when it was listed
        self.dir_fd = dir_fd
        self.name = name
        self.problem: str | None = None   # why it is skipped, if it is

    def is_same(self, st: os.stat_result) -> bool:
        """Whether ``st`` (of what was opened) is the entry that was listed."""
        return (st.st_dev, st.st_ino, statmod.S_IFMT(st.st_mode)) == \
            (self.st.st_dev, self.st.st_ino, statmod.S_IFMT(self.st.st_mode))


class LocalChanged(Exception):
    """An entry is no longer what was listed; the message says why."""


_PUT_TYPES = ((statmod.S_ISREG, "file"), (statmod.S_ISDIR, "dir"), (statmod.S_ISLNK, "symlink"),
              (statmod.S_ISFIFO, "fifo"), (statmod.S_ISSOCK, "socket"), (statmod.S_ISCHR, "char"),
              (statmod.S_ISBLK, "block"))


def put_type(mode: int) -> str | None:
    """The entry type ``put`` sends for an ``st_mode`` (docs/protocol.md), or
    None for a type it does not send."""
    for test, kind in _PUT_TYPES:
        if test(mode):
            return kind
    return None


def kind_of(mode: int) -> str:
    """A name for a special file in messages: ``a FIFO``, ``a socket``, ..."""
    if statmod.S_ISFIFO(mode):
        return "a FIFO"
    if statmod.S_ISSOCK(mode):
        return "a socket"
    if statmod.S_ISCHR(mode):
        return "a character device"
    if statmod.S_ISBLK(mode):
        return "a block device"
    return "neither a file, directory, symlink, FIFO, socket nor device"


def walk_local(local: str, rel: str) -> Iterator[LocalEntry]:
    """``local`` and everything below it, parents first, names sorted.  A
    directory is yielded after it was opened and listed; one that changed
    before it could be opened comes with ``problem`` set and nothing below.
    A directory that cannot be read raises ``OSError``."""
    top = LocalEntry(rel, local, os.lstat(local), None, local)
    stack: list[tuple[int | None, Iterator[LocalEntry]]] = [(None, iter([top]))]
    try:
        while stack:
            entry = next(stack[-1][1], None)
            if entry is None:
                fd, _ = stack.pop()
                if fd is not None:
                    os.close(fd)
                continue
            if statmod.S_ISDIR(entry.st.st_mode):
                fd = _open_dir(entry)
                if fd is not None:
                    try:
                        children = _list(fd, entry)
                    except BaseException:
                        os.close(fd)
                        raise
                    stack.append((fd, iter(children)))
            yield entry
    finally:
        for fd, _ in stack:
            if fd is not None:
                os.close(fd)


def _open_dir(entry: LocalEntry) -> int | None:
    """The listed directory opened, or None (and ``entry.problem``) when it changed."""
    try:
        fd = os.open(entry.name, _DIR_FLAGS, dir_fd=entry.dir_fd)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR, errno.ENOENT):
            entry.problem = CHANGED
            return None
        raise
    if not entry.is_same(os.fstat(fd)):
        os.close(fd)
        entry.problem = CHANGED
        return None
    return fd


def _list(fd: int, parent: LocalEntry) -> list[LocalEntry]:
    """What the open directory ``fd`` holds, by name, each lstat-ed through ``fd``."""
    out = []
    for name in sorted(os.listdir(fd)):
        try:
            st = os.stat(name, dir_fd=fd, follow_symlinks=False)
        except FileNotFoundError:
            continue  # gone since the listing: as if it had not been there
        out.append(LocalEntry(f"{parent.rel}/{name}", os.path.join(parent.path, name), st, fd, name))
    return out


def open_listed_file(entry: LocalEntry) -> int:
    """The listed regular file opened for reading, without following a
    symlink or blocking on a FIFO; :class:`LocalChanged` when it is no
    longer the file that was listed."""
    try:
        fd = os.open(entry.name, _FILE_FLAGS, dir_fd=entry.dir_fd)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOENT, errno.ENXIO, errno.EISDIR):
            raise LocalChanged(CHANGED) from None
        raise
    try:
        st = os.fstat(fd)
        if not statmod.S_ISREG(st.st_mode) or not entry.is_same(st):
            raise LocalChanged(CHANGED)
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_listed_link(entry: LocalEntry) -> str:
    """The target of the listed symlink; :class:`LocalChanged` when it is
    no longer a symlink."""
    try:
        return os.readlink(entry.name, dir_fd=entry.dir_fd)
    except OSError as exc:
        if exc.errno in (errno.EINVAL, errno.ENOENT):
            raise LocalChanged(CHANGED) from None
        raise
