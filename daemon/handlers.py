"""The operations of the control socket, one coroutine each.

Every handler gets the :class:`Request` (service, connection, caller's
credentials, arguments) and returns the JSON result of its reply; streaming
handlers also read or write entries and data frames on the connection.
"""

from __future__ import annotations

import logging
import os
import time
import stat as statmod
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import trio

from ..store.diff import diff_trees
from ..store.errors import InvalidArgument, NotFound
from ..store.fsck import fsck
from ..store.names import check_name, join_path, split_path
from ..store.objects import DIR, FILE, SYMLINK, Commit
from ..store.treeedit import TreeEditor
from . import protocol
from .connection import Connection, ProtocolError
from .service import Service, author_of

log = logging.getLogger(__name__)

Handler = Callable[["Request"], Awaitable[Any]]
HANDLERS: dict[str, Handler] = {}
_MISSING = object()


def op(name: str) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        HANDLERS[name] = fn
        return fn
    return register


@dataclass
class Request:
    service: Service
    conn: Connection
    op: str
    args: dict
    started: bool = False  # a streaming handler has sent its reply already

    def arg(self, name: str, kind: type | tuple = str, default: Any = _MISSING) -> Any:
        value = self.args.get(name, _MISSING)
        if value is _MISSING or (value is None and default is not _MISSING):
            if default is _MISSING:
                raise InvalidArgument(f"{self.op}: missing argument {name!r}")
            return default
        if not isinstance(value, kind) or (isinstance(value, bool) and kind in (int, (int,))):
            kinds = kind if isinstance(kind, tuple) else (kind,)
            raise InvalidArgument(f"{self.op}: argument {name!r} must be {' or '.join(k.__name__ for k in kinds)}")
        return value

    def repo(self) -> str:
        return check_name(self.arg("repo"), "repo")

    @property
    def author(self) -> dict:
        return author_of(self.conn.uid)


def _entry_summary(e: dict) -> dict:
    out = {"name": e["name"], "type": e["type"], "mode": e.get("mode"), "mtime": e.get("mtime")}
    if e["type"] in (FILE, DIR):
        out["size"] = e.get("size", 0)
    if e["type"] == DIR:
        out["files"] = e.get("files", 0)
    if e["type"] == SYMLINK:
        out["target"] = e.get("target")
    return out


def _commit_summary(cid: str, c: Commit) -> dict:
    return {"id": cid, "repo": c.repo, "parents": c.parents, "message": c.message,
            "author": c.author, "time": c.time, "origin": c.origin, "provenance": c.provenance,
            "tree": c.tree, "size": c.size, "files": c.files}


def first_error(group: BaseExceptionGroup) -> BaseException:
    """The exception that matters in a nursery's group (not a Cancelled)."""
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            exc = first_error(exc)
        if not isinstance(exc, trio.Cancelled):
            return exc
    return group.exceptions[0]


# -- meta ---------------------------------------------------------------------

@op("ping")
async def ping(req: Request) -> dict:
    from .. import __version__
    return {"version": __version__, "pid": os.getpid(), "uid": req.conn.uid}


@op("daemon.stop")
async def daemon_stop(req: Request) -> dict:
    if req.conn.uid not in (0, os.getuid()):
        raise ProtocolError(protocol.PERMISSION_DENIED, "only root or the daemon's owner may stop it")
    req.service.stop_requested.set()
    return {"stopping": True}


@op("stats")
async def stats(req: Request) -> dict:
    out = await req.service.run(req.service.store.stats)
    if req.service.cache is not None:
        out["cache"] = req.service.cache.stats()
    return out


@op("fsck")
async def fsck_op(req: Request) -> dict:
    svc = req.service
    rebuilt = None
    if req.arg("rebuild_index", bool, False):
        rebuilt = await svc.run(svc.store.rebuild_index)
    report = await svc.run(fsck, svc.store, req.arg("read_data", bool, False))
    out = report.to_json()
    if rebuilt is not None:
        out["rebuilt_index"] = rebuilt
    return out


