"""A job's output as a commit change, fenced so that a job commits once.

The output replaces the output branch's tree (``ReplaceRoot``).  Before
each attempt of the commit's compare-and-swap (``HeadChecked``), it checks
that this daemon still holds the job's lease and that no commit on the
branch's first-parent history since the job was made carries the job's
id: should two daemons both believe they run a job (one woke up after its
lease was taken over), the ref swap orders them, and the later one's
retry sees the earlier commit and stops with :class:`AlreadyCommitted`.
"""

from __future__ import annotations

from ..store.changes import ReplaceRoot
from ..store.errors import TrunkError
from ..store.store import Store
from ..store.writer import WriteSession
from .leases import Lease, LeaseLost, Leases

CLOCK_MARGIN = 600.0     # seconds: commits this much older than the job are still searched
SEARCH_LIMIT = 10_000    # commits searched at most


class AlreadyCommitted(TrunkError):
    """The job's output is on the branch already (committed by another daemon)."""

    code = "conflict"

    def __init__(self, job: str, commit: str) -> None:
        super().__init__(f"job {job} was committed already as {commit}")
        self.commit = commit


class JobOutput(ReplaceRoot):
    """``root`` (the merged datum outputs) as the branch's tree; ``packs``
    hold its blobs (datums may have run on other daemons) and the commit
    names them, so that every daemon can read it."""

    def __init__(self, root: dict, store: Store, job: str, created: float, packs: set[str],
                 leases: Leases | None = None, lease: Lease | None = None) -> None:
        super().__init__(root)
        self.store, self.job, self.created, self.packs = store, job, created, packs
        self.leases, self.lease = leases, lease

    async def prepare(self, session: WriteSession) -> None:
        session.uses_packs(self.packs)

    def check_head(self, head: str | None) -> None:
        if self.leases is not None and self.lease is not None and not self.leases.holds(self.lease):
            raise LeaseLost(f"job {self.job}: another daemon took over its lease; its output is not committed")
        cur = head
        for _ in range(SEARCH_LIMIT):
            if cur is None:
                return
            commit = self.store.read_commit(cur)
            if commit.origin.get("job") == self.job:
                raise AlreadyCommitted(self.job, cur)
            if commit.time < self.created - CLOCK_MARGIN:
                return
            cur = commit.parents[0] if commit.parents else None
