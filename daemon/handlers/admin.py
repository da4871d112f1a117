"""The daemon itself: ping, stop, stats, fleet, fsck."""

from __future__ import annotations

import os

from ...store.fleet import list_fleet
from ...store.fsck import fsck
from .. import protocol
from ..auth import PermissionDenied
from ..connection import ProtocolError
from .base import Request, op


@op("ping")
async def ping(req: Request) -> dict:
    from ... import __version__
    return {"version": __version__, "pid": os.getpid(), "uid": req.conn.uid}


@op("daemon.stop")
async def daemon_stop(req: Request) -> dict:
    if req.conn.uid not in (0, os.getuid()):
        raise ProtocolError(protocol.PERMISSION_DENIED, "only root or the daemon's owner may stop it")
    req.service.stop_requested.set()
    return {"stopping": True}


@op("stats")
async def stats(req: Request) -> dict:
    out = await req.service.workers.run(req.service.store.stats)
    if req.service.cache is not None:
        out["cache"] = req.service.cache.stats()
    return out


@op("fleet")
async def fleet(req: Request) -> list[dict]:
    """The daemons sharing this store, most recently seen first (``self``: this one)."""
    svc = req.service
    found = await svc.workers.run(list_fleet, svc.store.backend)
    me = svc.beacon.daemon_id if svc.beacon is not None else None
    return [dict(m, self=m["id"] == me) for m in found]


@op("fsck")
async def fsck_op(req: Request) -> dict:
    svc = req.service
    rebuilt = None
    if req.arg("rebuild_index", bool, False):
        if req.conn.uid != 0:
            raise PermissionDenied(f"fsck --rebuild-index is root's to run (uid {req.conn.uid} is not root)")
        rebuilt = await svc.bulk.run(svc.store.rebuild_index)
    report = await svc.bulk.run(fsck, svc.store, req.arg("read_data", bool, False))
    out = report.to_json()
    if rebuilt is not None:
        out["rebuilt_index"] = rebuilt
    return out

