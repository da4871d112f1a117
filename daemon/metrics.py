"""Prometheus metrics of the daemon (``/metrics`` on ``--http``).

Most figures already exist where the work happens, as plain counters
(the store's request meter, the chunk cache's counters, the mount's
operation stats, the job table, the staging quota); a collector reads them
at each scrape, so the hot paths do not depend on prometheus_client.  The
socket's requests are counted here, by the server.  Names and units follow
Prometheus' conventions (``_total`` counters, ``_seconds``, ``_bytes``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from ..mountfs.opstats import LATENCY_BUCKETS, OpStats
from ..pipelines.jobs import DATUM_BUCKETS

if TYPE_CHECKING:
    from .service import Service


class DaemonMetrics:
    """The registry a daemon serves, and the socket's request counters."""

    def __init__(self, service: "Service") -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("trunkfs_socket_requests", "Requests on the control socket, by op and reply code",
                                ["op", "code"], registry=self.registry)
        self.request_seconds = Histogram("trunkfs_socket_request_seconds", "Time to answer a socket request",
                                         ["op"], registry=self.registry, buckets=LATENCY_BUCKETS)
        self.connections = Counter("trunkfs_socket_connections", "Connections accepted on the control socket",
                                   registry=self.registry)
        self.fuse: OpStats | None = None
        self.registry.register(_Figures(service, self))

    def request(self, op: str, code: str, seconds: float) -> None:
        self.requests.labels(op, code).inc()
        self.request_seconds.labels(op).observe(seconds)


