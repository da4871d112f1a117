"""Datums: cutting an input commit into them, their identity, and the
outputs they write (stored, then merged into one tree).

Outputs are read as root from a directory the datum's user wrote: see
:class:`_OutputReader` for why every lookup there is fd-relative.

A datum is a list of (path, entry) pairs picked by the pipeline's glob.  Its
hash comes from the Merkle tree (file chunk lists, subtree ids), so deciding
whether a datum changed never reads file data.  Committed trees are read
through the one tree walker, :mod:`trunkfs.store.walk`.
"""

from __future__ import annotations

import os
import stat
import threading

from ..store import walk
from ..store.access import Caller
from ..store.codec import blob_id
from ..store.errors import TrunkError
from ..store.objects import DIR, FILE, SYMLINK, canonical, entry_size, unprivileged_mode
from ..store.store import Store
from ..store.treeedit import TreeEditor
from ..store.writer import WriteSession

Datum = list[tuple[str, dict]]


class MergeConflict(Exception):
    """Two datums wrote the same output path."""


def _root(tree: str | None) -> dict:
    return {"type": DIR, "tree": tree}


def cut_datums(store: Store, root_tree: str | None, glob: str) -> list[Datum]:
    """The datums of a commit's tree for a glob: '/' (the whole commit, one
    datum), '/*' (each top-level entry), '/*/*' (each entry one level down)
    or '/**' (each file, symlink or other non-directory at any depth)."""
    root = _root(root_tree)
    if glob == "/":
        top = list(walk.children(store, root))
        return [top] if top else []
    if glob == "/*":
        return [[pe] for pe in walk.children(store, root)]
    if glob == "/*/*":
        return [[pe] for path, e in walk.children(store, root) if walk.is_dir(e)
                for pe in walk.children(store, e, path)]
    return [[pe] for pe in walk.files_below(store, root)]


def datum_hash(datum: Datum) -> str:
    """Identity of a datum's content: paths and their content ids, no data read."""
    items = []
    for path, e in sorted(datum, key=lambda pe: pe[0]):
        if e["type"] == DIR:
            ident = e.get("tree")
        elif e["type"] == FILE:
            ident = e.get("chunks")
        else:
            ident = e.get("target")
        items.append([path, e["type"], e.get("mode"), ident])
    return blob_id(canonical(items)).hex()


def datum_paths(datum: Datum) -> list[str]:
    return [p for p, _ in datum]


class UnsafeOutput(TrunkError):
    """A datum's output holds what root will not store: a FIFO, socket or
    device, a file its user could not read (a hard link to someone else's
    file), a path that changed while it was read, or more bytes than the
    job may store.  The message names the output path."""

    code = "invalid_argument"


