"""The console's JSON API.

Each endpoint runs one or more control-socket handlers as the token's
holder (:class:`~.peer.HttpPeer`), so it sees what ``trunkfs`` would show
that uid and fails the way the socket does; :class:`ApiError` carries the
socket's error code and the HTTP status it maps to.  Endpoints take their
arguments as strings (names decoded from percent-escaped bytes, PEP 383
for bytes that are not UTF-8: docs/names.md)."""

from __future__ import annotations

import logging
import pwd
import re
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from ...store import history
from ...store.errors import NotFound, TrunkError
from ...store.names import split_path
from ..auth import READ, Caller, allows
from ..handlers import HANDLERS, Request
from ..handlers.base import first_error
from ..service import Service
from . import previews
from .peer import DataSink, HttpPeer
from .tokens import Holder

log = logging.getLogger(__name__)

STATUS_OF = {"not_found": 404, "permission_denied": 403, "invalid_argument": 400, "bad_request": 400,
             "unauthorized": 401, "conflict": 409, "busy": 503, "too_large": 413}
PAGE = 200                 # entries of a directory page by default
PAGE_MAX = 5000            # and at most
DIFF_PAGE = 500            # changes of a diff page by default
DIFF_COUNT_MAX = 10_000    # changes a diff page counts past itself, at most
GRAPH_PAGE = 100           # commits of a history page by default
GRAPH_MAX = 1000           # and at most
RAW_WINDOW = 8 << 20       # bytes of a download read per ``read`` call
COMMIT_ID = re.compile(r"[0-9a-f]{8,64}\Z")


