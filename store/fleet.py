"""The daemons of one store: each has a stable id and a record
``fleet/<id>`` that it rewrites while it runs (its beacon), so that any
daemon can say who shares the store and when each was last seen.

A record is small JSON: ``{"v", "id", "host", "pid", "version", "started",
"seen"}`` (times in seconds since the epoch, as the writer's clock says).
Only its own daemon writes it, with a plain put: no coordination needed.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import socket
import time

from .backends.base import Backend
from .errors import BackendError, ObjectMissing

log = logging.getLogger(__name__)

FLEET_VERSION = 1
ID_FILE = "daemon-id"
BEACON_INTERVAL = 30.0      # seconds between two writes of a daemon's record
UP_WITHIN = 3 * BEACON_INTERVAL


def daemon_id(state_dir: str) -> str:
    """This daemon's id, made once and kept in its state directory (16 hex)."""
    path = os.path.join(state_dir, ID_FILE)
    try:
        with open(path) as f:
            found = f.read().strip()
        if len(found) == 16 and all(c in "0123456789abcdef" for c in found):
            return found
        log.warning("%s does not hold a daemon id; making a new one", path)
    except FileNotFoundError:
        pass
    new = secrets.token_hex(8)
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        f.write(new + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return new


class Beacon:
    """This daemon's record in ``fleet/``."""

    def __init__(self, backend: Backend, ident: str, version: str) -> None:
        self.backend = backend
        self.record = {"v": FLEET_VERSION, "id": ident, "host": socket.gethostname(), "pid": os.getpid(),
                       "version": version, "started": time.time()}

    def beat(self) -> None:
        self.backend.put(f"fleet/{self.record['id']}", json.dumps(dict(self.record, seen=time.time()),
                                                                  sort_keys=True).encode())


def list_fleet(backend: Backend, now: float | None = None) -> list[dict]:
    """Every daemon record of the store, most recently seen first, each with
    ``up`` (seen within ``UP_WITHIN`` seconds) and ``ago`` (seconds)."""
    now = time.time() if now is None else now
    out = []
    for key in backend.list("fleet/"):
        try:
            rec = json.loads(backend.get(key))
            if not isinstance(rec, dict) or rec.get("v") != FLEET_VERSION:
                raise ValueError("not a daemon record")
            seen = float(rec["seen"])
        except ObjectMissing:
            continue
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("skipping fleet record %s: %s", key, exc)
            continue
        out.append({"id": str(rec.get("id")), "host": str(rec.get("host")), "pid": rec.get("pid"),
                    "version": str(rec.get("version")), "started": rec.get("started"), "seen": seen,
                    "ago": max(0.0, now - seen), "up": now - seen < UP_WITHIN})
    return sorted(out, key=lambda r: -r["seen"])


def check_shareable(backend: Backend, ident: str, now: float | None = None) -> None:
    """Refuse to share a store whose endpoint does not enforce conditional
    writes: this daemon may use it only while no other daemon does (one seen
    within ``UP_WITHIN`` seconds), since its ref updates are then safe only
    inside one process."""
    if backend.enforces_conditional_writes():
        return
    others = [m for m in list_fleet(backend, now) if m["up"] and m["id"] != ident]
    if others:
        o = others[0]
        raise BackendError(
            f"the store {backend.url} is on an endpoint that does not enforce conditional writes, "
            f"and daemon {o['id']} on {o['host']} (pid {o['pid']}, seen {o['ago']:.0f} s ago) uses it: "
            "several daemons can share a store only where branch updates are compare-and-swap in the "
            "store itself (AWS S3 and most S3 servers have conditional writes); refusing to start")