class OutputBudget:
    """The bytes the datums of one job may store together
    (``job_output_limit``; 0 is no cap).  Datums ingest in parallel worker
    threads, so the count is taken under a lock."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self._lock = threading.Lock()

    def _refuse(self, path: str) -> UnsafeOutput:
        return UnsafeOutput(f"output exceeds the job output limit of {self.limit} bytes "
                            f"(job_output_limit) at {path}")

    def check(self, size: int, path: str) -> None:
        """Refuse a file of ``size`` bytes before reading it, when it cannot fit."""
        if self.limit and self.used + size > self.limit:
            raise self._refuse(path)

    def take(self, size: int, path: str) -> None:
        with self._lock:
            self.used += size
            if self.limit and self.used > self.limit:
                raise self._refuse(path)


# Every open below is relative to a directory fd and never follows a symlink;
# a file is opened non-blocking (a FIFO swapped in cannot hang the ingest).
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
MAX_OUTPUT_DEPTH = 256   # directories nested deeper in an output are refused
_KINDS = ((stat.S_ISFIFO, "FIFO"), (stat.S_ISSOCK, "socket"), (stat.S_ISCHR, "character device"),
          (stat.S_ISBLK, "block device"))


def kind_of(mode: int) -> str:
    """What a non-regular, non-directory, non-symlink file is, in words."""
    return next((name for test, name in _KINDS if test(mode)), "special file")


def may_read(st: os.stat_result, who: Caller) -> bool:
    """Could ``who`` read a file with this status?  The POSIX classes (owner,
    group, others) by its mode; its owner always can (it may chmod it), and
    so can root."""
    if who.is_root or st.st_uid == who.uid:
        return True
    if st.st_gid in who.groups:
        return bool(st.st_mode & stat.S_IRGRP)
    return bool(st.st_mode & stat.S_IROTH)


class _OutputReader:
    """Reads a datum's output directory into a tree, fd-relative.

    Root reads a directory a user wrote and could change while it is read,
    so nothing is looked up by path twice: each directory is opened with
    ``O_NOFOLLOW`` relative to its parent's fd, each name is lstat'ed there,
    files are opened with ``O_NOFOLLOW | O_NONBLOCK`` and checked again on
    the fd (a regular file the datum's user may read), symlinks are read
    with ``readlink(name, dir_fd)`` and stored as symlinks."""

    def __init__(self, session: WriteSession, privileged: bool, reader: Caller | None,
                 budget: OutputBudget | None) -> None:
        self.session = session
        self.editor = TreeEditor(session.store, None)
        self.privileged = privileged
        self.reader = reader          # None: root's own datum, reads what root may
        self.budget = budget or OutputBudget(0)

    def directory(self, fd: int, rel: str, depth: int) -> None:
        if depth > MAX_OUTPUT_DEPTH:
            raise UnsafeOutput(f"output path {rel} is nested deeper than {MAX_OUTPUT_DEPTH} directories")
        for name in sorted(os.listdir(fd)):
            path = f"{rel}/{name}"
            try:
                self.entry(fd, name, path, depth)
            except UnsafeOutput:
                raise
            except OSError as exc:
                raise UnsafeOutput(f"output path {path} cannot be stored (it changed while it was "
                                   f"read?): {exc.strerror}") from exc

    def entry(self, fd: int, name: str, path: str, depth: int) -> None:
        st = os.stat(name, dir_fd=fd, follow_symlinks=False)
        if stat.S_ISLNK(st.st_mode):
            self.editor.put(path, {"type": SYMLINK, "mode": 0o777, "mtime": st.st_mtime_ns,
                                   "target": os.readlink(name, dir_fd=fd)})
        elif stat.S_ISDIR(st.st_mode):
            sub = os.open(name, _DIR_FLAGS, dir_fd=fd)
            try:   # as the command left it, so that the same output makes the same tree
                mode = stat.S_IMODE(st.st_mode)
                self.editor.mkdir(path, mode if self.privileged else unprivileged_mode(mode), st.st_mtime_ns)
                self.directory(sub, path, depth + 1)
            finally:
                os.close(sub)
        elif stat.S_ISREG(st.st_mode):
            self.file(fd, name, path)
        else:   # never opened: a FIFO could block, a device could act on open
            raise UnsafeOutput(f"output path {path} is a {kind_of(st.st_mode)}: a pipeline output "
                               "may hold only files, directories and symlinks")

    def file(self, dir_fd: int, name: str, path: str) -> None:
        fd = os.open(name, _FILE_FLAGS, dir_fd=dir_fd)
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):   # swapped since the lstat
                raise UnsafeOutput(f"output path {path} is a {kind_of(st.st_mode)}: a pipeline "
                                   "output may hold only files, directories and symlinks")
            if self.reader is not None and not may_read(st, self.reader):
                raise UnsafeOutput(
                    f"output path {path} is a file its datum's user (uid {self.reader.uid}) could not "
                    f"read (owner uid {st.st_uid}, mode {stat.S_IMODE(st.st_mode):04o}); a hard link "
                    "to another user's file is not stored")
            self.budget.check(st.st_size, path)
            ingest = self.session.ingest()
            while data := os.read(fd, 4 << 20):
                self.budget.take(len(data), path)
                ingest.write(data)
            chunks, size = ingest.finish()
        finally:
            os.close(fd)
        mode = stat.S_IMODE(st.st_mode)
        self.editor.put(path, {"type": FILE, "mode": mode if self.privileged else unprivileged_mode(mode),
                               "mtime": st.st_mtime_ns, "size": size, "chunks": chunks})


def ingest_dir(session: WriteSession, root: str, privileged: bool = False, reader: Caller | None = None,
               budget: OutputBudget | None = None) -> dict:
    """Store a directory written by a command; return its root entry (tree
    id, size, files).  Files keep setuid and setgid only when ``privileged``
    (the command ran as root).  ``reader`` is the user the command ran as:
    a file it could not read is refused (None: no check).  ``budget``
    counts the bytes stored.  Raises :class:`UnsafeOutput` naming the path."""
    reading = _OutputReader(session, privileged, reader, budget)
    try:
        fd = os.open(root, _DIR_FLAGS)
    except OSError as exc:
        raise UnsafeOutput(f"output directory {root} cannot be opened: {exc.strerror}") from exc
    try:
        reading.directory(fd, "", 0)
    finally:
        os.close(fd)
    return reading.editor.write(session)


def merge_outputs(store: Store, session: WriteSession, trees: list[str]) -> dict:
    """Merge the output trees of every datum into one root entry; a path
    written by two datums is a :class:`MergeConflict`."""
    editor = TreeEditor(store, None)
    seen: dict[str, int] = {}
    for who, tree in enumerate(trees):
        for path, e in walk.walk(store, _root(tree)):   # each directory before what it holds
            if walk.is_dir(e):
                editor.mkdir(path, e.get("mode"), e.get("mtime"))
                continue
            if seen.setdefault(path, who) != who:
                raise MergeConflict(f"two datums wrote the same output path {path}")
            editor.put(path, e)
    return editor.write(session)


def store_output(store: Store, directory: str, owner_uid: int | None = None, owner_gid: int | None = None,
                 budget: OutputBudget | None = None, packs: set[str] | None = None) -> str:
    """Store what a datum wrote in ``directory`` (its own write session,
    flushed); return the tree id (:func:`store_output_root` says more)."""
    return str(store_output_root(store, directory, owner_uid, owner_gid, budget, packs)["tree"])


def store_output_root(store: Store, directory: str, owner_uid: int | None = None,
                      owner_gid: int | None = None, budget: OutputBudget | None = None,
                      packs: set[str] | None = None) -> dict:
    """Store what a datum wrote in ``directory`` (its own write session,
    flushed); return its root entry (tree id, size, files).  ``owner_uid``
    and ``owner_gid`` are whom the datum ran as; by default the owner of
    ``directory`` (the runner chowns it to them, and a non-root process
    cannot give it to root).  Only a datum run as root keeps setuid and
    setgid bits of its files, and stores files its user could not read.
    Nothing is stored when it fails.  The ids of the packs its blobs are in
    are added to ``packs``."""
    if owner_uid is None or owner_gid is None:
        st = os.lstat(directory)
        owner_uid = st.st_uid if owner_uid is None else owner_uid
        owner_gid = st.st_gid if owner_gid is None else owner_gid
    reader = None if owner_uid == 0 else Caller(owner_uid, owner_gid)
    session = store.session()
    try:
        root = ingest_dir(session, directory, privileged=owner_uid == 0, reader=reader, budget=budget)
        session.flush()
    except BaseException:
        session.abort()
        raise
    if packs is not None:
        packs.update(session.pack_ids())
    return root


def datum_bytes(datum: Datum) -> int:
    """The bytes of a datum's input (its files, and everything below its directories)."""
    return sum(entry_size(e) for _, e in datum)


def store_merged(store: Store, trees: list[str], packs: set[str] | None = None) -> dict:
    """Merge datum output trees in a write session of their own (flushed);
    return the merged root entry (its packs added to ``packs``)."""
    session = store.session()
    try:
        root = merge_outputs(store, session, trees)
        session.flush()
    except BaseException:
        session.abort()
        raise
    if packs is not None:
        packs.update(session.pack_ids())
    return root
