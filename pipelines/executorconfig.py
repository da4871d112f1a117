"""The executors a daemon may use, as its configuration names them.

Every daemon has ``local``: the datums run as subprocesses of the daemon,
on its machine (:mod:`.local`).  Its admin may name Dask clusters in the
daemon's configuration (:mod:`.dask_executor`)::

    [executors.cluster]
    type = "dask"
    scheduler = "tcp://10.0.0.5:8786"
    wait_seconds = 300      # how long a job waits for an unreachable scheduler before it fails
    datums_per_task = 0     # datums per Dask task when a spec does not say; 0: chosen per job

(or ``trunkfs daemon --executor cluster=tcp://10.0.0.5:8786``).  A pipeline
spec names its executor (``executor = "cluster"``); only a name the daemon's
admin listed can be named, and a spec naming another is refused at create.

This module imports nothing heavy: the daemon's configuration reads it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from ..store.errors import InvalidArgument
from ..store.names import check_name
from .spec import LOCAL, MAX_DATUMS_PER_TASK

DASK = "dask"
DEFAULT_WAIT_SECONDS = 300.0
_SCHEDULER = re.compile(r"(tcp|tls|ws|wss|inproc|ucx)://\S+")
_KEYS = {"type", "scheduler", "wait_seconds", "datums_per_task"}

@dataclass(frozen=True)
class ExecutorConfig:
    """One executor the daemon may use, as its configuration names it."""
    name: str
    type: str = LOCAL
    scheduler: str = ""                      # a Dask scheduler's address
    wait_seconds: float = DEFAULT_WAIT_SECONDS
    datums_per_task: int = 0                 # 0: chosen per job

    def to_json(self) -> dict:
        out: dict[str, Any] = {"name": self.name, "type": self.type}
        if self.type == DASK:
            out.update(scheduler=self.scheduler, wait_seconds=self.wait_seconds,
                       datums_per_task=self.datums_per_task)
        return out


def parse_executors(raw: object, flags: list[str] | None = None) -> dict[str, ExecutorConfig]:
    """The executors of a configuration: ``local``, the ``[executors.NAME]``
    tables of the file and the ``--executor NAME=ADDRESS`` flags (which
    replace a table of the same name).  InvalidArgument says what is wrong."""
    out = {LOCAL: ExecutorConfig(LOCAL)}
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise InvalidArgument("executors must be a table of [executors.NAME] tables")
    tables = dict(raw)
    for flag in flags or []:
        name, sep, address = flag.partition("=")
        if not sep:
            raise InvalidArgument(f"--executor {flag!r}: use NAME=tcp://HOST:PORT")
        tables[name] = {"type": DASK, "scheduler": address}
    for name, table in tables.items():
        where = f"executor {name!r}"
        check_name(name, "executor")
        if name == LOCAL:
            raise InvalidArgument(f"{where}: the name is the daemon's own executor; pick another")
        if not isinstance(table, dict):
            raise InvalidArgument(f"{where} must be a table (type, scheduler, ...)")
        unknown = sorted(set(table) - _KEYS)
        if unknown:
            raise InvalidArgument(f"{where}: unknown setting{'s' if len(unknown) > 1 else ''} "
                                  f"{', '.join(unknown)}")
        kind = table.get("type", DASK)
        if kind != DASK:
            raise InvalidArgument(f"{where}: type must be {DASK!r} (the local executor is always there)")
        scheduler = table.get("scheduler")
        if not isinstance(scheduler, str) or not _SCHEDULER.fullmatch(scheduler):
            raise InvalidArgument(f"{where}: scheduler must be a Dask scheduler address such as "
                                  "tcp://10.0.0.5:8786")
        wait = table.get("wait_seconds", DEFAULT_WAIT_SECONDS)
        if isinstance(wait, bool) or not isinstance(wait, (int, float)) or not 0 < wait <= 7 * 86400:
            raise InvalidArgument(f"{where}: wait_seconds must be a number of seconds above 0, at most a week")
        per_task = table.get("datums_per_task", 0)
        if isinstance(per_task, bool) or not isinstance(per_task, int) \
                or not 0 <= per_task <= MAX_DATUMS_PER_TASK:
            raise InvalidArgument(f"{where}: datums_per_task must be an integer from 0 (chosen per job) "
                                  f"to {MAX_DATUMS_PER_TASK}")
        out[name] = ExecutorConfig(name, DASK, scheduler, float(wait), per_task)
    return out


class UnknownExecutor(InvalidArgument):
    """A spec names an executor this daemon's configuration does not list."""


def check_executor(name: str, known: dict[str, Any]) -> None:
    """Refuse a pipeline spec whose executor the daemon's admin did not list."""
    if name not in known:
        raise UnknownExecutor(f"pipeline spec: executor {name!r} is not one of this daemon's executors "
                              f"({', '.join(sorted(known))}); its admin lists them in the daemon's "
                              "configuration ([executors.NAME])")
