"""The ``trunkfs://`` fsspec filesystem.

    fsspec.open("trunkfs://raw@v3/labels.csv")          # a tag
    pd.read_parquet("trunkfs://raw/events/")             # the head of main
    pd.read_csv("trunkfs://raw@3f9a1c2b4d5e/x.csv",      # a commit, straight from S3
                storage_options={"store": "s3://bucket/trunkfs", "s3_endpoint": "http://..."})

Paths are ``REPO[@REF]/PATH``.  A branch is resolved to its head commit at
each listing and at each open; an open file reads the commit it was opened
at to the end, so a reader never sees half of a later write.  A commit or
tag ref never changes.  Reads are ranged: a read of ``n`` bytes fetches
only the chunks that cover them (a Parquet footer, one column's pages).
``checksum`` and ``ukey`` are the file's content id (its chunk list), so
caches and Dask know when data changed without reading it.

By default the data comes through the local daemon's socket
(``socket=PATH`` or ``$TRUNKFS_SOCKET``), with its chunk cache and the
caller's permissions; with ``store=URL`` it comes straight from the store
(read-only; :class:`~trunkfs.datafs.sources.StoreSource`).
"""

from __future__ import annotations

import errno
from datetime import datetime, timezone
from typing import Any

from fsspec.spec import AbstractBufferedFile, AbstractFileSystem

from ..cache.opened import StoreOptions
from .paths import PROTOCOL, Location, parse, strip_protocol
from .sources import DaemonSource, Source, StoreSource
from .writes import Pending, TrunkTransaction, TrunkWriteFile, refuse_write

DIRECTORY, FILE = "directory", "file"
# bytes a read fetches at least: about one content-defined chunk (1 MiB on
# average), the unit the store verifies; a larger read asks for what it needs,
# so a Parquet column read fetches the chunks of its pages, not 5 MiB beyond each
READ_BLOCK = 1 << 20
_TYPES = {"dir": DIRECTORY, "file": FILE}


