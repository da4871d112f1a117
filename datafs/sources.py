"""Where ``trunkfs://`` gets its data: the local daemon's socket (the default:
the daemon's cache, the caller's permissions) or the store itself (a
machine without a daemon: read-only, every chunk verified, a chunk cache of
its own).  Both answer the same few questions; errors become the Python
exceptions fsspec callers expect (FileNotFoundError, PermissionError...),
with the repo and path in the message."""

from __future__ import annotations

import errno
import os
import threading
from typing import Protocol

from ..cache.opened import OpenedStore, StoreOptions, parse_cache_size, state_dir
from ..client import Client, ClientError
from ..store import history
from ..store.errors import AccessDenied, InvalidArgument, NotFound, TrunkError
from ..store.names import split_path
from ..store.refs import Refs


class Source(Protocol):
    """What the filesystem asks of where the data is."""

    writable: bool

    def repos(self) -> list[str]: ...

    def resolve(self, repo: str, ref: str) -> str | None: ...

    def listing(self, repo: str, commit: str | None, path: str) -> dict: ...

    def stat(self, repo: str, commit: str | None, path: str) -> dict: ...

    def read(self, repo: str, commit: str, path: str, offset: int, length: int) -> bytes: ...

    def close(self) -> None: ...


def as_os_error(exc: Exception, where: str) -> Exception:
    """The Python exception of a trunkfs error (a ClientError's code, or a store error)."""
    code = getattr(exc, "code", "")
    message = f"{where}: {exc}"
    if isinstance(exc, NotFound) or code == "not_found":
        return FileNotFoundError(errno.ENOENT, message)
    if isinstance(exc, AccessDenied) or code == "permission_denied":
        return PermissionError(errno.EACCES, message)
    if isinstance(exc, InvalidArgument) or code == "invalid_argument":
        return ValueError(message)
    if code == "unavailable":
        return ConnectionError(errno.ECONNREFUSED, f"{message}; no daemon answers there: start one, or read "
                               "straight from the store with storage_options {'store': 's3://bucket/prefix', "
                               "'s3_endpoint': ...}")
    return OSError(errno.EIO, message)


class DaemonSource:
    """Through the daemon's control socket; one connection per thread
    (pyarrow and Dask read from several threads at once)."""

    writable = True

    def __init__(self, socket_path: str | None = None) -> None:
        self.socket_path = socket_path
        self._local = threading.local()
        self._clients: list[Client] = []
        self._lock = threading.Lock()

    def client(self) -> Client:
        c = getattr(self._local, "client", None)
        if c is None:
            try:
                c = Client(self.socket_path)
            except OSError as exc:
                raise ConnectionError(
                    f"trunkfs: no daemon answers at {self.socket_path or 'the default socket'} ({exc}); "
                    "start one, or read straight from the store with storage_options "
                    "{'store': 's3://bucket/prefix', 's3_endpoint': ...}") from exc
            self._local.client = c
            with self._lock:
                self._clients.append(c)
        return c

    def call(self, op: str, where: str, **args: object) -> object:
        try:
            return self.client().call(op, **args)
        except ClientError as exc:
            raise as_os_error(exc, where) from exc

    def repos(self) -> list[str]:
        found = self.call("repo.list", "trunkfs://")
        assert isinstance(found, list)
        return sorted(str(r["name"]) for r in found)

    def resolve(self, repo: str, ref: str) -> str | None:
        return self.resolve_ref(repo, ref)[0]

    def resolve_ref(self, repo: str, ref: str) -> tuple[str | None, str | None]:
        """(the commit, the branch: None when ``ref`` names a commit or a tag)."""
        found = self.call("resolve", f"{repo}@{ref}", repo=repo, ref=ref)
        assert isinstance(found, dict)
        return found.get("commit"), found.get("branch")

    def commit_files(self, repo: str, branch: str, files: list[tuple[str, str]], remove: list[str],
                     message: str, dirs: list[str] | None = None) -> str:
        """One commit on a branch: ``remove`` removed, then ``dirs`` made and
        ``files`` ((path, local file)) written."""
        try:
            done = self.client().put_files(repo, files, branch=branch, remove=remove, dirs=dirs or [],
                                           message=message)
        except ClientError as exc:
            raise as_os_error(exc, f"{repo}@{branch}") from exc
        return done.commit

    def listing(self, repo: str, commit: str | None, path: str) -> dict:
        if commit is None:       # a branch without commits: an empty root
            if path:
                raise FileNotFoundError(errno.ENOENT, f"{repo}/{path}: the branch has no commits")
            return {"commit": None, "entries": []}
        found = self.call("ls", f"{repo}@{commit[:12]}/{path}", repo=repo, ref=commit, path="/" + path)
        assert isinstance(found, dict)
        return found

    def stat(self, repo: str, commit: str | None, path: str) -> dict:
        if commit is None:
            raise FileNotFoundError(errno.ENOENT, f"{repo}/{path}: the branch has no commits")
        found = self.call("stat", f"{repo}@{commit[:12]}/{path}", repo=repo, ref=commit, path="/" + path)
        assert isinstance(found, dict)
        return dict(found["entry"])

    def read(self, repo: str, commit: str, path: str, offset: int, length: int) -> bytes:
        try:
            data, _ = self.client().read(repo, "/" + path, ref=commit, offset=offset, length=length)
        except ClientError as exc:
            raise as_os_error(exc, f"{repo}@{commit[:12]}/{path}") from exc
        return data

    def stage_file(self, repo: str, branch: str, path: str, local: str) -> None:
        try:
            self.client().stage_files(repo, [(path, local)], branch=branch)
        except ClientError as exc:
            raise as_os_error(exc, f"{repo}@{branch}/{path}") from exc

    def stage_mkdir(self, repo: str, branch: str, path: str) -> None:
        try:
            self.client().stage_mkdir(repo, [path], branch=branch)
        except ClientError as exc:
            raise as_os_error(exc, f"{repo}@{branch}/{path}") from exc

    def stage_rm(self, repo: str, branch: str, path: str) -> None:
        try:
            self.client().stage_rm(repo, [path], branch=branch)
        except ClientError as exc:
            raise as_os_error(exc, f"{repo}@{branch}/{path}") from exc

    def commit_staged(self, repo: str, branch: str, message: str) -> str | None:
        """Commit a branch's staged changes; None when nothing was staged."""
        try:
            return self.client().commit(repo, branch=branch, message=message).commit
        except ClientError as exc:
            if exc.code == "nothing_to_commit":
                return None
            raise as_os_error(exc, f"{repo}@{branch}") from exc

    def close(self) -> None:
        with self._lock:
            clients, self._clients = self._clients, []
        for c in clients:
            c.close()