# -- repos and branches -------------------------------------------------------

@op("repo.create")
async def repo_create(req: Request) -> dict:
    info = await req.service.run(req.service.refs.create_repo, req.arg("name"))
    req.service.changed(info.name, None)
    return {"name": info.name, "id": info.id}


@op("repo.list")
async def repo_list(req: Request) -> list:
    refs = req.service.refs

    def listing() -> list:
        out = []
        for info in refs.list_repos():
            try:
                branches = refs.list_branches(info.name)
            except NotFound:
                continue
            head = branches.get("main")
            size = req.service.store.read_commit(head).size if head else 0
            out.append({"name": info.name, "created": info.created, "branches": sorted(branches),
                        "head": head, "size": size})
        return out
    return await req.service.run(listing)


@op("repo.delete")
async def repo_delete(req: Request) -> dict:
    name = req.arg("name")
    try:
        await req.service.run(req.service.refs.delete_repo, name)
    finally:
        req.service.changed(name, None)
    return {"deleted": name}


@op("branch.create")
async def branch_create(req: Request) -> dict:
    svc = req.service
    repo = req.repo()
    branch = check_name(req.arg("branch"), "branch")
    start = req.arg("from", str, "main")
    commit, _ = await svc.run(svc.refs.resolve, repo, start)
    await svc.run(svc.refs.create_branch, repo, branch, commit)
    svc.changed(repo, branch)
    return {"repo": repo, "branch": branch, "head": commit}


@op("branch.list")
async def branch_list(req: Request) -> list:
    branches = await req.service.run(req.service.refs.list_branches, req.repo())
    return [{"name": b, "head": h} for b, h in branches.items()]


@op("branch.delete")
async def branch_delete(req: Request) -> dict:
    repo = req.repo()
    branch = check_name(req.arg("branch"), "branch")
    async with req.service.branch_lock(repo, branch):
        try:
            await req.service.run(req.service.refs.delete_branch, repo, branch)
        finally:
            req.service.changed(repo, branch)
    return {"repo": repo, "deleted": branch}


# -- reading ------------------------------------------------------------------

async def _resolve(req: Request) -> tuple[str, str | None, str | None]:
    repo = req.repo()
    ref = req.arg("ref", str, "main")
    commit, branch = await req.service.run(req.service.refs.resolve, repo, ref)
    return repo, commit, branch


def _lookup(store, commit: Commit | None, parts: list[str], repo: str) -> dict:
    """The entry at ``parts`` in a commit (the root is a synthetic dir entry)."""
    entry = {"name": "", "type": DIR, "mode": 0o755, "mtime": 0,
             "tree": commit.tree if commit else None,
             "size": commit.size if commit else 0, "files": commit.files if commit else 0}
    for i, name in enumerate(parts):
        if entry["type"] != DIR:
            raise NotFound(f"{repo}:{join_path(parts[:i])} is not a directory")
        found = None
        if entry["tree"]:
            for e in store.read_tree(entry["tree"]):
                if e["name"] == name:
                    found = e
                    break
        if found is None:
            raise NotFound(f"{repo}:{join_path(parts[:i + 1])} does not exist")
        entry = found
    return entry


@op("ls")
async def ls(req: Request) -> dict:
    svc = req.service
    repo, cid, _ = await _resolve(req)
    parts = split_path(req.arg("path", str, "/"))

    def listing() -> dict:
        commit = svc.store.read_commit(cid) if cid else None
        entry = _lookup(svc.store, commit, parts, repo)
        if entry["type"] != DIR:
            return {"commit": cid, "path": join_path(parts), "entries": [_entry_summary(entry)]}
        entries = svc.store.read_tree(entry["tree"]) if entry.get("tree") else []
        return {"commit": cid, "path": join_path(parts),
                "entries": [_entry_summary(e) for e in entries]}
    return await svc.run(listing)


