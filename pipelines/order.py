"""In which order a pipeline's open jobs run, and which need not run.

Daemons make jobs as they commit, each at its own pace, so the order in
which job records appear is not the order of their input commits.  The
daemon that holds a pipeline's lease runs its jobs in the order of their
input commits on the input branch (oldest first), and a job whose input
commit is an older ancestor of the input of the output branch's head
commit is *superseded*: a later input was processed already, and
committing the older one's output would take the output branch back.
"""

from __future__ import annotations

from ..store.errors import NotFound
from ..store.refs import Refs
from ..store.store import Store
from .jobs import Job

WALK_LIMIT = 10_000     # commits walked back at most


def _depths(store: Store, head: str | None, wanted: set[str]) -> dict[str, int]:
    """First-parent distance from ``head`` of each commit of ``wanted`` met."""
    found: dict[str, int] = {}
    cur, depth = head, 0
    while cur is not None and depth < WALK_LIMIT and len(found) < len(wanted):
        if cur in wanted:
            found[cur] = depth
        parents = store.read_commit(cur).parents
        cur, depth = (parents[0] if parents else None), depth + 1
    return found


def input_order(store: Store, refs: Refs, jobs: list[Job]) -> list[Job]:
    """``jobs`` (of one pipeline) oldest input commit first; jobs whose
    input is not on the input branch's recent history (a reset branch)
    come first, by creation."""
    if not jobs:
        return []
    first = jobs[0].input
    try:
        head, _ = refs.read_branch(first.repo, first.branch)
    except NotFound:
        head = None
    depths = _depths(store, head, {j.input.commit for j in jobs})
    return sorted(jobs, key=lambda j: (0, j.created, j.id) if j.input.commit not in depths
                  else (1, -depths[j.input.commit], j.created, j.id))


def superseded_by(store: Store, refs: Refs, job: Job) -> str | None:
    """The input commit, already processed onto the output branch's head,
    that ``job``'s input commit is an older ancestor of (None: the job is
    to run)."""
    try:
        head, _ = refs.read_branch(job.output, "main")
    except NotFound:
        return None
    if head is None:
        return None
    last = next((p.get("commit") for p in store.read_commit(head).provenance
                 if p.get("repo") == job.input.repo), None)
    if not isinstance(last, str) or last == job.input.commit:
        return None
    return last if job.input.commit in _depths(store, last, {job.input.commit}) else None