class StoreSource:
    """Straight from the store, read-only: refs and commits read from it,
    chunks verified by hash, through a chunk cache of its own
    (``TRUNKFS_CLIENT_DIR``, ``TRUNKFS_CLIENT_CACHE``).  No daemon checks
    permissions here: whoever holds the store's credentials reads it all."""

    writable = False

    def __init__(self, options: StoreOptions) -> None:
        try:
            self.opened = OpenedStore(options, state_dir("TRUNKFS_CLIENT_DIR", "trunkfs-client"),
                                      parse_cache_size(os.environ.get("TRUNKFS_CLIENT_CACHE")))
        except (TrunkError, OSError) as exc:
            raise as_os_error(exc, f"trunkfs store {options.url}") from exc
        self.store = self.opened.store
        self.refs = Refs(self.store)

    def repos(self) -> list[str]:
        return sorted(r.name for r in self.refs.list_repos())

    def resolve(self, repo: str, ref: str) -> str | None:
        try:
            return history.resolve(self.refs, repo, ref).commit
        except TrunkError as exc:
            raise as_os_error(exc, f"{repo}@{ref}") from exc

    def listing(self, repo: str, commit: str | None, path: str) -> dict:
        try:
            return history.list_path(self.store, history.Resolved(repo, commit, None), split_path(path)).to_json()
        except TrunkError as exc:
            raise as_os_error(exc, f"{repo}@{(commit or '')[:12]}/{path}") from exc

    def stat(self, repo: str, commit: str | None, path: str) -> dict:
        try:
            entry = history.lookup(self.store, history.Resolved(repo, commit, None), split_path(path))
        except TrunkError as exc:
            raise as_os_error(exc, f"{repo}@{(commit or '')[:12]}/{path}") from exc
        return history.entry_summary(entry)

    def read(self, repo: str, commit: str, path: str, offset: int, length: int) -> bytes:
        where = f"{repo}@{commit[:12]}/{path}"
        try:
            entry = history.lookup_file(self.store, history.Resolved(repo, commit, None), split_path(path))
            return history.read_range(entry, offset, length, self.opened.read_blobs)
        except TrunkError as exc:
            raise as_os_error(exc, where) from exc

    def close(self) -> None:
        self.opened.close()