@op("get")
async def get(req: Request) -> None:
    """Reply, then stream the entries below ``path`` (the file itself for a file)."""
    svc = req.service
    repo, cid, _ = await _resolve(req)
    parts = split_path(req.arg("path", str, "/"))
    only_file = req.arg("file_only", bool, False)
    commit = await svc.run(svc.store.read_commit, cid) if cid else None
    entry = await svc.run(_lookup, svc.store, commit, parts, repo)
    if only_file and entry["type"] != FILE:
        raise InvalidArgument(f"{repo}:{join_path(parts)} is a {'directory' if entry['type'] == DIR else entry['type']}, not a file")
    conn = req.conn
    await conn.send(protocol.ok_reply({"commit": cid, "type": entry["type"],
                                       "size": entry.get("size", 0), "files": entry.get("files", 1)}))
    req.started = True

    async def send_entry(e: dict, rel: str) -> None:
        head = {"path": rel, "type": e["type"], "mode": e.get("mode"), "mtime": e.get("mtime")}
        if e["type"] == SYMLINK:
            head["target"] = e.get("target", "")
            await conn.send({"entry": head})
        elif e["type"] == FILE:
            head["size"] = e.get("size", 0)
            await conn.send({"entry": head})
            it = svc.store.iter_file(e)
            while True:
                data = await svc.run(next, it, None)
                if data is None:
                    break
                await conn.send_data(data)
            await conn.send({"eof": True})
        else:
            await conn.send({"entry": head})
            entries = await svc.run(svc.store.read_tree, e["tree"]) if e.get("tree") else []
            for child in entries:
                await send_entry(child, f"{rel}/{child['name']}" if rel else child["name"])

    await send_entry(entry, "")
    await conn.send({"end": True})
    return None


@op("log")
async def log_op(req: Request) -> list:
    svc = req.service
    repo, cid, _ = await _resolve(req)
    limit = req.arg("limit", int, 0)

    def walk() -> list:
        out = []
        cur = cid
        while cur and (not limit or len(out) < limit):
            c = svc.store.read_commit(cur)
            out.append(_commit_summary(cur, c))
            cur = c.parents[0] if c.parents else None
        return out
    return await svc.run(walk)


@op("show")
async def show(req: Request) -> dict:
    svc = req.service
    repo, cid, branch = await _resolve(req)
    if cid is None:
        raise NotFound(f"branch {repo}@{branch} has no commits yet")
    commit = await svc.run(svc.store.read_commit, cid)
    out = _commit_summary(cid, commit)
    out["branch"] = branch
    return out


@op("diff")
async def diff(req: Request) -> dict:
    svc = req.service
    repo = req.repo()
    ref1 = req.arg("ref1", str, "main")
    ref2 = req.arg("ref2", str, None)

    def compute() -> dict:
        c1, _ = svc.refs.resolve(repo, ref1)
        if ref2 is None:  # one ref: what that commit changed against its parent
            new = c1
            old = svc.store.read_commit(c1).parents[0] if c1 and svc.store.read_commit(c1).parents else None
        else:
            old = c1
            new, _ = svc.refs.resolve(repo, ref2)
        t_old = svc.store.read_commit(old).tree if old else None
        t_new = svc.store.read_commit(new).tree if new else None
        changes = [{"status": s, "path": p} for s, p in diff_trees(svc.store, t_old, t_new)]
        return {"from": old, "to": new, "changes": changes}
    return await svc.run(compute)


# -- pipelines ----------------------------------------------------------------

def _owner(req: Request) -> dict:
    return {"uid": req.conn.uid, "gid": req.conn.gid}


@op("pipeline.create")
async def pipeline_create(req: Request) -> dict:
    registry = req.service.pipelines
    pipeline = await req.service.run(registry.create, req.arg("spec", dict), _owner(req))
    req.service.changed(pipeline.spec.output, None)
    return pipeline.to_json()


