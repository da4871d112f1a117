"""The daemon itself: ping, stop, stats, fleet, fsck, gc."""

from __future__ import annotations

import json
import os

from ...store.backends.base import Backend
from ...store.fleet import list_fleet
from ...store.fsck import fsck
from ...store.gc import DEFAULT_MAX_UNUSED, REPORT_KEY, Collector
from ...staging.nodes import DirNode, FileNode
from ...store.errors import InvalidArgument
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
    out["cache"] = req.service.cache.stats()
    out["tree_cache"] = req.service.store.tree_cache_stats()
    out["staging"] = req.service.staging.paging_stats()
    counts = getattr(req.service.store.backend, "counts", None)   # MeteredBackend, under the decorators
    if counts is not None:
        out["requests"] = counts()
    out["gc"] = await req.service.workers.run(_last_gc, req.service.store.backend)
    return out


def _last_gc(backend: Backend) -> dict | None:
    """The last collection's figures (its reclaimable bytes above all), or a dry run's if newer."""
    best = None
    for key in (REPORT_KEY, REPORT_KEY + "-dry-run"):
        found = backend.get_versioned(key)
        if found is None:
            continue
        try:
            report = json.loads(found[0])
        except ValueError:
            continue
        if isinstance(report, dict) and (best is None or report.get("time", 0) > best.get("time", 0)):
            best = report
    return best


@op("gc")
async def gc(req: Request) -> dict:
    """Collect the store's garbage (root, or the daemon's own user): docs/gc.md."""
    svc = req.service
    if req.conn.uid not in (0, os.getuid()):
        raise PermissionDenied(f"gc is root's to run (uid {req.conn.uid} is not root)")
    dry_run = req.arg("dry_run", bool, False)
    grace = req.arg("grace", (int, float), svc.store.session_limit)
    if isinstance(grace, bool) or not 0 <= grace <= 100 * 366 * 86400:
        raise InvalidArgument("gc: grace must be a number of seconds, 0 or more")
    max_unused = req.arg("max_unused", (int, float), DEFAULT_MAX_UNUSED)
    if isinstance(max_unused, bool) or not 0 <= max_unused <= 1:
        raise InvalidArgument("gc: max_unused must be a share from 0 to 1 (1: never repack)")
    blobs: list[bytes] = []
    trees: list[str] = []
    for area in list(svc.staging.areas.values()):     # what this daemon's staging keeps
        for node in area.read_all():
            if isinstance(node, FileNode):
                blobs += [bytes.fromhex(c[0]) for c in node.base_chunks]
            elif isinstance(node, DirNode) and isinstance(node.lower, dict) and node.lower.get("tree"):
                trees.append(str(node.lower["tree"]))
    collector = Collector(svc.store, float(grace), dry_run, blobs, trees, float(max_unused))
    return (await svc.bulk.run(collector.run)).to_json()


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



@op("console")
async def console(req: Request) -> dict:
    """A URL of the web console with a new token for the caller (their uid's
    permissions on every page); with ``revoke``, forget the caller's tokens."""
    svc = req.service
    if svc.console is None or svc.console_url is None:
        raise InvalidArgument("this daemon serves no console: start it with --http 127.0.0.1:8300 "
                              "(or http = \"127.0.0.1:8300\" in its config)")
    if req.arg("revoke", bool, False):
        return {"revoked": svc.console.revoke(req.conn.uid), "uid": req.conn.uid}
    token = svc.console.issue(req.conn.uid, req.conn.gid)
    return {"url": f"{svc.console_url}/?token={token}", "uid": req.conn.uid,
            "expires_hours": round(svc.console.lifetime / 3600, 2)}
