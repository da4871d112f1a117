"""How the ``trunkfs`` command shows things: one formatter per kind of
object (commit, change, entry, repo, branch, job, pipeline, stats, fsck,
provenance, event), used by every command that shows that kind.

Plain text for people; ``--json`` prints the daemon's reply instead.  Sizes
are human units, times local, commit and job ids are shortened to 12
characters where they refer to something (a job id's prefix of at least 12
characters that is unique among those shown; the job commands accept a
prefix), paths inside a repo always start with ``/``.
"""

from __future__ import annotations

import json
import os
import stat as statmod

TYPE_CHECKING = False
if TYPE_CHECKING:  # only the type checker needs these: every command imports this module
    from collections.abc import Iterable, Sequence

    from ..client import (BranchInfo, Change, CommitInfo, DatumStats, Entry, Event, ExecutorInfo, FleetMember,
                          FsckReport, JobEvent,
                          JobInfo, JobLogs, MergeResult, Origin, PipelineInfo, ProvenanceRef,
                          ProvenanceStep, RepoAcl, RepoInfo, RevertResult, StatsInfo)

SHORT = 12  # characters of a shortened commit or job id


# -- units ----------------------------------------------------------------------

def human(n: float) -> str:
    """Bytes in binary units: ``4 B``, ``1.5 MiB``."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def when(ts: float) -> str:
    """A time, local, to the second (``datetime`` is imported here, by the
    commands that show times, not at every command's start)."""
    import datetime
    return datetime.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")


def count(n: int, noun: str) -> str:
    """``1 file``, ``2 files``."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def short(commit: str | None) -> str:
    """A commit id as it is shown where it is referred to; ``-`` for none."""
    return commit[:SHORT] if commit else "-"


def short_ids(ids: Iterable[str], minimum: int = SHORT) -> int:
    """The shortest prefix length, at least ``minimum``, that tells the ids apart."""
    distinct = set(ids)
    longest = max((len(i) for i in distinct), default=minimum)
    n = minimum
    while n < longest and len({i[:n] for i in distinct}) < len(distinct):
        n += 1
    return n


def repo_path(path: str) -> str:
    """A path inside a repo, always with its leading ``/``."""
    return path if path.startswith("/") else "/" + path


# -- commits --------------------------------------------------------------------

def origin_text(origin: Origin, id_len: int = SHORT) -> str:
    """``user``, or ``pipeline counts v1 job 179592993845``."""
    if origin.kind != "pipeline":
        return origin.kind
    text = f"pipeline {origin.pipeline or '?'}"
    if origin.version is not None:
        text += f" v{origin.version}"
    if origin.job:
        text += f" job {origin.job[:id_len]}"
    return text


def provenance_ref(p: ProvenanceRef) -> str:
    """``raw@3f9a1c2b4d5e (branch main)``."""
    return f"{p.repo}@{short(p.commit)}" + (f" (branch {p.branch})" if p.branch else "")


def author_text(c: CommitInfo) -> str:
    a = c.author
    if a.name and a.uid is not None:
        return f"{a.name} (uid {a.uid})"
    if a.uid is not None:
        return f"uid {a.uid}"
    return a.name or "?"


def commit_text(c: CommitInfo, full: bool = False) -> str:
    """A commit as ``log`` (``full`` False) and ``show`` (``full`` True) print it."""
    lines = [f"commit {c.id}" + (f" ({c.branch})" if full and c.branch else "")]
    lines.append(f"Author: {author_text(c)}")
    lines.append(f"Date:   {when(c.time)}")
    if len(c.parents) > 1:   # a merge: its parents, the branch's first
        lines.append("Merge:  " + " ".join(short(p) for p in c.parents))
    elif c.parents:
        lines.append("Parent: " + " ".join(c.parents))
    if full:
        lines.append(f"Origin: {origin_text(c.origin)}")
        lines.append(f"Tree:   {c.tree or '-'}")
        lines.append(f"Size:   {human(c.size)} in {count(c.files, 'file')}")
        for p in c.provenance:
            lines.append(f"Provenance: {provenance_ref(p)}")
    lines.append("")
    lines.append("    " + c.message)
    return "\n".join(lines)


def merge_text(r: MergeResult) -> str:
    """What ``merge`` did, on one line (and one more per path a strategy settled)."""
    source = f"{r.repo}@{short(r.source)}"
    if r.kind == "up-to-date":
        return f"{r.repo}@{r.branch} already contains {source}"
    if r.kind == "fast-forward":
        return f"fast-forwarded {r.repo}@{r.branch} to {r.commit}"
    lines = [f"merged {source} into {r.repo}@{r.branch}: {r.commit}"]
    lines += [f"conflict settled: {repo_path(p)}" for p in r.resolved]
    return "\n".join(lines)


def revert_text(r: RevertResult) -> str:
    return f"reverted {r.repo}@{short(r.reverted)} on {r.repo}@{r.branch}: {r.commit}"


def change_line(c: Change) -> str:
    """``status`` and ``diff``: one ``A|M|D /path`` line per change."""
    return f"{c.status} {repo_path(c.path)}"


def provenance_text(steps: Sequence[ProvenanceStep]) -> str:
    """The provenance walk, one commit a line, indented by depth."""
    return "\n".join(f"{'  ' * s.depth}{s.repo}@{short(s.commit)}  ({origin_text(s.origin)})"
                     for s in steps)


# -- listings, repos, branches ----------------------------------------------------

_TYPE_LETTERS = {"dir": "d", "file": "-", "symlink": "l", "fifo": "p", "socket": "s", "char": "c",
                 "block": "b"}


def entry_line(e: Entry) -> str:
    """``ls -l`` of one entry: type letter and mode, size (a device's
    major, minor, as ``ls -l`` shows it), mtime, name."""
    kind = _TYPE_LETTERS.get(e.type, "?")
    name = e.name + ("/" if e.type == "dir" else "")
    if e.type == "symlink":
        name += f" -> {e.target}"
    size = f"{os.major(e.rdev)}, {os.minor(e.rdev)}" if e.rdev is not None else str(e.size)
    return f"{kind}{statmod.filemode(e.mode)[1:]} {size:>14} {when(e.mtime / 1e9)}  {name}"


def repo_line(r: RepoInfo) -> str:
    return f"{r.name:<24} {human(r.size):>10}  {short(r.head)}  branches: {', '.join(r.branches)}"


def repos_text(repos: Sequence[RepoInfo]) -> str:
    return "\n".join(repo_line(r) for r in repos)


def acl_text(acl: RepoAcl) -> str:
    """A repo's owner, then one line per access-list entry."""
    lines = [f"owner: {acl.owner} (uid {acl.owner_uid}, admin)"]
    lines += [f"{e.who:<32} {e.role}" for e in acl.entries]
    if not acl.entries:
        lines.append("(no other access: only the owner and root)")
    return "\n".join(lines)


def branch_line(b: BranchInfo) -> str:
    return f"{b.name:<24} {b.head or '-'}"


def branches_text(branches: Sequence[BranchInfo]) -> str:
    return "\n".join(branch_line(b) for b in branches)


# -- the store ----------------------------------------------------------------------

def stats_text(s: StatsInfo) -> str:
    lines = [
        f"store:         {s.store}",
        f"logical bytes: {human(s.logical_bytes)} (all commits)",
        f"unique bytes:  {human(s.unique_bytes)}",
        f"stored bytes:  {human(s.stored_bytes)}",
        f"dedup ratio:   {s.dedup_ratio}",
        f"chunks:        {s.chunks}  trees: {s.trees}  packs: {s.packs}  commits: {s.commits}"]
    if s.cache is not None:
        c = s.cache
        lines.append(f"cache:         {human(c.size)} of {human(c.limit)} on disk in {c.entries} chunks, "
                     f"{human(c.memory_bytes)} of {human(c.memory_limit)} in memory; "
                     f"{c.hits} hits, {c.misses} misses, {c.prefetched} read ahead")
        waste = f" ({c.fetched_bytes / c.delivered_bytes:.2f}x)" if c.delivered_bytes else ""
        lines.append(f"reads:         {human(c.fetched_bytes)} fetched from the store for "
                     f"{human(c.delivered_bytes)} delivered to readers{waste}")
    t = s.tree_cache
    if t:
        lines.append(f"trees cached:  {t['trees']} decoded, {human(t['bytes'])} of {human(t['bytes_limit'])}; "
                     f"{t['indexed']} of them indexed by name")
    g = s.staging
    if g:
        lines.append(f"staging:       {g['entries']} staged entries of {g['dirs']} directories in memory "
                     f"(limit {g['limit']} per branch), {g['nodes']} staged nodes held")
    for op, r in sorted(s.requests.items()):
        if isinstance(r, dict):
            moved = r.get("bytes_in", 0) or r.get("bytes_out", 0)
            lines.append(f"store {op + ':':<8} {r.get('requests', 0)} requests, {human(int(moved))}, "
                         f"{r.get('errors', 0)} errors, {r.get('seconds', 0)} s")
    return "\n".join(lines)


def fsck_text(r: FsckReport, read_data: bool) -> str:
    summary = (f"{'ok' if r.ok else 'PROBLEMS FOUND'}: {r.commits} commits, {r.trees} trees, "
               f"{r.files} files, {r.chunks} chunks in {r.packs} packs"
               + (f", {r.blobs_verified} blobs verified" if read_data else ""))
    return "\n".join(r.problems + [summary])


# -- pipelines and jobs ---------------------------------------------------------------

def pipeline_line(p: PipelineInfo) -> str:
    inp = p.input
    return (f"{p.name} (version {p.version}, owner uid {p.owner.get('uid', '?')}): "
            f"{inp.get('repo')}@{inp.get('branch')} {inp.get('glob')} -> {p.output}: "
            f"{' '.join(p.cmd)}")


def pipelines_text(pipelines: Sequence[PipelineInfo]) -> str:
    return "\n".join(pipeline_line(p) for p in pipelines)


def pipeline_text(p: PipelineInfo) -> str:
    """``pipeline show``: the summary line, then the spec as a user writes it."""
    return pipeline_line(p) + "\n" + json.dumps(p.spec, indent=2, sort_keys=True)


def datums_text(job: JobInfo | JobEvent) -> str:
    d = job.datums
    return f"datums: {d.processed} processed, {d.skipped} skipped, {d.failed} failed of {d.total}"


def job_line(j: JobInfo, id_len: int = SHORT) -> str:
    """``179592993845  count  succeeded  raw@3f9a1c2b4d5e -> counts@a1b2c3d4e5f6  datums: ...  0.4s  on 5f0c9a1e``
    (``on``: the first 8 digits of the id of the daemon that ran it; ``trunkfs fleet``)"""
    out = j.output or "?"
    if j.output_commit:
        out += f"@{short(j.output_commit)}"
    dur = f"{j.duration:.1f}s" if j.duration is not None else "-"
    on = f"  on {j.daemon[:8]}" if j.daemon else ""
    return (f"{j.id[:id_len]:<{id_len}}  {j.pipeline:<16} {j.state:<10} "
            f"{j.input.repo}@{short(j.input.commit)} -> {out}  {datums_text(j)}  {dur}{on}")


def jobs_text(jobs: Sequence[JobInfo]) -> str:
    id_len = short_ids(j.id for j in jobs)
    return "\n".join(job_line(j, id_len) for j in jobs)


DATUM_ROWS = 50   # datums whose stats ``job show`` lists (``--json`` has them all)


def datum_stats_text(st: DatumStats) -> str:
    """``in 0.012s 4.0 KiB, run 0.503s, out 0.004s 120 B, on host tcp://10.0.0.7:40123``"""
    return (f"in {st.download_s:.3f}s {human(st.download_bytes)}, run {st.process_s:.3f}s, "
            f"out {st.upload_s:.3f}s {human(st.upload_bytes)}, on {st.worker or '?'}")


def job_text(j: JobInfo) -> str:
    """``job show``, ``wait`` and ``cancel``: the job's line, its error, the
    totals of its datums' stats, and (``job show``) each datum's."""
    lines = [job_line(j)] + ([f"error: {j.error}"] if j.error else [])
    t = j.stats
    if t:
        found = t.get("workers")
        workers: dict = found if isinstance(found, dict) else {}
        lines.append(f"datums ran: input {float(t.get('download_s') or 0):.3f}s "
                     f"{human(int(t.get('download_bytes') or 0))}, command {float(t.get('process_s') or 0):.3f}s, "
                     f"output {float(t.get('upload_s') or 0):.3f}s {human(int(t.get('upload_bytes') or 0))}; "
                     f"on {len(workers)} worker{'s' if len(workers) != 1 else ''}: "
                     + ", ".join(f"{w} ({n})" for w, n in sorted(workers.items())))
    rows = sorted(j.datum_stats.items(), key=lambda kv: int(kv[0]) if kv[0].isdigit() else 0)
    for label, st in rows[:DATUM_ROWS]:
        lines.append(f"  datum {label}: {datum_stats_text(st)}")
    if len(rows) > DATUM_ROWS:
        lines.append(f"  ... and {len(rows) - DATUM_ROWS} more datums (--json lists them all)")
    return "\n".join(lines)


def executor_line(e: ExecutorInfo) -> str:
    """``cluster  dask   tcp://10.0.0.5:8786  answers: 2 workers, 4 threads``"""
    where = e.scheduler or "this daemon's machine"
    state = (f"answers: {e.workers} worker{'s' if e.workers != 1 else ''}, {e.threads} thread"
             f"{'s' if e.threads != 1 else ''}") if e.answers else f"does not answer: {e.error or '?'}"
    return f"{e.name:<12} {e.type:<6} {where}  {state}"


def job_logs_text(r: JobLogs) -> str:
    lines = [f"job {r.id[:SHORT]}: {r.state}" + (f" ({r.error})" if r.error else "")]
    for label, e in r.logs.items():
        lines.append(f"--- datum {label} ({', '.join(e.paths)}): exit {e.exit}, attempts {e.attempts}"
                     + (f", {e.error}" if e.error else ""))
        if e.stats is not None:
            lines.append(datum_stats_text(e.stats))
        if e.stdout:
            lines.append("stdout:\n" + e.stdout.rstrip("\n"))
        if e.stderr:
            lines.append("stderr:\n" + e.stderr.rstrip("\n"))
    return "\n".join(lines)


# -- watch ------------------------------------------------------------------------------

def event_line(e: Event) -> str:
    """One ``watch`` line: a new commit, or a job's new state."""
    from ..client.pipeline_results import CommitEvent, JobEvent
    if isinstance(e, CommitEvent):
        jobs = f" jobs {' '.join(j[:SHORT] for j in e.jobs)}" if e.jobs else ""
        return f"commit {e.repo}@{e.branch} {e.commit}{jobs}"
    if isinstance(e, JobEvent):
        out = f" -> {e.output}@{short(e.output_commit)}" if e.output_commit else ""
        return f"job {e.id[:SHORT]} {e.pipeline} {e.state}{out}  {datums_text(e)}"
    return f"{e.type} event"


def fleet_line(m: FleetMember) -> str:
    """``a1b2c3d4e5f60718  up      host:pid  v0.1  seen 3 s ago  (this daemon)``."""
    state = "up" if m.up else "gone?"
    mark = "  (this daemon)" if m.self else ""
    return f"{m.id}  {state:<6} {m.host}:{m.pid}  v{m.version}  seen {m.ago:.0f} s ago{mark}"
