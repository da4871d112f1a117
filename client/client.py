"""The client of the trunkfs daemon: one typed method per socket operation.

A :class:`Client` holds one connection to the control socket; requests run
one after the other on it.  Methods return the typed results of
:mod:`trunkfs.client.results` (each with ``raw``, the daemon's JSON) and
raise :class:`~trunkfs.client.errors.ClientError` (with the protocol's
error ``code``) when the daemon refuses.  ``ref`` arguments are a branch
name, a commit id or a unique prefix of one; ``None`` means ``main``.

The results of history (:mod:`.history_results`) and of pipelines
(:mod:`.pipeline_results`) are imported by the methods that return them:
every ``trunkfs`` command imports this module, and one that does not show
commits or jobs (``put``, ``get``, ``repo`` ...) starts faster without them.
"""

from __future__ import annotations

import io
import os

from .connection import Connection
from .errors import DisconnectedError, ProtocolError, error_from_reply
from .results import (BranchInfo, CommitResult, DaemonInfo, Deleted, DiscardResult, FleetMember, FsckReport,
                      GetResult, MergeResult, PutResult, RepoAcl, RepoInfo, Result, RevertResult,
                      RmResult, StatsInfo, TagInfo)
from .transfer import Progress, local_bytes, open_regular_file, receive_file, receive_tree, send_put_entries
from .tree_writer import Destination

TYPE_CHECKING = False
if TYPE_CHECKING:  # only the type checker needs these (the CLI starts faster without them)
    from collections.abc import Iterator, Sequence
    from typing import Any, BinaryIO

    from .history_results import Change, CommitInfo, Diff, Entry, Listing, ProvenanceStep, Status
    from .pipeline_results import Event, ExecutorInfo, JobInfo, JobLogs, PipelineInfo