class ApiError(Exception):
    def __init__(self, code: str, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.status = status or STATUS_OF.get(code, 500)


Params = dict[str, str]
Endpoint = Callable[["ConsoleApi", Holder, Params], Awaitable[Any]]
ENDPOINTS: dict[str, Endpoint] = {}


def endpoint(path: str) -> Callable[[Endpoint], Endpoint]:
    def register(fn: Endpoint) -> Endpoint:
        ENDPOINTS[path] = fn
        return fn
    return register


def param(params: Params, name: str, default: str | None = None) -> str:
    value = params.get(name, default)
    if value is None:
        raise ApiError("invalid_argument", f"missing parameter {name!r}")
    return value


def int_param(params: Params, name: str, default: int, high: int) -> int:
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    if not raw.isdigit() or not 0 <= int(raw) <= high:
        raise ApiError("invalid_argument", f"parameter {name!r} must be a number from 0 to {high}")
    return int(raw)


class ConsoleApi:
    def __init__(self, service: Service) -> None:
        self.service = service

    async def call(self, holder: Holder, op: str, args: dict, on_data: DataSink | None = None) -> tuple[Any, HttpPeer]:
        """Run the socket operation ``op`` as ``holder``: its result (the
        reply of a streaming one) and the peer holding what it sent."""
        peer = HttpPeer(holder.uid, holder.gid, on_data)
        req = Request(self.service, peer, op, args)
        try:
            result = await HANDLERS[op](req)
        except BaseExceptionGroup as group:
            raise self._error(op, first_error(group)) from None
        except trio.Cancelled:
            raise
        except Exception as exc:
            raise self._error(op, exc) from None
        if req.started:
            reply = peer.messages[0] if peer.messages else {}
            result = reply.get("result")
        return result, peer

    def _error(self, op: str, exc: BaseException) -> BaseException:
        if isinstance(exc, trio.Cancelled):
            return exc
        if isinstance(exc, TrunkError):
            return ApiError(exc.code, str(exc))
        log.error("console: internal error in %s", op, exc_info=exc)
        return ApiError("internal", f"internal error in {op}: {exc!r}")

    async def read_range(self, holder: Holder, repo: str, commit: str, path: str,
                         offset: int, length: int) -> bytes:
        """Bytes of a file at a commit, through the socket's ``read``."""
        _, peer = await self.call(holder, "read", {"repo": repo, "ref": commit, "path": path,
                                                   "offset": offset, "length": length})
        return b"".join(peer.data)

    async def resolve(self, holder: Holder, repo: str, ref: str) -> str:
        """The commit id ``ref`` names now (not_found for a branch without commits)."""
        found, _ = await self.call(holder, "resolve", {"repo": repo, "ref": ref})
        if not found["commit"]:
            raise ApiError("not_found", f"{repo}@{ref} has no commits yet")
        return str(found["commit"])

    async def file_at(self, holder: Holder, repo: str, ref: str, path: str) -> tuple[str, dict]:
        """The commit ``ref`` names and the file entry at ``path`` in it
        (invalid_argument for anything but a file)."""
        cid = await self.resolve(holder, repo, ref)
        entry = await self.entry(holder, repo, cid, path)
        if entry["type"] != "file":
            raise ApiError("invalid_argument", f"{repo}:{path} is a {entry['type']}, not a file")
        return cid, entry

    async def entry(self, holder: Holder, repo: str, commit: str, path: str) -> dict:
        found, _ = await self.call(holder, "stat", {"repo": repo, "ref": commit, "path": path})
        return dict(found["entry"])

    async def readable(self, holder: Holder, repo: str) -> bool:
        """Whether the holder may read ``repo`` (False for a missing repo)."""
        svc = self.service
        try:
            info = await svc.workers.run(svc.refs.get_repo, repo)
        except NotFound:
            return False
        caller = await svc.workers.run(Caller, holder.uid, holder.gid)   # reads the group database
        return allows(caller, info, READ)


# -- endpoints --------------------------------------------------------------------

@endpoint("whoami")
async def whoami(api: ConsoleApi, holder: Holder, params: Params) -> dict:
    try:
        user = pwd.getpwuid(holder.uid).pw_name
    except KeyError:
        user = str(holder.uid)
    return {"uid": holder.uid, "gid": holder.gid, "user": user}


@endpoint("repos")
async def repos(api: ConsoleApi, holder: Holder, params: Params) -> list:
    """Every repo the holder may read, with its branches, tags, size and last commit."""
    found, _ = await api.call(holder, "repo.list", {})
    out = []
    for repo in found:
        try:
            tags, _ = await api.call(holder, "tag.list", {"repo": repo["name"]})
            last = None
            if repo["head"]:
                last, _ = await api.call(holder, "show", {"repo": repo["name"], "ref": repo["head"]})
        except ApiError as exc:
            if exc.code != "not_found":    # deleted while listing: left out
                raise
            continue
        repo["tags"] = tags
        repo["last"] = last and {k: last[k] for k in ("id", "message", "author", "time", "origin")}
        out.append(repo)
    return out


@endpoint("refs")
async def refs(api: ConsoleApi, holder: Holder, params: Params) -> dict:
    repo = param(params, "repo")
    branches, _ = await api.call(holder, "branch.list", {"repo": repo})
    tags, _ = await api.call(holder, "tag.list", {"repo": repo})
    return {"repo": repo, "branches": branches, "tags": tags}


@endpoint("graph")
async def graph(api: ConsoleApi, holder: Holder, params: Params) -> dict:
    """A page of a ref's history through every parent: ``commits`` newest
    first and ``next``, the ``after`` of the next page (None at the end)."""
    repo, ref = param(params, "repo"), param(params, "ref", "main")
    limit = int_param(params, "limit", GRAPH_PAGE, GRAPH_MAX) or GRAPH_PAGE
    head = await api.resolve(holder, repo, ref)      # read permission on the repo, or an error
    after = params.get("after")
    starts = [head]
    if after:
        starts = after.split(",")
        if len(starts) > GRAPH_MAX or not all(COMMIT_ID.match(c) for c in starts):
            raise ApiError("invalid_argument", "after: commit ids separated by commas")
    svc = api.service

    def walk() -> tuple[list[dict], list[str]]:
        for cid in starts:      # only commits of this repo: a page never leaves it
            if svc.store.read_commit(cid).repo != repo:
                raise ApiError("invalid_argument", f"commit {cid} is not a commit of {repo}")
        return history.commit_graph(svc.store, starts, limit)
    try:
        commits, frontier = await svc.workers.run(walk)
    except NotFound as exc:
        raise ApiError("not_found", str(exc)) from None
    return {"repo": repo, "ref": ref, "head": head, "commits": commits,
            "next": ",".join(frontier) if frontier else None}


@endpoint("commit")
async def commit(api: ConsoleApi, holder: Holder, params: Params) -> dict:
    repo, ref = param(params, "repo"), param(params, "ref", "main")
    found, _ = await api.call(holder, "show", {"repo": repo, "ref": ref})
    prov, _ = await api.call(holder, "provenance", {"repo": repo, "ref": found["id"]})
    found["upstream"] = prov
    return dict(found)


@endpoint("tree")
async def tree(api: ConsoleApi, holder: Holder, params: Params) -> dict:
    """The entry at a path of a commit and, for a directory, a page of what it holds."""
    repo, ref, path = param(params, "repo"), param(params, "ref", "main"), param(params, "path", "/")
    offset = int_param(params, "offset", 0, 1 << 40)
    limit = int_param(params, "limit", PAGE, PAGE_MAX) or PAGE
    cid = await api.resolve(holder, repo, ref)
    entry = await api.entry(holder, repo, cid, path)
    out: dict[str, Any] = {"repo": repo, "ref": ref, "commit": cid, "path": path, "entry": entry}
    if entry["type"] == "dir":
        listing, _ = await api.call(holder, "ls", {"repo": repo, "ref": cid, "path": path,
                                                  "offset": offset, "limit": limit})
        out.update(entries=listing["entries"], total=listing["total"], offset=offset, limit=limit)
    return out


@endpoint("preview")
async def preview(api: ConsoleApi, holder: Holder, params: Params) -> dict:
    repo, ref, path = param(params, "repo"), param(params, "ref", "main"), param(params, "path")
    cid, entry = await api.file_at(holder, repo, ref, path)
    size = int(entry.get("size") or 0)
    head = await api.read_range(holder, repo, cid, path, 0, previews.PREVIEW_BYTES)

    loop = trio.lowlevel.current_trio_token()

    def read_range(offset: int, length: int) -> bytes:    # in a worker thread (pyarrow's own too)
        return trio.from_thread.run(api.read_range, holder, repo, cid, path, offset, length, trio_token=loop)
    name = split_path(path)[-1] if split_path(path) else path
    found = await trio.to_thread.run_sync(previews.preview, name, size, head, read_range)
    found.update(repo=repo, commit=cid, path=path)
    return found


@endpoint("diff")
async def diff(api: ConsoleApi, holder: Holder, params: Params) -> dict:
    """What changed from ref ``from`` to ref ``to`` (without ``from``: what
    ``to`` changed against its first parent): a page of the changes by
    path, and their ``counts`` by status (``total`` and ``complete``: the
    counting stops DIFF_COUNT_MAX changes past the page)."""
    repo, to = param(params, "repo"), param(params, "to")
    frm = params.get("from") or None
    offset = int_param(params, "offset", 0, 1 << 40)
    limit = int_param(params, "limit", DIFF_PAGE, PAGE_MAX) or DIFF_PAGE
    new = await api.resolve(holder, repo, to)        # read permission on the repo, or an error
    svc = api.service
    old = await api.resolve(holder, repo, frm) if frm else await svc.workers.run(
        history.first_parent, svc.store, new)
    found = await svc.workers.run(history.diff_page, svc.store, old, new, offset, limit, DIFF_COUNT_MAX)
    return dict(found, repo=repo)


@endpoint("filediff")
async def filediff(api: ConsoleApi, holder: Holder, params: Params) -> dict:
    """The text diff of one file between two commits (absent on a side: None)."""
    repo, path = param(params, "repo"), param(params, "path")
    sides: list[bytes | None] = []
    for ref in (params.get("from"), param(params, "to")):
        if not ref:
            sides.append(None)
            continue
        cid = await api.resolve(holder, repo, ref)
        try:
            entry = await api.entry(holder, repo, cid, path)
        except ApiError as exc:
            if exc.code != "not_found":
                raise
            sides.append(None)
            continue
        if entry["type"] != "file":
            return {"path": path, "kind": "binary"}
        if int(entry.get("size") or 0) > previews.DIFF_MAX:
            return {"path": path, "kind": "too_large", "limit": previews.DIFF_MAX}
        sides.append(await api.read_range(holder, repo, cid, path, 0, previews.DIFF_MAX))
    found = await trio.to_thread.run_sync(previews.text_diff, sides[0], sides[1], path)
    return dict(found, path=path)


@endpoint("status")
async def status(api: ConsoleApi, holder: Holder, params: Params) -> dict:
    found, _ = await api.call(holder, "status", {"repo": param(params, "repo"),
                                                 "branch": param(params, "branch", "main")})
    return dict(found)


@endpoint("dag")
async def dag(api: ConsoleApi, holder: Holder, params: Params) -> dict:
    """The pipeline DAG: repos and pipelines as nodes, each pipeline with
    the state of its last job; edges from input repo to pipeline to output."""
    pipelines, _ = await api.call(holder, "pipeline.list", {})
    jobs, _ = await api.call(holder, "job.list", {})
    readable, _ = await api.call(holder, "repo.list", {})
    last: dict[str, dict] = {}
    for job in jobs:                       # in creation order: the last one wins
        last[job["pipeline"]] = job
    nodes: dict[str, dict] = {f"repo:{r['name']}": {"id": f"repo:{r['name']}", "kind": "repo", "name": r["name"]}
                              for r in readable}
    edges = []
    for p in pipelines:
        spec = p["spec"]
        job = last.get(spec["name"])
        pid = f"pipeline:{spec['name']}"
        nodes[pid] = {"id": pid, "kind": "pipeline", "name": spec["name"],
                      "state": job["state"] if job else None, "job": job["id"] if job else None}
        for repo in (spec["input"]["repo"], spec["output"]):
            nodes.setdefault(f"repo:{repo}", {"id": f"repo:{repo}", "kind": "repo", "name": repo})
        edges.append({"from": f"repo:{spec['input']['repo']}", "to": pid})
        edges.append({"from": pid, "to": f"repo:{spec['output']}"})
    return {"nodes": list(nodes.values()), "edges": edges}


@endpoint("pipeline")
async def pipeline(api: ConsoleApi, holder: Holder, params: Params) -> dict:
    name = param(params, "name")
    found, _ = await api.call(holder, "pipeline.show", {"name": name})
    versions, _ = await api.call(holder, "pipeline.versions", {"name": name})
    jobs, _ = await api.call(holder, "job.list", {"pipeline": name})
    return {"pipeline": found, "versions": versions, "jobs": list(reversed(jobs))}


@endpoint("job")
async def job(api: ConsoleApi, holder: Holder, params: Params) -> dict:
    found, _ = await api.call(holder, "job.show", {"id": param(params, "id")})
    return dict(found)


@endpoint("job/logs")
async def job_logs(api: ConsoleApi, holder: Holder, params: Params) -> dict:
    args = {"id": param(params, "id")}
    if params.get("datum"):
        args["datum"] = params["datum"]
    found, _ = await api.call(holder, "job.logs", args)
    return dict(found)
