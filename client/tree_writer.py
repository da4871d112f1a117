"""The local side of ``get``: writing a tree into a destination that
another user may be able to write.

``trunkfs get`` may run as root into a shared directory.  The path given
on the command line is the caller's choice and is resolved once; below
it everything is done relative to open directory descriptors and never
through a symlink: directories are made with ``mkdir`` and opened
``O_NOFOLLOW | O_DIRECTORY`` (a symlink where a directory goes is refused,
naming it), every file and symlink is created under a fresh temporary
name (``O_EXCL | O_NOFOLLOW``) and renamed over its name (a rename replaces
a planted symlink or hard link itself, never what it points to), and
modes and times are set on the descriptor."""

from __future__ import annotations

import errno
import os
import stat as statmod

from .errors import ClientError, ProtocolError

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing is only needed by the type checker
    from collections.abc import Callable
    from typing import TypeVar
    T = TypeVar("T")

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# the caller's directory is only a base for *at() calls: O_PATH needs no read permission on it
_BASE_FLAGS = os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC
_NEW_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def _number(head: dict, key: str, default: int, most: int) -> int:
    """An integer field of an entry (``default`` when absent or 0); ``bad_reply``
    when the daemon sent something else."""
    value = head.get(key) or default
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= most:
        raise ProtocolError("bad_reply", f"daemon sent a bad {key} {value!r} for {head.get('path')!r}")
    return value


class Destination:
    """Where a ``get`` writes: the entry ``name`` in the open directory
    ``dir_fd``; ``path`` is how messages and the result name it."""

    def __init__(self, dir_fd: int, name: str, path: str) -> None:
        self.dir_fd, self.name, self.path = dir_fd, name, path

    @classmethod
    def for_get(cls, local: str, name: str) -> Destination:
        """As ``cp -r``: ``local/name`` when ``local`` is a directory (a
        symlink to one is followed: the caller named it), else ``local``
        itself, in its parent directory."""
        try:
            fd = os.open(local, _BASE_FLAGS)
        except (NotADirectoryError, FileNotFoundError):
            return cls.at(local)
        except OSError as exc:
            raise ClientError("io_error", f"cannot write into {local}: {exc.strerror}") from None
        return cls(fd, name, os.path.join(local, name))

    @classmethod
    def at(cls, target: str) -> Destination:
        """``target`` itself: its parent directory opened (following the
        caller's path), its last name written without following it."""
        stripped = target.rstrip("/") or "/"
        parent, name = os.path.split(stripped)
        try:
            if name in ("", ".", ".."):  # the directory itself: merged into, below its own descriptor
                return cls(os.open(stripped, _BASE_FLAGS), ".", target)
            return cls(os.open(parent or ".", _BASE_FLAGS), name, target)
        except OSError as exc:
            raise ClientError("io_error", f"cannot write {target}: {exc.strerror}") from None

    def close(self) -> None:
        os.close(self.dir_fd)


class _OpenDir:
    """A directory being written: its descriptor and the entry it came from."""

    __slots__ = ("rel", "fd", "head", "path")

    def __init__(self, rel: str, fd: int, head: dict, path: str) -> None:
        self.rel, self.fd, self.head, self.path = rel, fd, head, path