class TrunkFileSystem(AbstractFileSystem):
    """Repos of a trunkfs store as an fsspec filesystem."""

    protocol = PROTOCOL
    root_marker = ""
    transaction_type = TrunkTransaction   # with fs.transaction: one commit per branch at its end

    def __init__(self, socket: str | None = None, store: str | None = None, s3_endpoint: str | None = None,
                 s3_region: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.pending = Pending()          # what the running transaction wrote and removed
        self.staged: set[tuple[str, str]] = set()   # (repo, branch) staged on outside a transaction
        self.source: Source
        if store:
            self.source = StoreSource(StoreOptions(store, s3_endpoint, s3_region))
        else:
            self.source = DaemonSource(socket)

    @classmethod
    def _strip_protocol(cls, path: Any) -> Any:
        if isinstance(path, list):
            return [cls._strip_protocol(p) for p in path]
        return strip_protocol(str(path))

    def unstrip_protocol(self, name: str) -> str:
        return f"{PROTOCOL}://{strip_protocol(name)}"

    # -- where a path points ---------------------------------------------------------

    def _locate(self, path: str) -> tuple[Location | None, str | None]:
        """The location and the commit its ref names now."""
        try:
            loc = parse(path)
        except ValueError as exc:
            raise ValueError(str(exc)) from None
        if loc is None:
            return None, None
        return loc, self.source.resolve(loc.repo, loc.ref_or_main)

    @staticmethod
    def _detail(loc: Location, name: str, entry: dict, commit: str | None) -> dict:
        kind = _TYPES.get(str(entry.get("type")), "other")
        out = {"name": loc.child(name) if name else loc.full(), "size": int(entry.get("size") or 0),
               "type": kind, "mode": entry.get("mode"), "mtime": entry.get("mtime"), "commit": commit}
        if entry.get("content"):
            out["content"] = entry["content"]
        if entry.get("type") == "symlink":
            out["destination"] = entry.get("target")
        return out

    # -- reading the tree ------------------------------------------------------------------

    def ls(self, path: str, detail: bool = True, **kwargs: Any) -> list:
        loc, commit = self._locate(path)
        if loc is None:
            repos = [{"name": r, "size": 0, "type": DIRECTORY} for r in self.source.repos()]
            return repos if detail else [r["name"] for r in repos]
        if loc.path:
            own = self.source.stat(loc.repo, commit, loc.path)
            if own.get("type") != "dir":
                out = [self._detail(loc, "", own, commit)]      # a file lists as itself
                return out if detail else [e["name"] for e in out]
        listing = self.source.listing(loc.repo, commit, loc.path)
        out = [self._detail(loc, str(e["name"]), e, commit) for e in listing.get("entries") or []]
        return out if detail else [e["name"] for e in out]

    def info(self, path: str, **kwargs: Any) -> dict:
        loc, commit = self._locate(path)
        if loc is None:
            return {"name": "", "size": 0, "type": DIRECTORY}
        if not loc.path:        # the repo's root (a missing repo failed to resolve)
            return {"name": loc.full(), "size": 0, "type": DIRECTORY, "commit": commit}
        return self._detail(loc, "", self.source.stat(loc.repo, commit, loc.path), commit)

    def ukey(self, path: str) -> str:
        """The content id of a file (its bytes' identity: the same in every
        commit that holds the same bytes); a directory's commit and path."""
        found = self.info(path)
        return str(found.get("content") or f"{found.get('commit')}:{found['name']}")

    def checksum(self, path: str) -> int:
        return int(self.ukey(path).encode().hex()[:30], 16)

    def modified(self, path: str) -> datetime:
        mtime = self.info(path).get("mtime") or 0
        return datetime.fromtimestamp(int(mtime) / 1e9, tz=timezone.utc)

    def cat_file(self, path: str, start: int | None = None, end: int | None = None, **kwargs: Any) -> bytes:
        """Bytes ``start`` to ``end`` of a file (negative: from its end),
        fetching only the chunks that cover them."""
        found = self.info(path)
        if found["type"] != FILE:
            raise IsADirectoryError(errno.EISDIR, f"trunkfs://{found['name']}: not a file")
        size = int(found["size"])
        start = 0 if start is None else (max(0, size + start) if start < 0 else start)
        end = size if end is None else (max(0, size + end) if end < 0 else min(end, size))
        loc = parse(path)
        assert loc is not None
        return self._read(loc, str(found["commit"]), start, max(0, end - start))

    def _read(self, loc: Location, commit: str, offset: int, length: int) -> bytes:
        parts = []
        while length > 0:
            step = min(length, 64 << 20)
            data = self.source.read(loc.repo, commit, loc.path, offset, step)
            parts.append(data)
            if len(data) < step:
                break
            offset += step
            length -= step
        return b"".join(parts)

    # -- writing --------------------------------------------------------------------------

    def _branch_of(self, path: str) -> tuple[Location, str]:
        """The location of a path written to, and the branch its ref names;
        PermissionError for a commit or a tag, or without a daemon."""
        loc = parse(path)
        if loc is None or not loc.path:
            raise refuse_write(strip_protocol(path), "write a path inside a repo, e.g. REPO@BRANCH/file")
        if not isinstance(self.source, DaemonSource):
            raise refuse_write(loc.full(), "reading straight from the store is read-only; writes go "
                                           "through a daemon (no 'store' option)")
        _commit, branch = self.source.resolve_ref(loc.repo, loc.ref_or_main)
        if branch is None:
            raise refuse_write(loc.full(), f"{loc.ref_or_main!r} is a commit or a tag, which never changes; "
                                           "write to a branch")
        return loc, branch

    def commit_on_exit(self, message: str) -> TrunkTransaction:
        """``with fs.commit_on_exit("message"):`` -- a transaction whose commit has this message."""
        self._transaction = TrunkTransaction(self, message)
        return self._transaction

    def stage_written(self, loc: Location, branch: str, local: str) -> None:
        """Stage a file closed outside a transaction on its branch."""
        assert isinstance(self.source, DaemonSource)
        self.source.stage_file(loc.repo, branch, loc.path, local)
        self.staged.add((loc.repo, branch))
        self.invalidate_cache()

    def commit(self, message: str = "") -> dict[str, str]:
        """Commit what this filesystem staged outside a transaction (with
        whatever else is staged on those branches): one commit per branch;
        returns ``{"REPO@BRANCH": commit}``."""
        assert isinstance(self.source, DaemonSource)
        done: dict[str, str] = {}
        staged, self.staged = sorted(self.staged), set()
        for repo, branch in staged:
            made = self.source.commit_staged(repo, branch, message or "trunkfs:// write")
            if made is not None:
                done[f"{repo}@{branch}"] = made
        self.invalidate_cache()
        return done

    def commit_pending(self, message: str) -> dict[str, str]:
        """A transaction's end: one commit per branch with exactly what it
        wrote and removed."""
        assert isinstance(self.source, DaemonSource)
        done: dict[str, str] = {}
        for changes in self.pending.take():
            try:
                done[f"{changes.repo}@{changes.branch}"] = self.source.commit_files(
                    changes.repo, changes.branch, sorted(changes.files.items()), sorted(changes.removed), message,
                    sorted(changes.dirs))
            finally:
                changes.drop()
        self.invalidate_cache()
        return done

    def rm_file(self, path: str) -> None:
        loc, branch = self._branch_of(path)
        if not self.exists(path):
            raise FileNotFoundError(errno.ENOENT, f"trunkfs://{loc.full()}: no such file or directory")
        if self._intrans and isinstance(self._transaction, TrunkTransaction):
            self._transaction.removed.append((loc.repo, branch, loc.path))
        else:
            assert isinstance(self.source, DaemonSource)
            self.source.stage_rm(loc.repo, branch, loc.path)
            self.staged.add((loc.repo, branch))
            self.invalidate_cache()

    def rm(self, path: Any, recursive: bool = False, maxdepth: int | None = None) -> None:
        paths = self.expand_path(path, recursive=recursive, maxdepth=maxdepth)
        for p in sorted(paths, reverse=True):
            if self.isdir(p):
                continue      # a directory goes with the files below it
            self.rm_file(p)

    def mkdir(self, path: str, create_parents: bool = True, **kwargs: Any) -> None:
        """A directory (with its parents): staged now, or made by the
        transaction's commit.  Files written into a path make its
        directories anyway."""
        loc, branch = self._branch_of(path)
        if self._intrans and isinstance(self._transaction, TrunkTransaction):
            self._transaction.made.append((loc.repo, branch, loc.path))
            return
        assert isinstance(self.source, DaemonSource)
        self.source.stage_mkdir(loc.repo, branch, loc.path)
        self.staged.add((loc.repo, branch))
        self.invalidate_cache()

    def makedirs(self, path: str, exist_ok: bool = False) -> None:
        if not exist_ok and self.exists(path):
            raise FileExistsError(errno.EEXIST, f"trunkfs://{strip_protocol(path)}: exists")
        self.mkdir(path)

    def _open(self, path: str, mode: str = "rb", block_size: Any = None, autocommit: bool = True,
              cache_options: Any = None, **kwargs: Any) -> Any:
        if mode in ("wb", "xb"):
            loc, branch = self._branch_of(path)
            if mode == "xb" and self.exists(path):
                raise FileExistsError(errno.EEXIST, f"trunkfs://{loc.full()}: exists")
            return TrunkWriteFile(self, path, loc, branch, block_size=block_size or "default",
                                  autocommit=autocommit and not self._intrans)
        if mode != "rb":
            raise ValueError(f"trunkfs://{strip_protocol(path)}: mode {mode!r} is not supported "
                             "(rb, wb or xb)")
        found = self.info(path)
        if found["type"] != FILE:
            raise IsADirectoryError(errno.EISDIR, f"trunkfs://{found['name']}: not a file")
        return TrunkFile(self, path, mode, block_size=block_size or READ_BLOCK, autocommit=autocommit,
                         cache_options=cache_options, size=int(found["size"]), commit=str(found["commit"]),
                         **kwargs)


class TrunkFile(AbstractBufferedFile):
    """A file opened for reading at one commit: ranged reads through the source."""

    def __init__(self, fs: TrunkFileSystem, path: str, mode: str, commit: str, **kwargs: Any) -> None:
        self.commit = commit
        self.target = parse(path)
        super().__init__(fs, path, mode, **kwargs)

    def _fetch_range(self, start: int, end: int) -> bytes:
        assert self.target is not None
        fs: TrunkFileSystem = self.fs
        return fs._read(self.target, self.commit, start, max(0, end - start))
