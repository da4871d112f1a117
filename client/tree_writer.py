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
modes and times are set on the descriptor.

FIFOs, sockets and (as root) devices are made the same way, with
``mknod`` under a temporary name; their mode and mtime are set on the
node just made, through an ``O_PATH | O_NOFOLLOW`` descriptor checked to
be a node of that type with one name.  A device is not made by anyone but
root (mknod(2) would refuse it): it is left out and named with the reason.
A later name of a hard-link group (``link_to``, docs/protocol.md) becomes a
hard link of the first name this get wrote: linked from that name in its
directory (reached again without following a symlink) under a temporary
name, checked to be the very inode written (same device and inode), then
renamed into place; a first name swapped meanwhile is refused, naming it."""

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
# a node or directory looked at, never opened for I/O (a FIFO never blocks, a device never answers)
_PATH_FLAGS = os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC
_NODE_TYPES = {"fifo": statmod.S_IFIFO, "socket": statmod.S_IFSOCK, "char": statmod.S_IFCHR,
               "block": statmod.S_IFBLK}
_DEVICES = ("char", "block")
RDEV_MAX = 2 ** 64 - 1


def _number(head: dict, key: str, default: int, most: int) -> int:
    """An integer field of an entry (``default`` when absent or 0); ``bad_reply``
    when the daemon sent something else."""
    value = head.get(key) or default
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= most:
        raise ProtocolError("bad_reply", f"daemon sent a bad {key} {value!r} for {head.get('path')!r}")
    return value


def _link_of(head: dict) -> str | None:
    """An entry's hard-link group id, or None; ``bad_reply`` when it is no string."""
    link = head.get("link")
    if link is not None and not isinstance(link, str):
        raise ProtocolError("bad_reply", f"daemon sent a bad link {link!r:.40} for {head.get('path')!r}")
    return link