class TreeWriter:
    """Writes the entries of a ``get`` stream at ``dest``, as ``cp -r``
    would: directories merge, files and symlinks replace.  Paths from the
    daemon that are absolute, contain ``..`` or do not lie in a directory
    it sent before (below a symlink, say) are refused (``bad_reply``), so a
    daemon cannot make us write outside ``dest``.

    The stream comes depth first, each directory before what it holds
    (docs/protocol.md); a directory's mode and mtime are set when the
    stream leaves it, so only the directories on the current path are open.

    Setuid and setgid bits of files (and setuid of directories) are not
    restored unless ``preserve_setuid`` is given and this process runs as
    root, as ``cp`` without ``-p`` and ``tar`` without
    ``--same-permissions`` leave them off."""

    def __init__(self, dest: Destination, preserve_setuid: bool = False) -> None:
        self.dest = dest
        self.keep_setid = preserve_setuid and os.geteuid() == 0
        self.files = 0
        self._open: list[_OpenDir] = []       # the directories on the current path, root first
        self._started = False
        self._out: int | None = None           # the temporary file being written
        self._current: tuple[int, str, str, dict] | None = None   # its dir fd, temp name, name, head

    def _shown(self, rel: str) -> str:
        return os.path.join(self.dest.path, rel) if rel else self.dest.path

    def _place(self, rel: str) -> tuple[int, str]:
        """The directory descriptor and name where ``rel`` goes; leaves
        (and finishes) the directories ``rel`` is not below."""
        if not self._started:
            if rel != "":
                raise ProtocolError("bad_reply", f"daemon sent {rel!r} before the entry it asked for")
            self._started = True
            return self.dest.dir_fd, self.dest.name
        parts = rel.split("/")
        if any(p in ("", ".", "..") or "\0" in p for p in parts):
            raise ProtocolError("bad_reply", f"daemon sent an unsafe path {rel!r}")
        parent = "/".join(parts[:-1])
        while self._open and self._open[-1].rel != parent:
            self._leave()
        if not self._open:
            raise ProtocolError("bad_reply", f"daemon sent {rel!r} outside the directories it sent "
                                "(below a symlink, or out of order)")
        return self._open[-1].fd, parts[-1]

    def entry(self, head: dict) -> None:
        rel = head.get("path")
        if not isinstance(rel, str):
            raise ProtocolError("bad_reply", "daemon sent an entry without a path")
        if self._out is not None:
            raise ProtocolError("bad_reply", "daemon sent an entry inside a file")
        dir_fd, name = self._place(rel)
        kind = head.get("type")
        shown = self._shown(rel)
        if kind == "dir":
            self._open.append(_OpenDir(rel, self._enter(dir_fd, name, shown), head, shown))
        elif kind == "symlink":
            tmp, _ = self._create_temp(lambda t: os.symlink(str(head.get("target", "")), t, dir_fd=dir_fd),
                                       shown)
            self._rename_into_place(dir_fd, tmp, name, shown)
        elif kind != "file":  # a type this client does not create (no bytes follow it)
            import logging  # on first use, as in .transfer: every command would pay for it at start
            logging.getLogger(__name__).info("get: skipping %s: a %s entry", shown, kind)
        else:
            tmp, self._out = self._create_temp(lambda t: os.open(t, _NEW_FILE_FLAGS, 0o600, dir_fd=dir_fd),
                                               shown)
            self._current = (dir_fd, tmp, name, head)

    def data(self, data: bytes) -> None:
        if self._out is None:
            raise ProtocolError("bad_reply", "daemon sent file bytes outside a file")
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(self._out, view):]
        except OSError as exc:
            shown = self._shown(self._current[3]["path"]) if self._current else self.dest.path
            raise ClientError("io_error", f"cannot write {shown}: {exc.strerror}") from None

    def eof(self) -> None:
        if self._out is None or self._current is None:
            raise ProtocolError("bad_reply", "daemon sent the end of a file outside a file")
        dir_fd, tmp, name, head = self._current
        shown = self._shown(head["path"])
        mode = self._mode(_number(head, "mode", 0o644, 0o7777), statmod.S_ISUID | statmod.S_ISGID)
        mt = _number(head, "mtime", 0, 2**63 - 1)
        try:
            os.fchmod(self._out, mode)
            os.utime(self._out, ns=(mt, mt))
        except OSError as exc:
            raise ClientError("io_error", f"cannot set the mode and mtime of {shown}: {exc.strerror}") from None
        os.close(self._out)
        self._out, self._current = None, None
        self._rename_into_place(dir_fd, tmp, name, shown)
        self.files += 1

    def finish(self) -> None:
        """Give the directories still open their mode and mtime (after their content was written)."""
        while self._open:
            self._leave()

    def abort(self) -> None:
        """Close what is open and remove a file left half written."""
        if self._out is not None and self._current is not None:
            os.close(self._out)
            dir_fd, tmp, _, _ = self._current
            try:
                os.unlink(tmp, dir_fd=dir_fd)
            except OSError:
                pass
        self._out, self._current = None, None
        while self._open:
            os.close(self._open.pop().fd)

    # -- helpers -----------------------------------------------------------------

    def _mode(self, mode: int, setid: int) -> int:
        """``mode`` without the ``setid`` bits unless they are to be kept."""
        return mode if self.keep_setid else mode & ~setid

    def _enter(self, dir_fd: int, name: str, shown: str) -> int:
        """The directory ``name`` (made if missing) opened without following a symlink."""
        try:
            os.mkdir(name, 0o700, dir_fd=dir_fd)  # private until its own mode is set, when the stream leaves it
        except FileExistsError:
            pass
        except OSError as exc:
            raise ClientError("io_error", f"cannot create {shown}: {exc.strerror}") from None
        try:
            return os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                try:
                    is_link = statmod.S_ISLNK(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)
                except OSError:
                    is_link = False
                if is_link:
                    raise ClientError("io_error", f"{shown} is a symlink: get does not write through "
                                      "a symlink in its destination") from None
                raise ClientError("io_error", f"cannot write {shown}: not a directory") from None
            raise ClientError("io_error", f"cannot open {shown}: {exc.strerror}") from None

    def _leave(self) -> None:
        """Set the mode and mtime of the innermost open directory, and close it."""
        d = self._open.pop()
        try:
            os.fchmod(d.fd, self._mode(_number(d.head, "mode", 0o755, 0o7777), statmod.S_ISUID))
            mt = _number(d.head, "mtime", 0, 2**63 - 1)
            if mt:
                os.utime(d.fd, ns=(mt, mt))
        except OSError as exc:
            raise ClientError("io_error", f"cannot set the mode of {d.path}: {exc.strerror}") from None
        finally:
            os.close(d.fd)

    @staticmethod
    def _create_temp(create: Callable[[str], T], shown: str) -> tuple[str, T]:
        """A fresh temporary name beside ``shown`` and what ``create(name)``
        returned, which made it (it fails on an existing name)."""
        for _ in range(100):
            tmp = f".trunkfs-get-{os.urandom(8).hex()}"
            try:
                return tmp, create(tmp)
            except FileExistsError:
                continue
            except OSError as exc:
                raise ClientError("io_error", f"cannot write {shown}: {exc.strerror}") from None
        raise ClientError("io_error", f"cannot write {shown}: no free temporary name beside it")

    def _rename_into_place(self, dir_fd: int, tmp: str, name: str, shown: str) -> None:
        """Rename ``tmp`` over ``name``: what was there (a file, a symlink,
        a hard link) is replaced, never written through."""
        try:
            os.rename(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        except OSError as exc:
            try:
                os.unlink(tmp, dir_fd=dir_fd)
            except OSError:
                pass
            why = "a directory is in the way" if exc.errno in (errno.EISDIR, errno.ENOTEMPTY, errno.EEXIST) \
                else exc.strerror
            raise ClientError("io_error", f"cannot write {shown}: {why}") from None
