"""Pipelines and their jobs, and ``watch`` (commit and job events)."""

from __future__ import annotations

import trio

from ...pipelines.executorconfig import check_executor
from ...pipelines.jobs import Job
from ...pipelines.registry import Pipeline
from ...pipelines.spec import PipelineSpec
from ...store.errors import NotFound
from ...store.objects import RepoInfo
from ...store.refs import Refs
from .. import protocol
from ..auth import ADMIN, READ, WRITE, Caller, PermissionDenied, allows, require
from .base import Request, first_error, op


HIDDEN = "<hidden>"   # what an env value shows to those who may not see it


def _owner(req: Request) -> dict:
    return {"uid": req.conn.uid, "gid": req.conn.gid}


def _owner_caller(pipeline: Pipeline) -> Caller:
    """Whom the pipeline runs as."""
    return Caller(int(pipeline.owner.get("uid", 0)), int(pipeline.owner.get("gid", 0)))


def _repo_or_none(refs: Refs, name: str) -> RepoInfo | None:
    try:
        return refs.get_repo(name)
    except NotFound:
        return None


def _may_use(refs: Refs, who: Caller, spec: PipelineSpec, what: str) -> None:
    """``read`` on the input repo and ``write`` on the output repo (when it
    exists: a missing one is made, owned by the pipeline's owner)."""
    require(who, refs.get_repo(spec.input_repo), READ, what)
    output = _repo_or_none(refs, spec.output)
    if output is not None:
        require(who, output, WRITE, what)


def _may_manage(refs: Refs, caller: Caller, pipeline: Pipeline, what: str) -> None:
    """The pipeline's owner or an admin of its output repo (root is both)."""
    if caller.is_root or caller.uid == int(pipeline.owner.get("uid", -1)):
        return
    output = _repo_or_none(refs, pipeline.spec.output)
    if output is None or not allows(caller, output, ADMIN):
        raise PermissionDenied(f"{what} of pipeline {pipeline.name!r} is for its owner (uid "
                               f"{pipeline.owner.get('uid')}) or an admin of its output repo "
                               f"{pipeline.spec.output!r}; uid {caller.uid} is neither")


def _may_see_secrets(refs: Refs, caller: Caller, pipeline: Pipeline) -> bool:
    try:
        _may_manage(refs, caller, pipeline, "")
    except PermissionDenied:
        return False
    return True


def _shown(refs: Refs, caller: Caller, pipeline: Pipeline) -> dict:
    """A pipeline as the caller may see it: ``env`` values hidden but to its
    owner and the admins of its output repo."""
    out = pipeline.to_json()
    env = out["spec"].get("transform", {}).get("env")
    if env and not _may_see_secrets(refs, caller, pipeline):
        out["spec"]["transform"]["env"] = {k: HIDDEN for k in env}
    return out


@op("pipeline.create")
async def pipeline_create(req: Request) -> dict:
    """``read`` on the input and ``write`` on the output repo (a missing one
    is made, owned by the caller); the caller owns the pipeline."""
    svc = req.service
    caller = await req.who()

    def authorize(spec: PipelineSpec, old: Pipeline | None) -> None:
        check_executor(spec.executor, svc.jobs.executors)
        _may_use(svc.refs, caller, spec, "pipeline.create")
    pipeline = await svc.workers.run(svc.pipelines.create, req.arg("spec", dict), _owner(req), authorize)
    svc.heads.changed(pipeline.spec.output, None)
    return pipeline.to_json()


@op("pipeline.update")
async def pipeline_update(req: Request) -> dict:
    """By the pipeline's owner or an admin of its output repo; it keeps
    running as its owner, who must be able to use the new spec's repos."""
    svc = req.service
    caller = await req.who()

    def authorize(spec: PipelineSpec, old: Pipeline | None) -> None:
        assert old is not None
        check_executor(spec.executor, svc.jobs.executors)
        _may_manage(svc.refs, caller, old, "pipeline.update")
        _may_use(svc.refs, caller, spec, "pipeline.update")
        _may_use(svc.refs, _owner_caller(old), spec, f"pipeline.update (run as its owner, uid {old.owner.get('uid')})")
    pipeline = await svc.workers.run(svc.pipelines.update, req.arg("spec", dict), authorize)
    out = pipeline.to_json()
    if int(pipeline.owner.get("uid", -1)) != caller.uid:
        out["note"] = f"the pipeline still runs as its owner, uid {pipeline.owner.get('uid')}"
    if req.arg("reprocess", bool, False):  # run the new version on the input's current head
        spec = pipeline.spec
        head, _ = await svc.workers.run(svc.refs.read_branch, spec.input_repo, spec.input_branch)
        out["jobs"] = [await svc.jobs.enqueue(pipeline, head)] if head else []
    return out