@op("pipeline.update")
async def pipeline_update(req: Request) -> dict:
    svc = req.service
    pipeline = await svc.run(svc.pipelines.update, req.arg("spec", dict), _owner(req))
    out = pipeline.to_json()
    if req.arg("reprocess", bool, False):  # run the new version on the input's current head
        spec = pipeline.spec
        head, _ = await svc.run(svc.refs.read_branch, spec.input_repo, spec.input_branch)
        out["jobs"] = [await svc.jobs.enqueue(pipeline, head)] if head else []
    return out


@op("pipeline.list")
async def pipeline_list(req: Request) -> list:
    registry = req.service.pipelines
    return [p.to_json() for p in await req.service.run(registry.list)]


@op("pipeline.show")
async def pipeline_show(req: Request) -> dict:
    registry = req.service.pipelines
    pipeline, _ = await req.service.run(registry.get, req.arg("name"))
    return pipeline.to_json()


@op("pipeline.delete")
async def pipeline_delete(req: Request) -> dict:
    registry = req.service.pipelines
    name = req.arg("name")
    await req.service.run(registry.delete, name)
    return {"deleted": name}


# -- jobs ---------------------------------------------------------------------

def _job_summary(job: dict, logs: bool = False) -> dict:
    out = {k: v for k, v in job.items() if k != "logs"}
    if job.get("started"):
        out["duration"] = round((job.get("finished") or time.time()) - job["started"], 3)
    if logs:
        out["logs"] = job.get("logs", {})
    return out


@op("job.list")
async def job_list(req: Request) -> list:
    return [_job_summary(j) for j in req.service.jobs.list(req.arg("pipeline", str, None))]


@op("job.show")
async def job_show(req: Request) -> dict:
    return _job_summary(req.service.jobs.get(req.arg("id")))


@op("job.logs")
async def job_logs(req: Request) -> dict:
    job = req.service.jobs.get(req.arg("id"))
    logs = job.get("logs", {})
    datum = req.arg("datum", str, None)
    if datum is not None:
        if datum not in logs:
            raise NotFound(f"job {job['id']} has no datum {datum!r} (datums that ran: {', '.join(logs) or 'none'})")
        logs = {datum: logs[datum]}
    return {"id": job["id"], "state": job["state"], "error": job.get("error"), "logs": logs}


@op("job.wait")
async def job_wait(req: Request) -> dict:
    return _job_summary(await req.service.jobs.wait(req.arg("id")))


@op("job.cancel")
async def job_cancel(req: Request) -> dict:
    return _job_summary(await req.service.jobs.cancel(req.arg("id")))


@op("watch")
async def watch(req: Request) -> None:
    """Stream events until the client hangs up: new commits of ``repo``
    (``branch`` if given) and state changes of jobs that read or write it."""
    svc = req.service
    repo = req.repo()
    branch = req.arg("branch", str, None)
    await svc.run(svc.refs.get_repo, repo)
    events = svc.subscribe()
    await req.conn.send(protocol.ok_reply({"watching": repo, "branch": branch}))
    req.started = True

    def wanted(e: dict) -> bool:
        if e["type"] == "commit":
            return e["repo"] == repo and (branch is None or e["branch"] == branch)
        return e["input"]["repo"] == repo or e.get("output") == repo

    try:
        async with trio.open_nursery() as nursery:
            async def hangup() -> None:  # the client closing its end ends the watch
                await req.conn.wait_closed()
                nursery.cancel_scope.cancel()
            nursery.start_soon(hangup)
            async with events:
                async for event in events:
                    if wanted(event):
                        await req.conn.send({"event": event})
    except BaseExceptionGroup as group:
        raise first_error(group) from None
    return None


@op("provenance")
async def provenance(req: Request) -> list:
    """Walk a commit's provenance upstream through every stage of the DAG."""
    svc = req.service
    repo, cid, _ = await _resolve(req)

    def walk() -> list:
        out, stack, seen = [], [(repo, cid, 0)], set()
        while stack:
            r, c, depth = stack.pop()
            if not c or c in seen:
                continue
            seen.add(c)
            commit = svc.store.read_commit(c)
            out.append({"depth": depth, "repo": r, "commit": c, "origin": commit.origin,
                        "provenance": commit.provenance})
            for p in reversed(commit.provenance):
                stack.append((p["repo"], p["commit"], depth + 1))
        return out
    return await svc.run(walk)


