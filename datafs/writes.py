"""Writes through ``trunkfs://``: files written to a branch become commits.

A file opened ``"wb"`` on ``REPO[@BRANCH]/path`` is written to a local
temporary file.  When it is closed:

* inside a transaction (``with fs.transaction:``, or
  ``with fs.commit_on_exit("message"):``) it waits for the end of the
  transaction, and everything the transaction wrote and removed lands in
  **one commit per branch** when it ends, with nothing else (a ``put`` with
  removals; nothing at all when the transaction fails);
* outside one, it is staged on the branch through the daemon (``stage.put``,
  as a write through the mount is: ``trunkfs status`` shows it, the branch
  view serves it), and ``fs.commit("message")`` commits the branches this
  filesystem staged on (``trunkfs commit`` would too).

Writing to a commit or a tag is refused: they never change.
"""

from __future__ import annotations

import errno
import os
import tempfile
import threading
from dataclasses import dataclass, field
from typing import Any

from fsspec.spec import AbstractBufferedFile
from fsspec.transaction import Transaction

from .paths import Location


@dataclass
class BranchChanges:
    """What is pending for one branch: files written (path -> local temp
    file) and paths removed, in the order given (a later write or removal
    of a path replaces an earlier one)."""
    repo: str
    branch: str
    files: dict[str, str] = field(default_factory=dict)
    removed: set[str] = field(default_factory=set)
    dirs: set[str] = field(default_factory=set)

    def write(self, path: str, local: str) -> None:
        self.removed.discard(path)
        old = self.files.pop(path, None)
        if old is not None:
            _unlink(old)
        self.files[path] = local

    def remove(self, path: str) -> None:
        old = self.files.pop(path, None)
        if old is not None:
            _unlink(old)
        self.removed.add(path)

    def drop(self) -> None:
        for local in self.files.values():
            _unlink(local)
        self.files.clear()
        self.removed.clear()
        self.dirs.clear()


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


class Pending:
    """The changes not yet committed, by branch (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.branches: dict[tuple[str, str], BranchChanges] = {}

    def of(self, repo: str, branch: str) -> BranchChanges:
        with self._lock:
            return self.branches.setdefault((repo, branch), BranchChanges(repo, branch))

    def take(self) -> list[BranchChanges]:
        with self._lock:
            out = [b for b in self.branches.values() if b.files or b.removed or b.dirs]
            self.branches = {}
        return out


class TrunkWriteFile(AbstractBufferedFile):
    """A file being written to a branch: its bytes go to a local temporary
    file; closing it (or the transaction's end) hands it to the pending
    changes of the filesystem."""

    def __init__(self, fs: Any, path: str, location: Location, branch: str, **kwargs: Any) -> None:
        self.target = location
        self.branch = branch
        fd, self.local = tempfile.mkstemp(prefix="trunkfs-write-")
        self._out = os.fdopen(fd, "wb")
        super().__init__(fs, path, "wb", **kwargs)

    def _initiate_upload(self) -> None:
        return None

    def _upload_chunk(self, final: bool = False) -> bool:
        self._out.write(self.buffer.getvalue())
        if final:
            self._out.close()
            if self.autocommit:
                self.commit()
        return True

    def commit(self) -> None:
        """Closed outside a transaction: stage it now.  At the end of a
        transaction: hand it to the transaction's changes."""
        if self.autocommit:
            try:
                self.fs.stage_written(self.target, self.branch, self.local)
            finally:
                _unlink(self.local)
        else:
            self.fs.pending.of(self.target.repo, self.branch).write(self.target.path, self.local)

    def discard(self) -> None:
        if not self._out.closed:
            self._out.close()
        _unlink(self.local)


class TrunkTransaction(Transaction):
    """fsspec's transaction, ending in one commit per branch written (with
    whatever was pending before it); a failed one leaves nothing of its own."""

    def __init__(self, fs: Any, message: str = "", **kwargs: Any) -> None:
        super().__init__(fs, **kwargs)
        self.message = message
        self.removed: list[tuple[str, str, str]] = []   # (repo, branch, path)
        self.made: list[tuple[str, str, str]] = []      # directories: (repo, branch, path)

    def complete(self, commit: bool = True) -> None:
        files: list[Any] = list(self.files)
        self.files.clear()
        removed, self.removed = self.removed, []
        made, self.made = self.made, []
        self.fs._intrans = False
        self.fs._transaction = None
        if not commit:
            for f in files:
                f.discard()
            return
        for f in files:
            f.commit()
        for repo, branch, path in removed:
            self.fs.pending.of(repo, branch).remove(path)
        for repo, branch, path in made:
            self.fs.pending.of(repo, branch).dirs.add(path)
        self.fs.commit_pending(self.message or "trunkfs:// transaction")


def refuse_write(path: str, what: str) -> PermissionError:
    return PermissionError(errno.EROFS, f"trunkfs://{path}: {what}")