class Client:
    """``Client(path)`` connects to the daemon at ``path`` (default
    ``$TRUNKFS_SOCKET`` or the daemon's default socket); ``timeout`` (seconds)
    bounds every wait for the daemon.  Use it as a context manager, or call
    :meth:`close`."""

    def __init__(self, path: str | None = None, timeout: float | None = None) -> None:
        self.conn = Connection(path, timeout)
        self.path = self.conn.path
        self.timeout = timeout

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the raw protocol (for what has no method yet) ---------------------------

    @property
    def sock(self) -> Any:
        """The socket (for tests that speak the protocol by hand)."""
        return self.conn.sock

    def call(self, op: str, **args: Any) -> Any:
        """One request; the reply's result as raw JSON."""
        return self.conn.call(op, **args)

    def read_message(self) -> dict:
        return self.conn.read_message()

    def stream(self, op: str, **args: Any) -> tuple[dict, Iterator[Any]]:
        """A request answered as a stream (``stream``: true): the reply's
        header, and the items as the daemon sends them.  Read the items to
        their end before the next call on this client."""
        self.conn.send_request(op, dict(args, stream=True))
        header = self.conn.read_reply()

        def items() -> Iterator[Any]:
            while True:
                msg = self.conn.read_message()
                if msg.get("end") is True:
                    return
                batch = msg.get("items")
                if isinstance(batch, list):
                    yield from batch
                    continue
                self._stream_failed()
                if msg.get("ok") is False:
                    raise error_from_reply(msg)
                raise ProtocolError("bad_reply", f"{op}: the daemon sent {str(msg)[:80]} in a stream")
        return header, items()

    def _stream_failed(self) -> None:
        """A stream broke off: the connection is out of step, so close it."""
        self.conn.close()

    # -- the daemon --------------------------------------------------------------

    def ping(self) -> DaemonInfo:
        return DaemonInfo.from_raw(self.call("ping"))

    def stop(self) -> Result:
        """Ask the daemon to unmount and stop (root or the daemon's owner)."""
        return Result(raw=self.call("daemon.stop"))

    def stats(self) -> StatsInfo:
        return StatsInfo.from_raw(self.call("stats"))

    def console(self, revoke: bool = False) -> dict:
        """A web console URL with a new token for this uid (``revoke``: drop this uid's tokens)."""
        return dict(self.call("console", revoke=True) if revoke else self.call("console"))

    def fleet(self) -> list[FleetMember]:
        """The daemons sharing the store, most recently seen first."""
        return [FleetMember.from_raw(m) for m in self.call("fleet")]

    def fsck(self, *, rebuild_index: bool = False, read_data: bool = False) -> FsckReport:
        return FsckReport.from_raw(self.call("fsck", rebuild_index=rebuild_index, read_data=read_data))

    # -- repos and branches --------------------------------------------------------

    def repo_create(self, name: str) -> RepoInfo:
        return RepoInfo.from_raw(self.call("repo.create", name=name))

    def repo_list(self) -> list[RepoInfo]:
        return [RepoInfo.from_raw(r) for r in self.call("repo.list")]

    def repo_delete(self, name: str) -> Deleted:
        return Deleted.from_raw(self.call("repo.delete", name=name))

    def repo_acl(self, name: str, *, grant: Sequence[str] = (), revoke: Sequence[str] = ()) -> RepoAcl:
        """A repo's owner and access list; ``grant`` (``PRINCIPAL=ROLE``) and
        ``revoke`` (``PRINCIPAL``) change it first (the admin role needed).
        A principal is ``user:NAME``, ``group:NAME`` (or their numbers) or
        ``everyone``; a role ``read``, ``write`` or ``admin``."""
        args: dict[str, Any] = {"name": name}
        if grant:
            args["grant"] = list(grant)
        if revoke:
            args["revoke"] = list(revoke)
        return RepoAcl.from_raw(self.call("repo.acl", **args))

    def branch_create(self, repo: str, branch: str, from_ref: str | None = None) -> BranchInfo:
        """A new branch at ``from_ref`` (default: the head of main)."""
        return BranchInfo.from_raw(self.call("branch.create", repo=repo, branch=branch,
                                             **{"from": from_ref}))

    def branch_list(self, repo: str) -> list[BranchInfo]:
        return [BranchInfo.from_raw(b) for b in self.call("branch.list", repo=repo)]

    def branch_delete(self, repo: str, branch: str) -> Deleted:
        return Deleted.from_raw(self.call("branch.delete", repo=repo, branch=branch))

    def retention_set(self, repo: str, *, branch: str | None = None, keep_last: int | None = None,
                      keep_days: float | None = None) -> dict:
        """Keep only the ``keep_last`` newest commits and/or those younger than
        ``keep_days`` of a repo's history (of ``branch`` only, if given)."""
        return dict(self.call("retention.set", repo=repo, branch=branch, keep_last=keep_last,
                              keep_days=keep_days))

    def retention_show(self, repo: str) -> dict:
        return dict(self.call("retention.show", repo=repo))

    def retention_clear(self, repo: str, *, branch: str | None = None) -> dict:
        return dict(self.call("retention.clear", repo=repo, branch=branch))

    def gc(self, *, dry_run: bool = False, grace: float | None = None,
           max_unused: float | None = None) -> dict:
        """Collect the store's garbage (root only); the collector's report.
        ``grace``: seconds; objects younger than it are never deleted.
        ``max_unused``: a live pack with a larger share of garbage is repacked."""
        return dict(self.call("gc", dry_run=dry_run, grace=grace, max_unused=max_unused))

    def branch_reset(self, repo: str, branch: str, to: str) -> BranchInfo:
        """Move ``branch`` to the commit ``to`` names (admin only)."""
        return BranchInfo.from_raw(self.call("branch.reset", repo=repo, branch=branch, to=to))

    def tag_create(self, repo: str, tag: str, ref: str | None = None) -> TagInfo:
        """Name the commit ``ref`` names (default: the head of main) ``tag``, for good."""
        return TagInfo.from_raw(self.call("tag.create", repo=repo, tag=tag, ref=ref or "main"))

    def tag_list(self, repo: str) -> list[TagInfo]:
        return [TagInfo.from_raw(t) for t in self.call("tag.list", repo=repo)]

    def tag_delete(self, repo: str, tag: str) -> Deleted:
        return Deleted.from_raw(self.call("tag.delete", repo=repo, tag=tag))

    # -- writing a branch, one commit each ---------------------------------------

    def put(self, repo: str, paths: Sequence[str], *, branch: str | None = None, dest: str = "/",
            message: str = "", progress: Progress | None = None) -> PutResult:
        """Put local files and directories (with everything below them) into
        ``dest`` of a branch, as one commit; like ``cp -r``, each lands at
        ``dest/<its name>``.  ``progress(done, total)`` is called as bytes go out."""
        for local in paths:
            if not os.path.lexists(local):
                raise FileNotFoundError(2, "no such file or directory", local)
        total = local_bytes(paths) if progress else 0
        self.conn.send_request("put", {"repo": repo, "branch": branch, "dest": dest, "message": message})
        try:
            skipped = send_put_entries(self.conn, paths, progress, total)
        except (BrokenPipeError, ConnectionResetError):
            exc = self.conn.reply_after_broken_pipe()
            self._stream_failed()
            raise exc from None
        except BaseException:
            self._stream_failed()  # the daemon sees the hang-up and commits nothing
            raise
        result = PutResult.from_raw(self.conn.read_reply())
        result.skipped = list(skipped)
        result.skipped_reasons = skipped
        return result

    def put_files(self, repo: str, files: Sequence[tuple[str, str]], *, branch: str | None = None,
                  remove: Sequence[str] = (), dirs: Sequence[str] = (), message: str = "") -> PutResult:
        """One commit that removes ``remove``, makes the directories ``dirs``
        and writes each local file of ``files`` (``(path in the repo, local
        path)``) at its path, mode 0644."""
        reply = self._send_files("put", {"repo": repo, "branch": branch, "dest": "/", "message": message,
                                         "remove": list(remove)}, files, 0o644, dirs)
        return PutResult.from_raw(reply)

    def stage_files(self, repo: str, files: Sequence[tuple[str, str]], *, branch: str | None = None,
                    mode: int = 0o644) -> dict:
        """Stage local files on a branch at their paths (``(path in the repo,
        local path)``), as writes through the mount do; nothing is committed."""
        return dict(self._send_files("stage.put", {"repo": repo, "branch": branch}, files, mode))

    def _send_files(self, op: str, args: dict, files: Sequence[tuple[str, str]], mode: int,
                    dirs: Sequence[str] = ()) -> Any:
        """A request, then a stream of directories and whole local files at
        their paths, then its reply."""
        self.conn.send_request(op, args)
        try:
            for path in dirs:
                self.conn.send({"entry": {"path": path, "type": "dir", "mode": 0o755}})
            for path, local in files:
                with open_regular_file(local) as f:
                    self.conn.send({"entry": {"path": path, "type": "file", "mode": mode,
                                              "mtime": os.fstat(f.fileno()).st_mtime_ns}})
                    while data := f.read(1 << 20):
                        self.conn.send_data(data)
                self.conn.send({"eof": True})
            self.conn.send({"end": True})
        except (BrokenPipeError, ConnectionResetError):
            exc = self.conn.reply_after_broken_pipe()
            self._stream_failed()
            raise exc from None
        except BaseException:
            self._stream_failed()
            raise
        return self.conn.read_reply()

    def stage_mkdir(self, repo: str, paths: Sequence[str], *, branch: str | None = None) -> dict:
        """Stage directories (and their parents) on a branch; nothing is committed."""
        return dict(self.call("stage.mkdir", repo=repo, branch=branch, paths=list(paths)))

    def stage_rm(self, repo: str, paths: Sequence[str], *, branch: str | None = None) -> dict:
        """Stage the removal of files on a branch; nothing is committed."""
        return dict(self.call("stage.rm", repo=repo, branch=branch, paths=list(paths)))

    def rm(self, repo: str, paths: Sequence[str], *, branch: str | None = None,
           message: str = "") -> RmResult:
        return RmResult.from_raw(self.call("rm", repo=repo, branch=branch, paths=list(paths),
                                           message=message))

    def merge(self, repo: str, source: str, *, branch: str | None = None, message: str = "",
              strategy: str | None = None) -> MergeResult:
        """Merge ``source`` (a branch or commit of ``repo``) into ``branch``
        (default main): a fast-forward when the branch is behind, else a
        commit with two parents.  Paths both sides changed differently are a
        ``ConflictError`` (``details["paths"]``) unless ``strategy`` is
        ``"ours"`` or ``"theirs"``."""
        return MergeResult.from_raw(self.call("merge", repo=repo, source=source, branch=branch,
                                              message=message, strategy=strategy))

    def revert(self, repo: str, commit: str, *, branch: str | None = None,
               message: str = "") -> RevertResult:
        """Commit on ``branch`` (default main) the undoing of ``commit``, a
        commit of its history; a path a later commit changed again is a
        ``ConflictError``."""
        return RevertResult.from_raw(self.call("revert", repo=repo, commit=commit, branch=branch,
                                               message=message))

    # -- reading -------------------------------------------------------------------

    def ls(self, repo: str, path: str = "/", *, ref: str | None = None) -> Listing:
        from .history_results import Listing
        return Listing.from_raw(self.call("ls", repo=repo, ref=ref, path=path))

    def get(self, repo: str, path: str, local: str, *, ref: str | None = None,
            progress: Progress | None = None, preserve_setuid: bool = False) -> GetResult:
        """Copy a file or directory out, as ``cp -r`` does: into
        ``local/<name>`` when ``local`` is an existing directory, else to
        ``local`` itself.  Modes and mtimes come along, except setuid and
        setgid bits of files (and setuid of directories): those are set only
        with ``preserve_setuid`` in a process running as root.  What the
        caller may not read (by its mode, as on the mount) is left out and
        counted in the result's ``skipped``, as ``cp -r`` goes on past what
        it cannot read.  FIFOs, sockets and (in a process running as root)
        devices are made; a device otherwise is left out, named in the
        result's ``not_written`` with the reason.  Names of one hard-linked
        file in what is copied become hard links of one local file, as
        with ``cp -a``."""
        self.conn.send_request("get", {"repo": repo, "ref": ref, "path": path, "links": True})
        info = self.conn.read_reply()
        name = path.rstrip("/").rsplit("/", 1)[-1] or repo
        end: dict = {}
        not_written: dict[str, str] = {}
        try:
            dest = Destination.for_get(local, name)  # resolved once; below it nothing is followed
            try:
                files = receive_tree(self.conn, dest, progress, int(info.get("size") or 0), end.update,
                                     preserve_setuid, not_written)
            finally:
                dest.close()
        except BaseException:
            self._stream_failed()
            raise
        raw = {"path": dest.path, "files": files, "commit": info.get("commit")}
        if end.get("skipped"):
            raw.update(skipped=end["skipped"], skipped_paths=end.get("skipped_paths") or [])
        if not_written:
            raw["not_written"] = not_written
        return GetResult.from_raw(raw)

    def cat_to(self, repo: str, path: str, out: BinaryIO, *, ref: str | None = None) -> int:
        """Write the bytes of one file to ``out``; the number of bytes."""
        self.conn.send_request("get", {"repo": repo, "ref": ref, "path": path, "file_only": True})
        self.conn.read_reply()
        try:
            return receive_file(self.conn, out.write)
        except BaseException:
            self._stream_failed()
            raise

    def read(self, repo: str, path: str, *, ref: str | None = None, offset: int = 0,
             length: int = 64 << 20) -> tuple[bytes, dict]:
        """``length`` bytes of a file from ``offset`` (fewer at its end; at
        most 64 MiB a call), and what the daemon says of the file: its
        ``commit``, ``size`` and ``content`` id."""
        self.conn.send_request("read", {"repo": repo, "ref": ref, "path": path, "offset": offset,
                                        "length": length})
        info = self.conn.read_reply()
        buf = io.BytesIO()
        try:
            receive_file(self.conn, buf.write)
        except BaseException:
            self._stream_failed()
            raise
        return buf.getvalue(), info

    def cat(self, repo: str, path: str, *, ref: str | None = None) -> bytes:
        """The bytes of one file."""
        buf = io.BytesIO()
        self.cat_to(repo, path, buf, ref=ref)
        return buf.getvalue()

    def log(self, repo: str, *, ref: str | None = None, limit: int = 0) -> list[CommitInfo]:
        """Commits from ``ref`` back along first parents, newest first (all when ``limit`` is 0)."""
        from .history_results import CommitInfo
        return [CommitInfo.from_raw(c) for c in self.call("log", repo=repo, ref=ref, limit=limit)]

    def show(self, repo: str, ref: str | None = None) -> CommitInfo:
        from .history_results import CommitInfo
        return CommitInfo.from_raw(self.call("show", repo=repo, ref=ref))

    def diff_stream(self, repo: str, ref1: str = "main", ref2: str | None = None
                    ) -> tuple[dict, Iterator[Change]]:
        """:meth:`diff` as the daemon finds the changes: its ``from`` and
        ``to`` commits, and the changes, one at a time."""
        from .history_results import Change
        header, items = self.stream("diff", repo=repo, ref1=ref1, ref2=ref2)
        return header, (Change.from_raw(c) for c in items)

    def status_stream(self, repo: str, branch: str | None = None) -> tuple[dict, Iterator[Change]]:
        """:meth:`status`, streamed: repo, branch and head, then each change."""
        from .history_results import Change
        header, items = self.stream("status", repo=repo, branch=branch)
        return header, (Change.from_raw(c) for c in items)

    def ls_stream(self, repo: str, path: str = "/", *, ref: str | None = None) -> Iterator[Entry]:
        """:meth:`ls`, an entry at a time (a directory of any size)."""
        from .history_results import Entry
        _, items = self.stream("ls", repo=repo, ref=ref, path=path)
        return (Entry.from_raw(e) for e in items)

    def log_stream(self, repo: str, *, ref: str | None = None, limit: int = 0) -> Iterator[CommitInfo]:
        """:meth:`log`, a commit at a time."""
        from .history_results import CommitInfo
        _, items = self.stream("log", repo=repo, ref=ref, limit=limit)
        return (CommitInfo.from_raw(c) for c in items)

    def diff(self, repo: str, ref1: str = "main", ref2: str | None = None) -> Diff:
        """Paths changed from ``ref1`` to ``ref2``; without ``ref2``, what
        ``ref1`` changed against its parent."""
        from .history_results import Diff
        return Diff.from_raw(self.call("diff", repo=repo, ref1=ref1, ref2=ref2))

    def provenance(self, repo: str, ref: str | None = None) -> list[ProvenanceStep]:
        """The commit and every commit upstream it was derived from."""
        from .history_results import ProvenanceStep
        return [ProvenanceStep.from_raw(s) for s in self.call("provenance", repo=repo, ref=ref)]

    # -- a branch's staging area -------------------------------------------------

    def status(self, repo: str, branch: str | None = None) -> Status:
        from .history_results import Status
        return Status.from_raw(self.call("status", repo=repo, branch=branch))

    def commit(self, repo: str, *, branch: str | None = None, message: str = "",
               allow_empty: bool = False, progress: Progress | None = None,
               force: bool = False) -> CommitResult:
        """Commit a branch's staged changes; ``progress(done, total)`` is called
        as the daemon reports bytes stored.  A path the branch changed since
        it was staged is a ``ConflictError`` (``details["paths"]``) unless
        ``force`` (the staged version wins)."""
        self.conn.send_request("commit", {"repo": repo, "branch": branch, "message": message,
                                          "allow_empty": allow_empty, "force": force,
                                          "progress": progress is not None})
        while True:
            msg = self.conn.read_message()
            if "progress" in msg and "ok" not in msg:
                if progress:
                    progress(int(msg.get("progress") or 0), int(msg.get("total") or 0))
                continue
            break
        if not msg.get("ok"):
            raise error_from_reply(msg)
        return CommitResult.from_raw(msg.get("result") or {})

    def discard(self, repo: str, paths: Sequence[str] | None = None, *,
                branch: str | None = None) -> DiscardResult:
        """Drop staged changes: those at ``paths``, or all of them."""
        return DiscardResult.from_raw(self.call("discard", repo=repo, branch=branch,
                                                paths=list(paths) if paths else None))

    # -- pipelines and jobs ------------------------------------------------------

    def pipeline_create(self, spec: dict) -> PipelineInfo:
        from .pipeline_results import PipelineInfo
        return PipelineInfo.from_raw(self.call("pipeline.create", spec=spec))

    def pipeline_update(self, spec: dict, *, reprocess: bool = False) -> PipelineInfo:
        """A new version of a pipeline; with ``reprocess``, a job of it on the
        input branch's head (its id in ``.jobs``)."""
        from .pipeline_results import PipelineInfo
        return PipelineInfo.from_raw(self.call("pipeline.update", spec=spec,
                                               reprocess=True if reprocess else None))

    def executor_list(self) -> list[ExecutorInfo]:
        """The executors pipelines may name, and whether each answers now."""
        from .pipeline_results import ExecutorInfo
        return [ExecutorInfo.from_raw(e) for e in self.call("executor.list")]

    def pipeline_list(self) -> list[PipelineInfo]:
        from .pipeline_results import PipelineInfo
        return [PipelineInfo.from_raw(p) for p in self.call("pipeline.list")]

    def pipeline_show(self, name: str) -> PipelineInfo:
        from .pipeline_results import PipelineInfo
        return PipelineInfo.from_raw(self.call("pipeline.show", name=name))

    def pipeline_delete(self, name: str) -> Deleted:
        return Deleted.from_raw(self.call("pipeline.delete", name=name))

    def job_list(self, pipeline: str | None = None) -> list[JobInfo]:
        from .pipeline_results import JobInfo
        return [JobInfo.from_raw(j) for j in self.call("job.list", pipeline=pipeline)]

    def job_show(self, job_id: str) -> JobInfo:
        """A job by its id or a unique prefix of it."""
        from .pipeline_results import JobInfo
        return JobInfo.from_raw(self.call("job.show", id=job_id))

    def job_logs(self, job_id: str, datum: str | None = None) -> JobLogs:
        from .pipeline_results import JobLogs
        return JobLogs.from_raw(self.call("job.logs", id=job_id, datum=datum))

    def job_wait(self, job_id: str) -> JobInfo:
        """Block until the job has finished (bounded by the client's timeout)."""
        from .pipeline_results import JobInfo
        return JobInfo.from_raw(self.call("job.wait", id=job_id))

    def job_cancel(self, job_id: str) -> JobInfo:
        from .pipeline_results import JobInfo
        return JobInfo.from_raw(self.call("job.cancel", id=job_id))

    # -- events --------------------------------------------------------------------

    def watch(self, repo: str, branch: str | None = None, *,
              timeout: float | None = None) -> "Watch":
        """New commits of ``repo`` (of ``branch`` only, if given) and state
        changes of the jobs that read or write it, as they happen.  The watch
        has a connection of its own (this client stays usable); ``timeout``
        (default: the client's) bounds the wait for each event."""
        return Watch(self.path, repo, branch, self.timeout if timeout is None else timeout)


class Watch:
    """An iterator of :data:`~trunkfs.client.pipeline_results.Event`; close it
    (or leave its ``with`` block) to stop watching."""

    def __init__(self, path: str, repo: str, branch: str | None, timeout: float | None) -> None:
        self.conn = Connection(path, timeout)
        try:
            self.conn.send_request("watch", {"repo": repo, "branch": branch})
            self.conn.read_reply()
        except BaseException:
            self.conn.close()
            raise

    def __iter__(self) -> Iterator[Event]:
        return self

    def __next__(self) -> Event:
        from .pipeline_results import event_from_raw
        try:
            msg = self.conn.read_message()
        except DisconnectedError:
            self.close()
            raise
        if msg.get("ok") is False:
            self.close()
            raise error_from_reply(msg)
        event = msg.get("event")
        if not isinstance(event, dict):
            self.close()
            raise ProtocolError("bad_reply", "daemon sent a line that is not an event")
        return event_from_raw(event)

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> "Watch":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
