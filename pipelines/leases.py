"""Claims across the daemons of one store: lease objects.

A pipeline's jobs run on the daemon that holds the pipeline's lease,
``leases/pipelines/<name>``, one job after the other (so that its outputs
commit in the order of its inputs, ``order``); the job that runs names the
daemon in its record.  A lease holds ``{"v", "daemon", "w", "ttl", "time"}``.
A daemon claims it by creating it (``If-None-Match: *``), renews it every third
of its ``ttl`` by swapping it (``If-Match``; a fresh write id ``w`` makes
every renewal new bytes), and deletes it when it has no job left to run.  Whoever
finds a lease that has not changed for ``ttl`` seconds of *its own* clock
may take it over (``If-Match`` on the version it watched), so a daemon that
died, hung or lost the network for that long loses its jobs, and clocks
that disagree between machines do not matter: only the watcher's clock
measures the silence.  A daemon finds its own lease from before a restart
(its id in it, no renewal of this life) and takes it back at once.

A lost renewal (someone took the lease over) ends the job on its old
holder without a word written; and whoever commits a job's output first checks,
inside the branch's compare-and-swap, that no commit of the branch carries
that job already (``scheduler``), so a job is never committed twice even
when a holder wakes up after its lease was taken.
"""

from __future__ import annotations

import json
import logging
import secrets
import threading
import time
from dataclasses import dataclass, field

from ..store.backends.base import Backend
from ..store.errors import Conflict, NotFound, TrunkError

log = logging.getLogger(__name__)

PREFIX = "leases/"
CANCEL_PREFIX = "jobcancel/"     # a job's cancel asked on a daemon that does not hold its pipeline
LEASE_VERSION = 1
MIN_TTL, MAX_TTL = 1.0, 3600.0


class LeaseLost(TrunkError):
    """Another daemon took over a lease this daemon held."""

    code = "conflict"


@dataclass
class Lease:
    name: str         # of the lease (the key below ``leases/``)
    version: str      # of the lease object, for the next swap
    taken_from: str | None = None   # the daemon whose expired lease this one replaced
    # a renewal and a check run in different threads: the check must not read
    # the store between a renewal's write and its new version here
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)


class Leases:
    def __init__(self, backend: Backend, daemon: str, ttl: float) -> None:
        self.backend = backend
        self.daemon = daemon
        self.ttl = ttl
        self._watched: dict[str, tuple[str, float]] = {}   # name -> (lease version, since when unchanged)
        self._mine: set[str] = set()     # leases this daemon took in this life

    def _body(self) -> bytes:
        return json.dumps({"v": LEASE_VERSION, "daemon": self.daemon, "w": secrets.token_hex(8),
                           "ttl": self.ttl, "time": time.time()}).encode()

    def claim(self, name: str) -> Lease | None:
        """The lease ``name`` if this daemon gets it now (None when a live
        lease of another daemon, or of this one, holds it).  Blocking: a
        worker thread."""
        key = PREFIX + name
        for _ in range(3):
            try:
                lease = Lease(name, self.backend.put_if(key, self._body(), None))
                self._mine.add(name)
                return lease
            except Conflict:
                pass
            found = self.backend.get_versioned(key)
            if found is None:
                continue            # released between the two calls: try again
            data, version = found
            holder, ttl = _holder(data)
            earlier_life = holder == self.daemon and name not in self._mine
            if not earlier_life and not self._expired(name, version, ttl):
                return None
            try:
                lease = Lease(name, self.backend.put_if(key, self._body(), version), holder)
            except Conflict:
                return None         # renewed or taken meanwhile
            self._watched.pop(name, None)
            self._mine.add(name)
            log.info("lease %s: taken over from daemon %s%s", name, holder or "?",
                     "" if holder == self.daemon else f" (silent for {ttl:.0f} s or more)")
            return lease
        return None

    def _expired(self, name: str, version: str, ttl: float) -> bool:
        """Whether the lease at ``version`` has not changed for ``ttl`` seconds
        of this daemon's clock (it starts watching now if it was not)."""
        now = time.monotonic()
        seen = self._watched.get(name)
        if seen is None or seen[0] != version:
            self._watched[name] = (version, now)
            return False
        return now - seen[1] >= ttl

    def renew(self, lease: Lease) -> None:
        """Swap in a fresh lease; LeaseLost when another daemon took it."""
        try:
            with lease.lock:
                lease.version = self.backend.put_if(PREFIX + lease.name, self._body(), lease.version)
        except (Conflict, NotFound) as exc:
            self._mine.discard(lease.name)
            raise LeaseLost(f"lease {lease.name}: another daemon took it over") from exc

    def holds(self, lease: Lease) -> bool:
        """Whether the lease object is still the one this daemon last wrote."""
        with lease.lock:
            found = self.backend.get_versioned(PREFIX + lease.name)
            return found is not None and found[1] == lease.version

    def release(self, lease: Lease) -> None:
        """Delete the lease (its work done); one that was taken over stays."""
        self._mine.discard(lease.name)
        try:
            with lease.lock:
                self.backend.delete_if(PREFIX + lease.name, lease.version)
        except (Conflict, NotFound):
            log.info("lease %s was no longer this daemon's when released", lease.name)

    def holder(self, name: str) -> str | None:
        """The daemon named in the lease (None: no lease)."""
        found = self.backend.get_versioned(PREFIX + name)
        return None if found is None else _holder(found[0])[0]

    # -- cancel requests for a job that runs on another daemon ----------------------

    def ask_cancel(self, job: str) -> None:
        self.backend.put(CANCEL_PREFIX + job, json.dumps({"by": self.daemon, "time": time.time()}).encode())

    def cancel_asked(self, job: str) -> bool:
        return self.backend.stat(CANCEL_PREFIX + job) is not None

    def clear_cancel(self, job: str) -> None:
        self.backend.delete(CANCEL_PREFIX + job)


def _holder(data: bytes) -> tuple[str | None, float]:
    """(daemon, ttl) of a lease's bytes; a lease that cannot be read names no
    daemon and expires after MAX_TTL of silence."""
    try:
        obj = json.loads(data)
        ttl = float(obj.get("ttl", MAX_TTL))
        return str(obj["daemon"]), min(MAX_TTL, max(MIN_TTL, ttl))
    except (ValueError, TypeError, KeyError, AttributeError):
        return None, MAX_TTL