# -- writing ------------------------------------------------------------------

@op("rm")
async def rm(req: Request) -> dict:
    svc = req.service
    repo = req.repo()
    branch = await svc.writable_branch(repo, req.arg("branch", str, "main"))
    paths = req.arg("paths", list)
    if not paths or not all(isinstance(p, str) for p in paths):
        raise InvalidArgument("rm: 'paths' must be a non-empty list of paths")
    parts = [split_path(p) for p in paths]

    def edit(editor: TreeEditor) -> None:
        for p in parts:
            editor.remove(join_path(p))
    session = svc.store.session()
    try:
        cid, commit, jobs = await svc.commit_edit(repo, branch, edit, session,
                                                  message=req.arg("message", str, "") or f"rm {' '.join(paths)}",
                                                  author=req.author)
    except BaseException:
        session.abort()
        raise
    return {"commit": cid, "removed": [join_path(p) for p in parts], "jobs": jobs}


_MODE_MASK = 0o7777


def _mode(head: dict, default: int) -> int:
    mode = head.get("mode", default)
    if not isinstance(mode, int) or isinstance(mode, bool):
        raise InvalidArgument("entry mode must be an integer")
    return statmod.S_IMODE(mode) & _MODE_MASK


def _mtime(head: dict) -> int | None:
    mtime = head.get("mtime")
    if mtime is None:
        return None
    if not isinstance(mtime, int) or isinstance(mtime, bool):
        raise InvalidArgument("entry mtime must be an integer (nanoseconds)")
    return mtime


@op("put")
async def put(req: Request) -> dict:
    """Receive entries and file bytes, then commit them in one commit."""
    svc = req.service
    conn = req.conn
    repo = req.repo()
    branch = await svc.writable_branch(repo, req.arg("branch", str, "main"))
    dest = split_path(req.arg("dest", str, "/"))
    message = req.arg("message", str, "")
    edits: list[tuple[str, str, Any]] = []   # (kind, path, entry or (mode, mtime))
    session = svc.store.session()
    files = 0
    total = 0
    work_send, work_recv = trio.open_memory_channel(4)

    async def ingest_worker() -> None:
        async with work_recv:
            async for kind, ingest, payload in work_recv:
                if kind == "data":
                    if len(payload) < 256 * 1024:
                        ingest.write(payload)
                    else:
                        await svc.run(ingest.write, payload)
                else:  # finish; a small file's last chunk is cheaper inline than a thread hop
                    if ingest.size < 256 * 1024:
                        chunks, size = ingest.finish()
                    else:
                        chunks, size = await svc.run(ingest.finish)
                    path, head = payload
                    edits.append(("file", path, {"type": FILE, "mode": _mode(head, 0o644),
                                                 "mtime": _mtime(head) or 0, "size": size,
                                                 "chunks": chunks}))

    try:
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(ingest_worker)
                async with work_send:
                    while True:
                        msg = await conn.read_message()
                        if msg is None:
                            raise ProtocolError(protocol.BAD_REQUEST, "client hung up before the end of put", fatal=True)
                        if msg.get("end") is True:
                            break
                        head = msg.get("entry")
                        if not isinstance(head, dict) or not isinstance(head.get("path"), str):
                            raise ProtocolError(protocol.BAD_REQUEST, "expected an entry, a data frame or end", fatal=True)
                        path = join_path(dest + split_path(head["path"]))
                        kind = head.get("type")
                        if kind == DIR:
                            edits.append(("dir", path, (_mode(head, 0o755), _mtime(head))))
                        elif kind == SYMLINK:
                            target = head.get("target")
                            if not isinstance(target, str) or not target or "\0" in target:
                                raise InvalidArgument(f"symlink {path} needs a non-empty target")
                            edits.append(("file", path, {"type": SYMLINK, "mode": 0o777,
                                                         "mtime": _mtime(head) or 0, "target": target}))
                        elif kind == FILE:
                            if path == "/":
                                raise InvalidArgument("a file cannot be put at the repo's root path")
                            ingest = session.ingest()
                            while True:
                                frame = await conn.read_message()
                                if frame is None:
                                    raise ProtocolError(protocol.BAD_REQUEST, "client hung up in the middle of a file", fatal=True)
                                if frame.get("eof") is True:
                                    break
                                data = await conn.read_frame_body(frame)
                                total += len(data)
                                await work_send.send(("data", ingest, data))
                            await work_send.send(("finish", ingest, (path, head)))
                            files += 1
                        else:
                            raise InvalidArgument(f"entry {path}: unknown type {kind!r}")
        except BaseExceptionGroup as group:
            raise first_error(group) from None

        def edit(editor: TreeEditor) -> None:
            for kind, path, value in edits:
                if kind == "dir":
                    editor.mkdir(path, *value)
                else:
                    editor.put(path, value)
        cid, commit, jobs = await svc.commit_edit(repo, branch, edit, session,
                                                  message=message or f"put {files} files",
                                                  author=req.author)
    except BaseException:
        session.abort()
        raise
    return {"commit": cid, "branch": branch, "files": files, "bytes": total,
            "new_bytes": session.new_bytes, "size": commit.size, "jobs": jobs}