class _Figures(Collector):
    """What the daemon's parts count themselves, read at scrape time."""

    def __init__(self, service: "Service", metrics: DaemonMetrics) -> None:
        self.service = service
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        yield from self._store()
        yield from self._cache()
        yield from self._fuse()
        yield from self._jobs()
        yield from self._datum_times()
        yield from self._staging()
        yield from self._commits()
        yield from self._ingest()

    def _store(self) -> Iterator[Metric]:
        counts: Any = getattr(self.service.store.backend, "counts", None)
        if counts is None:
            return
        requests = CounterMetricFamily("trunkfs_store_requests", "Requests to the object store",
                                       labels=["op", "area"])
        errors = CounterMetricFamily("trunkfs_store_errors", "Failed requests to the object store",
                                     labels=["op", "area"])
        moved = CounterMetricFamily("trunkfs_store_bytes", "Bytes moved to and from the object store",
                                    labels=["op", "area", "direction"])
        seconds = CounterMetricFamily("trunkfs_store_request_seconds", "Time spent in object store requests",
                                      labels=["op", "area"])
        retries = CounterMetricFamily("trunkfs_store_retries", "Object store requests tried again after a "
                                      "transient failure (each is one more request)", labels=["op", "area"])
        # a store whose failures may pass (S3) has a RetryingBackend; a local one never retries
        retry_counts: Any = getattr(self.service.store.backend, "retry_counts", None)
        retried: dict[tuple[str, str], int] = retry_counts() if retry_counts is not None else {}
        for op, total in counts().items():
            for area, c in total["areas"].items():
                requests.add_metric([op, area], c["requests"])
                errors.add_metric([op, area], c["errors"])
                moved.add_metric([op, area, "in"], c["bytes_in"])
                moved.add_metric([op, area, "out"], c["bytes_out"])
                seconds.add_metric([op, area], c["seconds"])
                retries.add_metric([op, area], retried.get((op, area), 0))
        yield from (requests, errors, moved, seconds, retries)

    def _cache(self) -> Iterator[Metric]:
        st = self.service.cache.stats()
        for name, key, text in (("hits", "hits", "Chunk reads answered by the cache (memory or disk)"),
                                ("misses", "misses", "Chunk reads that went to the store"),
                                ("evictions", "evictions", "Chunks evicted from the disk layer"),
                                ("prefetched_chunks", "prefetched", "Chunks read ahead of a reader"),
                                ("fetched_bytes", "fetched_bytes", "Chunk bytes fetched from the store"),
                                ("delivered_bytes", "delivered_bytes", "Bytes handed to readers")):
            yield CounterMetricFamily(f"trunkfs_cache_{name}", text, value=st[key])
        yield GaugeMetricFamily("trunkfs_cache_disk_bytes", "Bytes in the chunk cache's disk layer", value=st["size"])
        yield GaugeMetricFamily("trunkfs_cache_memory_bytes", "Bytes in the chunk cache's memory layer",
                                value=st["memory_bytes"])

    def _fuse(self) -> Iterator[Metric]:
        stats = self.metrics.fuse
        if stats is None:
            return
        latency = HistogramMetricFamily("trunkfs_fuse_operation_seconds", "FUSE operations and their latency",
                                        labels=["op"])
        errors = CounterMetricFamily("trunkfs_fuse_errors", "FUSE operations answered with an errno",
                                     labels=["op"])
        for op, f in sorted(stats.ops.items()):
            latency.add_metric([op], _cumulative(LATENCY_BUCKETS, f.buckets), f.seconds)
            errors.add_metric([op], f.errors)
        yield from (latency, errors)

    def _jobs(self) -> Iterator[Metric]:
        jobs = self.service.jobs.jobs.list()
        by_state: dict[str, int] = {}
        processed = reused = failed = 0
        for job in jobs:
            by_state[job.state] = by_state.get(job.state, 0) + 1
            processed += job.datums.processed
            reused += job.datums.skipped
            failed += job.datums.failed
        states = GaugeMetricFamily("trunkfs_jobs", "Pipeline jobs this daemon knows, by state", labels=["state"])
        for state, n in sorted(by_state.items()):
            states.add_metric([state], n)
        yield states
        datums = CounterMetricFamily("trunkfs_datums", "Datums of the jobs this daemon knows, by outcome",
                                     labels=["outcome"])
        datums.add_metric(["processed"], processed)
        datums.add_metric(["reused"], reused)
        datums.add_metric(["failed"], failed)
        yield datums

    def _datum_times(self) -> Iterator[Metric]:
        durations = HistogramMetricFamily(
            "trunkfs_datum_duration_seconds",
            "Datums that ran for this daemon's jobs and their duration (input, command, output), by pipeline",
            labels=["pipeline"])
        for pipeline, f in sorted(self.service.jobs.datum_times.pipelines.items()):
            durations.add_metric([pipeline], _cumulative(DATUM_BUCKETS, f.buckets), f.seconds)
        yield durations

    def _commits(self) -> Iterator[Metric]:
        path = self.service.commits
        made = CounterMetricFamily("trunkfs_commits", "Commits this daemon cut, by repo", labels=["repo"])
        added = CounterMetricFamily("trunkfs_commit_new_bytes", "Bytes commits added to the store, by repo",
                                    labels=["repo"])
        for repo, n in sorted(path.made.items()):
            made.add_metric([repo], n)
            added.add_metric([repo], path.new_bytes.get(repo, 0))
        yield from (made, added)

    def _ingest(self) -> Iterator[Metric]:
        written = self.service.store.written
        ingested, stored = written.ingested, written.stored
        yield CounterMetricFamily("trunkfs_ingest_logical_bytes", "File bytes this daemon's writes chunked "
                                  "(puts, commits, pipeline outputs), before dedup and compression",
                                  value=ingested)
        yield CounterMetricFamily("trunkfs_ingest_stored_bytes", "Bytes those writes added to the store "
                                  "(new chunks and trees, compressed)", value=stored)
        yield GaugeMetricFamily("trunkfs_ingest_dedup_ratio", "Logical bytes ingested per byte stored since "
                                "the daemon started (0 until something is stored)",
                                value=ingested / stored if stored else 0.0)

    def _staging(self) -> Iterator[Metric]:
        quota = self.service.staging.quota
        yield GaugeMetricFamily("trunkfs_staging_bytes", "Bytes staged in branch views",
                                value=sum(quota.usage().values()))
        yield GaugeMetricFamily("trunkfs_staging_files", "Files with bytes staged in branch views",
                                value=quota.files)


def _cumulative(bounds: tuple[float, ...], counts: list[int]) -> list[tuple[str, float]]:
    """A histogram's buckets as Prometheus has them: cumulative, by upper
    bound, the last ``+Inf``; ``counts`` has one per bound and one above them."""
    cumulative, buckets = 0, []
    for bound, n in zip((*map(str, bounds), "+Inf"), counts):
        cumulative += n
        buckets.append((bound, float(cumulative)))
    return buckets