class _FirstName:
    """The first name of a hard-link group a get wrote: its path in the
    stream and the (device, inode) written there, or why it was not made."""

    __slots__ = ("rel", "key", "why")

    def __init__(self, rel: str, key: tuple[int, int] | None, why: str | None = None) -> None:
        self.rel, self.key, self.why = rel, key, why


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
        self._first: dict[str, _FirstName] = {}   # link id -> the group's first name in this stream
        self.not_written: dict[str, str] = {}      # local paths not made, each with why

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
        if "link_to" in head:
            self._link_name(head, dir_fd, name, shown)
        elif kind == "dir":
            self._open.append(_OpenDir(rel, self._enter(dir_fd, name, shown), head, shown))
        elif kind == "symlink":
            self._make_symlink(head, dir_fd, name, shown)
        elif isinstance(kind, str) and kind in _NODE_TYPES:
            self._make_node(head, kind, dir_fd, name, shown)
        elif kind != "file":  # a type this client does not create (no bytes follow it)
            self._leave_out(head, shown, f"a {kind} entry: this client does not create it")
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
            st = os.fstat(self._out)
        except OSError as exc:
            raise ClientError("io_error", f"cannot set the mode and mtime of {shown}: {exc.strerror}") from None
        os.close(self._out)
        self._out, self._current = None, None
        self._rename_into_place(dir_fd, tmp, name, shown)
        self._remember(head, (st.st_dev, st.st_ino))
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

    # -- symlinks, FIFOs, sockets, devices and hard links ----------------------------

    def _make_symlink(self, head: dict, dir_fd: int, name: str, shown: str) -> None:
        tmp, _ = self._create_temp(lambda t: os.symlink(str(head.get("target", "")), t, dir_fd=dir_fd), shown)
        if _link_of(head) is not None:   # a hard-linked symlink: the inode its later names link to
            key = _key_at(dir_fd, tmp)
            if key is None:
                raise ClientError("io_error", f"cannot write {shown}: its temporary symlink is gone")
            self._remember(head, key)
        self._rename_into_place(dir_fd, tmp, name, shown)

    def _make_node(self, head: dict, kind: str, dir_fd: int, name: str, shown: str) -> None:
        """A FIFO, socket or device (as root; else left out with the reason)."""
        rdev = 0
        if kind in _DEVICES:
            rdev = _number(head, "rdev", 0, RDEV_MAX)
            if os.geteuid() != 0:
                self._leave_out(head, shown, f"a {'character' if kind == 'char' else 'block'} device: "
                                "only root may make device nodes (mknod)")
                return
        fmt = _NODE_TYPES[kind]
        tmp, _ = self._create_temp(lambda t: os.mknod(t, 0o600 | fmt, rdev, dir_fd=dir_fd), shown)
        try:
            key = self._set_node(dir_fd, tmp, fmt, head, shown)
        except BaseException:
            _discard(dir_fd, tmp)
            raise
        self._rename_into_place(dir_fd, tmp, name, shown)
        self._remember(head, key)

    def _set_node(self, dir_fd: int, tmp: str, fmt: int, head: dict, shown: str) -> tuple[int, int]:
        """Give the node just made at ``tmp`` its mode and mtime, on the node
        itself (never through a name another user may have swapped since);
        its (device, inode)."""
        mode = self._mode(_number(head, "mode", 0o644, 0o7777), statmod.S_ISUID | statmod.S_ISGID)
        mt = _number(head, "mtime", 0, 2**63 - 1)
        try:
            fd = os.open(tmp, _PATH_FLAGS, dir_fd=dir_fd)
        except OSError as exc:
            raise ClientError("io_error", f"cannot write {shown}: {exc.strerror}") from None
        try:
            st = os.fstat(fd)
            if statmod.S_IFMT(st.st_mode) != fmt or st.st_nlink != 1:
                raise ClientError("io_error", f"cannot write {shown}: the node get made was replaced meanwhile")
            node = f"/proc/self/fd/{fd}"   # the descriptor's own node: chmod and utime have no fd form for O_PATH
            os.chmod(node, mode)
            os.utime(node, ns=(mt, mt))
        except OSError as exc:
            raise ClientError("io_error", f"cannot set the mode and mtime of {shown}: {exc.strerror}") from None
        finally:
            os.close(fd)
        return st.st_dev, st.st_ino

    def _remember(self, head: dict, key: tuple[int, int]) -> None:
        """Note the name just written as its link group's first, if it has a group."""
        link = _link_of(head)
        if link is not None and link not in self._first:
            self._first[link] = _FirstName(head["path"], key)

    def _leave_out(self, head: dict, shown: str, why: str) -> None:
        """An entry not made here, with why (a later name of its group is left out too)."""
        import logging  # on first use, as in .transfer: every command would pay for it at start
        logging.getLogger(__name__).info("get: skipping %s: %s", shown, why)
        self.not_written[shown] = why
        link = _link_of(head)
        if link is not None and link not in self._first:
            self._first[link] = _FirstName(head["path"], None, why)

    def _link_name(self, head: dict, dir_fd: int, name: str, shown: str) -> None:
        """A later name of a hard-link group: a hard link of the group's first
        name in this stream, checked to be the inode written there."""
        link, rel = _link_of(head), head["path"]
        first = self._first.get(link) if link is not None else None
        if first is None or head["link_to"] != first.rel:
            raise ProtocolError("bad_reply", f"daemon sent {rel!r} as a hard link of {head['link_to']!r:.200}, "
                                "which is not an earlier name of its group in this get")
        if first.key is None:
            self._leave_out(head, shown, first.why or "its first name was not made")
            return
        src_fd, src_name, opened = self._first_place(first.rel, shown)
        try:
            tmp, _ = self._create_temp(lambda t: os.link(src_name, t, src_dir_fd=src_fd, dst_dir_fd=dir_fd,
                                                         follow_symlinks=False), shown)
        finally:
            if opened:
                os.close(src_fd)
        if _key_at(dir_fd, tmp) != first.key:
            _discard(dir_fd, tmp)
            raise ClientError("io_error", f"cannot link {shown} to {self._shown(first.rel)}: that is no longer "
                              "the file get wrote")
        self._rename_into_place(dir_fd, tmp, name, shown)
        if _key_at(dir_fd, tmp) == first.key:   # ``name`` was a link of it already: rename did nothing
            _discard(dir_fd, tmp)
        if head.get("type") == "file":
            self.files += 1

    def _first_place(self, rel: str, shown: str) -> tuple[int, str, bool]:
        """The directory descriptor and name of a name written earlier, and
        whether the descriptor was opened here (to be closed): an open
        directory of the current path, or one reached again from the
        nearest of them without following a symlink."""
        if rel == "":
            return self.dest.dir_fd, self.dest.name, False
        parent, _, name = rel.rpartition("/")
        base = next(d for d in reversed(self._open) if d.rel == "" or parent == d.rel
                    or parent.startswith(d.rel + "/"))   # the top directory at least: it stays open
        if base.rel == parent:
            return base.fd, name, False
        fd = base.fd
        try:
            for part in parent[len(base.rel):].strip("/").split("/"):
                below = os.open(part, _PATH_FLAGS | os.O_DIRECTORY, dir_fd=fd)
                if fd != base.fd:
                    os.close(fd)
                fd = below
        except OSError as exc:
            if fd != base.fd:
                os.close(fd)
            raise ClientError("io_error", f"cannot link {shown} to {self._shown(rel)}: its directory "
                              f"{self._shown(parent)} is not the one get wrote ({exc.strerror})") from None
        return fd, name, True

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


def _discard(dir_fd: int, tmp: str) -> None:
    """Remove a temporary name this writer made (gone already is fine)."""
    try:
        os.unlink(tmp, dir_fd=dir_fd)
    except OSError:
        pass


def _key_at(dir_fd: int, name: str) -> tuple[int, int] | None:
    """The (device, inode) of ``name`` itself (never followed), or None when it is gone."""
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except OSError:
        return None
    return st.st_dev, st.st_ino
