"""Pipelines and their jobs, and ``watch`` (commit and job events)."""

from __future__ import annotations

import trio

from ...store.errors import NotFound
from .. import protocol
from .base import Request, first_error, op


def _owner(req: Request) -> dict:
    return {"uid": req.conn.uid, "gid": req.conn.gid}


@op("pipeline.create")
async def pipeline_create(req: Request) -> dict:
    registry = req.service.pipelines
    pipeline = await req.service.workers.run(registry.create, req.arg("spec", dict), _owner(req))
    req.service.heads.changed(pipeline.spec.output, None)
    return pipeline.to_json()


@op("pipeline.update")
async def pipeline_update(req: Request) -> dict:
    svc = req.service
    pipeline = await svc.workers.run(svc.pipelines.update, req.arg("spec", dict), _owner(req))
    out = pipeline.to_json()
    if req.arg("reprocess", bool, False):  # run the new version on the input's current head
        spec = pipeline.spec
        head, _ = await svc.workers.run(svc.refs.read_branch, spec.input_repo, spec.input_branch)
        out["jobs"] = [await svc.jobs.enqueue(pipeline, head)] if head else []
    return out


@op("pipeline.list")
async def pipeline_list(req: Request) -> list:
    registry = req.service.pipelines
    return [p.to_json() for p in await req.service.workers.run(registry.list)]


@op("pipeline.show")
async def pipeline_show(req: Request) -> dict:
    registry = req.service.pipelines
    pipeline, _ = await req.service.workers.run(registry.get, req.arg("name"))
    return pipeline.to_json()


@op("pipeline.delete")
async def pipeline_delete(req: Request) -> dict:
    registry = req.service.pipelines
    name = req.arg("name")
    await req.service.workers.run(registry.delete, name)
    return {"deleted": name}


# -- jobs ---------------------------------------------------------------------

@op("job.list")
async def job_list(req: Request) -> list:
    return [j.summary() for j in req.service.jobs.list(req.arg("pipeline", str, None))]


@op("job.show")
async def job_show(req: Request) -> dict:
    return req.service.jobs.get(req.arg("id")).summary()


@op("job.logs")
async def job_logs(req: Request) -> dict:
    job = req.service.jobs.get(req.arg("id"))
    logs = job.logs_json()
    datum = req.arg("datum", str, None)
    if datum is not None:
        if datum not in logs:
            raise NotFound(f"job {job.id} has no datum {datum!r} (datums that ran: {', '.join(logs) or 'none'})")
        logs = {datum: logs[datum]}
    return {"id": job.id, "state": job.state, "error": job.error, "logs": logs}


@op("job.wait")
async def job_wait(req: Request) -> dict:
    return (await req.service.jobs.wait(req.arg("id"))).summary()


@op("job.cancel")
async def job_cancel(req: Request) -> dict:
    return (await req.service.jobs.cancel(req.arg("id"))).summary()


@op("watch")
async def watch(req: Request) -> None:
    """Stream events until the client hangs up: new commits of ``repo``
    (``branch`` if given) and state changes of jobs that read or write it."""
    svc = req.service
    repo = req.repo()
    branch = req.arg("branch", str, None)
    await svc.workers.run(svc.refs.get_repo, repo)
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
