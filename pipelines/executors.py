"""The executor interface: what runs a job's datums.

An executor gets the datums of a job that were not reused (reuse stays in
the scheduler: a reused datum never reaches an executor) and hands each
one's :class:`DatumOutcome` back as it ends.  Two exist: ``local``
(:mod:`.local`, subprocesses of the daemon) and Dask clusters
(:mod:`.dask_executor`); :mod:`.executorconfig` reads which ones a daemon has.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from typing import Protocol

from ..store.access import Caller
from ..store.store import Store
from .datums import Datum, OutputBudget
from .jobs import DatumLog, DatumStats, Job
from .registry import Pipeline
from .runner import AttemptDirs


@dataclass
class DatumOutcome:
    """How a datum ended on an executor: its output tree and the packs its
    blobs are in (when it succeeded), its log, and what it cost."""
    log: DatumLog
    tree: str | None = None
    packs: list[str] = field(default_factory=list)
    error: str | None = None          # None: it succeeded (``tree`` is set)
    output_bytes: int = 0


@dataclass
class JobWork:
    """What an executor needs of a job: the job (its id, input commit), the
    pipeline (spec, version), whom its datums run as (the local executor;
    a Dask worker runs them as its own user) and the job's output budget."""
    store: Store
    job: Job
    pipeline: Pipeline
    owner: Caller
    budget: OutputBudget
    log_limit: int                     # output kept per datum attempt (job_log_limit; 0: no cap)


Record = Callable[[int, Datum, DatumOutcome], Awaitable[None]]


class Executor(Protocol):
    """Runs the datums it is given and records each one's outcome."""

    name: str

    async def run(self, work: JobWork, pending: list[tuple[int, Datum]], record: Record) -> None: ...

    async def describe(self) -> dict: ...

    async def aclose(self) -> None: ...




@asynccontextmanager
async def timed_attempt(stats: DatumStats, attempt: AbstractAsyncContextManager[AttemptDirs]) \
        -> AsyncIterator[AttemptDirs]:
    """An attempt's directories, the time taken to prepare them (the copy or
    the binds of its input) added to the datum's download time."""
    started = time.perf_counter()
    async with attempt as dirs:
        stats.download_s += time.perf_counter() - started
        yield dirs