# -- staging: status, commit, discard ---------------------------------------------------


def _staging(svc: Service):
    if svc.staging is None:
        raise InvalidArgument("this daemon has no staging area")
    return svc.staging


@op("status")
async def status(req: Request) -> dict:
    """Staged changes of a branch against its head: [{status: A|M|D, path}]."""
    svc = req.service
    repo = req.repo()
    branch = await svc.writable_branch(repo, req.arg("branch", str, "main"))
    return await _staging(svc).status(svc, repo, branch)


@op("commit")
async def commit_staged(req: Request) -> dict:
    """Cut a branch's staged changes into a commit.  With ``progress`` true,
    ``{"progress": bytes done, "total": bytes}`` lines precede the reply."""
    svc = req.service
    repo = req.repo()
    branch = await svc.writable_branch(repo, req.arg("branch", str, "main"))
    message = req.arg("message", str, "")
    allow_empty = req.arg("allow_empty", bool, False)
    want_progress = req.arg("progress", bool, False)
    state = {"done": 0, "total": 0}

    def progress(done: int, total: int) -> None:  # from a worker thread
        state["done"], state["total"] = done, total
    result: dict = {}
    try:
        async with trio.open_nursery() as nursery:
            async def report() -> None:
                last = -1
                while True:
                    await trio.sleep(0.25)
                    if state["done"] != last:
                        last = state["done"]
                        await req.conn.send({"progress": state["done"], "total": state["total"]})
            if want_progress:
                nursery.start_soon(report)
            cid, commit, jobs = await _staging(svc).commit(
                svc, repo, branch, message=message, author=req.author, allow_empty=allow_empty,
                progress=progress)
            result = {"commit": cid, "repo": repo, "branch": branch, "size": commit.size,
                      "files": commit.files, "jobs": jobs}
            nursery.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        raise first_error(group) from None
    return result


@op("discard")
async def discard(req: Request) -> dict:
    svc = req.service
    repo = req.repo()
    branch = await svc.writable_branch(repo, req.arg("branch", str, "main"))
    paths = req.arg("paths", list, [])
    if not all(isinstance(p, str) for p in paths):
        raise InvalidArgument("discard: 'paths' must be a list of paths")
    dropped = await _staging(svc).discard(repo, branch, paths)
    svc.changed(repo, branch)
    return {"repo": repo, "branch": branch, "discarded": dropped}