@op("executor.list")
async def executor_list(req: Request) -> list[dict]:
    """The executors this daemon's pipelines may name, and whether each
    answers now (workers, threads); every caller may look."""
    executors = req.service.jobs.executors
    found: dict[str, dict] = {}

    async def one(name: str) -> None:
        found[name] = await executors[name].describe()
    async with trio.open_nursery() as nursery:
        for name in executors:
            nursery.start_soon(one, name)
    return [found[name] for name in sorted(executors, key=lambda n: (n != "local", n))]


@op("pipeline.list")
async def pipeline_list(req: Request) -> list:
    svc = req.service
    caller = await req.who()

    def shown() -> list:
        return [_shown(svc.refs, caller, p) for p in svc.pipelines.list()]
    return await svc.workers.run(shown)


@op("pipeline.show")
async def pipeline_show(req: Request) -> dict:
    svc = req.service
    pipeline, _ = await svc.workers.run(svc.pipelines.get, req.arg("name"))
    return await svc.workers.run(_shown, svc.refs, await req.who(), pipeline)


@op("pipeline.versions")
async def pipeline_versions(req: Request) -> list:
    """Every recorded version of a pipeline, newest first (``env`` hidden
    as ``pipeline.show`` hides it)."""
    svc = req.service
    caller = await req.who()

    def shown() -> list:
        return [_shown(svc.refs, caller, p) for p in svc.pipelines.versions(req.arg("name"))]
    return await svc.workers.run(shown)


@op("pipeline.delete")
async def pipeline_delete(req: Request) -> dict:
    svc = req.service
    caller = await req.who()
    name = req.arg("name")

    def authorize(old: Pipeline) -> None:
        _may_manage(svc.refs, caller, old, "pipeline.delete")
    await svc.workers.run(svc.pipelines.delete, name, authorize)
    return {"deleted": name}


async def _may_manage_job(req: Request, job: Job, what: str) -> None:
    """The job's pipeline's owner or an admin of its output repo (of the
    job's output repo, when the pipeline is gone)."""
    svc = req.service
    caller = await req.who()
    try:
        pipeline, _ = await svc.workers.run(svc.pipelines.get, job.pipeline)
    except NotFound:
        if caller.is_root:
            return
        output = await svc.workers.run(_repo_or_none, svc.refs, job.output)
        if output is None or not allows(caller, output, ADMIN):
            raise PermissionDenied(f"{what} of job {job.id} (of the deleted pipeline {job.pipeline!r}) "
                                   f"is for an admin of repo {job.output!r}") from None
        return
    await svc.workers.run(_may_manage, svc.refs, caller, pipeline, what)


# -- jobs ---------------------------------------------------------------------

@op("job.list")
async def job_list(req: Request) -> list:
    await req.service.jobs.refresh()     # what other daemons on the store made or ran
    return [j.summary() for j in req.service.jobs.list(req.arg("pipeline", str, None))]


@op("job.show")
async def job_show(req: Request) -> dict:
    await req.service.jobs.refresh()
    return req.service.jobs.get(req.arg("id")).summary(datum_stats=True)


@op("job.logs")
async def job_logs(req: Request) -> dict:
    await req.service.jobs.refresh()
    job = req.service.jobs.get(req.arg("id"))
    await _may_manage_job(req, job, "job.logs")
    logs = job.logs_json()
    datum = req.arg("datum", str, None)
    if datum is not None:
        if datum not in logs:
            raise NotFound(f"job {job.id} has no datum {datum!r} (datums that ran: {', '.join(logs) or 'none'})")
        logs = {datum: logs[datum]}
    return {"id": job.id, "state": job.state, "error": job.error, "logs": logs}


@op("job.wait")
async def job_wait(req: Request) -> dict:
    await req.service.jobs.refresh()
    return (await req.service.jobs.wait(req.arg("id"))).summary()


@op("job.cancel")
async def job_cancel(req: Request) -> dict:
    await req.service.jobs.refresh()
    await _may_manage_job(req, req.service.jobs.get(req.arg("id")), "job.cancel")
    return (await req.service.jobs.cancel(req.arg("id"))).summary()


@op("watch")
async def watch(req: Request) -> None:
    """Stream events until the client hangs up: new commits of ``repo``
    (``branch`` if given) and state changes of jobs that read or write it."""
    svc = req.service
    repo = req.repo()
    branch = req.arg("branch", str, None)
    await req.require(repo, READ)
    events = svc.events.subscribe()
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
