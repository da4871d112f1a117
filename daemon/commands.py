"""The commands of ``trunkfs``, one function each: parse the path specs,
call the client (:mod:`trunkfs.client`), print through the formatters
(:mod:`trunkfs.daemon.format`).  The parser that routes to them and the
entry point are in :mod:`trunkfs.daemon.cli`."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Iterable, Sequence

from ..client import Client, Result
from . import format as fmt



class UsageError(Exception):
    pass


# -- path specs ---------------------------------------------------------------

def parse_spec(spec: str, *, want_path: bool = True) -> tuple[str, str | None, str]:
    """``REPO[@REF][:/PATH]`` -> (repo, ref or None, path)."""
    left, sep, path = spec.partition(":")
    repo, at, ref = left.partition("@")
    if not repo:
        raise UsageError(f"{spec!r}: expected REPO[@REF][:/PATH]")
    if at and not ref:
        raise UsageError(f"{spec!r}: empty ref after '@'")
    if sep and not want_path:
        raise UsageError(f"{spec!r}: no path expected here")
    if "\0" in path or ".." in path.split("/"):
        raise UsageError(f"{spec!r}: a path may not contain '..' or NUL")
    return repo, (ref or None), (path or "/")


def _branch_spec(spec: str) -> tuple[str, str | None]:
    repo, branch, _ = parse_spec(spec, want_path=False)
    return repo, branch


# -- output -------------------------------------------------------------------

def emit(args: argparse.Namespace, result: Result | Sequence[Result], text: str | None = None) -> None:
    """``--json``: the daemon's reply (``raw``) as it came; else ``text``, if any."""
    if args.json:
        raw = [r.raw for r in result] if isinstance(result, Sequence) else result.raw
        print(json.dumps(raw, indent=None, sort_keys=True))
    elif text:
        print(text)


class Progress:
    """A one-line progress bar on stderr, for transfers of at least 32 MiB;
    used as the client's ``progress(done, total)`` callback."""

    def __init__(self, label: str, start: float | None = None) -> None:
        self.label = label
        self.shown = False
        self._last = 0.0
        self._start = time.monotonic() if start is None else start

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if total < 32 * 1024 * 1024 or now - self._last <= 0.2:
            return
        self._last = now
        self.shown = True
        frac = done / total if total else 1
        rate = done / max(now - self._start, 1e-6)
        bar = "#" * int(frac * 30)
        sys.stderr.write(f"\r{self.label} [{bar:<30}] {frac * 100:5.1f}% "
                         f"{fmt.human(done)}/{fmt.human(total)} {fmt.human(rate)}/s ")
        sys.stderr.flush()

    def close(self) -> None:
        if self.shown:
            sys.stderr.write("\r" + " " * 90 + "\r")
            sys.stderr.flush()


def progress_bar(label: str, args: argparse.Namespace | None = None) -> Progress | None:
    """A bar when stderr is a terminal (and, given ``args``, not ``--json``)."""
    if not sys.stderr.isatty() or (args is not None and args.json):
        return None
    return Progress(label)


# -- commands -----------------------------------------------------------------

def cmd_repo(args: argparse.Namespace, c: Client) -> int:
    if args.action == "acl":
        acl = c.repo_acl(args.name, grant=args.grant or (), revoke=args.revoke or ())
        emit(args, acl, fmt.acl_text(acl))
        return 0
    if args.action == "create":
        emit(args, c.repo_create(args.name), f"created repo {args.name}")
    elif args.action == "delete":
        emit(args, c.repo_delete(args.name), f"deleted repo {args.name}")
    else:
        repos = c.repo_list()
        emit(args, repos, fmt.repos_text(repos))
    return 0


def cmd_branch(args: argparse.Namespace, c: Client) -> int:
    if args.action == "list":
        branches = c.branch_list(args.spec)
        emit(args, branches, fmt.branches_text(branches))
        return 0
    repo, branch = _branch_spec(args.spec)
    if not branch:
        raise UsageError("name the branch: REPO@BRANCH")
    if args.action == "create":
        b = c.branch_create(repo, branch, args.from_ref)
        emit(args, b, f"created branch {repo}@{branch} at {fmt.short(b.head)}")
    elif args.action == "reset":
        b = c.branch_reset(repo, branch, args.to_ref)
        emit(args, b, f"reset branch {repo}@{branch} to {fmt.short(b.head)}")
    else:
        emit(args, c.branch_delete(repo, branch), f"deleted branch {repo}@{branch}")
    return 0


def parse_duration(text: str) -> float:
    """Seconds of ``90``, ``90s``, ``30m``, ``2h`` or ``7d``."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    text = text.strip().lower()
    unit = units.get(text[-1:]) if text else None
    try:
        value = float(text[:-1] if unit else text) * (unit or 1)
    except ValueError:
        raise UsageError(f"not a duration: {text!r} (use e.g. 90s, 30m, 2h, 7d)") from None
    if not 0 <= value < float("inf"):
        raise UsageError(f"not a duration: {text!r}")
    return value


def cmd_retention(args: argparse.Namespace, c: Client) -> int:
    if args.action == "set":
        if args.keep_last is None and args.keep_days is None:
            raise UsageError("retention set needs --keep-last N, --keep-days D or both")
        r = c.retention_set(args.repo, branch=args.branch, keep_last=args.keep_last, keep_days=args.keep_days)
    elif args.action == "clear":
        r = c.retention_clear(args.repo, branch=args.branch)
    else:
        r = c.retention_show(args.repo)
    if args.json:
        print(json.dumps(r, sort_keys=True))
        return 0
    for rule in r.get("rules", []):
        parts = [f"keep the last {rule['keep_last']}" if rule.get("keep_last") else "",
                 f"keep {rule['keep_days']:g} days" if rule.get("keep_days") is not None else ""]
        print(f"{rule.get('branch') or '(every branch and tag)'}: {', or '.join(p for p in parts if p)}")
    if not r.get("rules"):
        print(f"{args.repo}: no rules; every commit reachable from a branch or a tag is kept")
    return 0


def cmd_gc(args: argparse.Namespace, c: Client) -> int:
    grace = parse_duration(args.grace) if args.grace is not None else None
    r = c.gc(dry_run=args.dry_run, grace=grace, max_unused=args.max_unused)
    if args.json:
        print(json.dumps(r, sort_keys=True))
        return 0
    verb = "would delete" if r.get("dry_run") else "deleted"
    print(f"{r.get('commits', 0)} live commits, {r.get('packs', 0)} packs ({r.get('live_packs', 0)} live)")
    print(f"{verb} {r.get('deleted', 0)} packs ({fmt.human(r.get('deleted_bytes', 0))}); "
          f"condemned {r.get('condemned', 0)}, pardoned {r.get('pardoned', 0)}")
    print(f"reclaimable {fmt.human(r.get('reclaimable_bytes', 0))}, of which "
          f"{fmt.human(r.get('waiting_bytes', 0))} waits for the grace period; {r.get('seconds', 0)} s")
    return 0


def cmd_tag(args: argparse.Namespace, c: Client) -> int:
    repo, _, ref = args.spec.partition("@")
    if args.action == "list":
        if ref:
            raise UsageError("tag list takes a repo: REPO")
        tags = c.tag_list(repo)
        emit(args, tags, "\n".join(f"{t.tag}\t{fmt.short(t.commit)}" for t in tags) or None)
    elif args.action == "create":
        t = c.tag_create(repo, args.name, ref or None)
        emit(args, t, f"tagged {repo}@{fmt.short(t.commit)} as {t.tag}")
    else:
        if ref:
            raise UsageError("tag delete takes a repo and a name: REPO NAME")
        emit(args, c.tag_delete(repo, args.name), f"deleted tag {args.name} of {repo}")
    return 0


def cmd_put(args: argparse.Namespace, c: Client) -> int:
    repo, branch, dest = parse_spec(args.spec)
    for local in args.local:
        if not os.path.lexists(local):
            raise UsageError(f"{local}: no such file or directory")
    bar = progress_bar("put")
    try:
        r = c.put(repo, args.local, branch=branch, dest=dest, message=args.message, progress=bar)
    finally:
        if bar:
            bar.close()
    for path in r.skipped:
        why = r.skipped_reasons.get(path, "not sent")
        print(f"trunkfs: skipping {path}: {why}", file=sys.stderr)
    emit(args, r, r.commit)
    return 0


def cmd_rm(args: argparse.Namespace, c: Client) -> int:
    repo: str | None = None
    branch: str | None = None
    paths = []
    for spec in args.spec:
        rp, br, path = parse_spec(spec)
        if repo is not None and (rp, br) != (repo, branch):
            raise UsageError("every path of one rm must be in the same REPO@BRANCH")
        if path == "/":
            raise UsageError(f"{spec}: name a path to remove")
        repo, branch = rp, br
        paths.append(path)
    assert repo is not None  # argparse requires one spec at least
    r = c.rm(repo, paths, branch=branch, message=args.message)
    emit(args, r, r.commit)
    return 0


def print_lines(lines: Iterable[str]) -> None:
    """Print each line as it comes (a streamed reply: the first lines show
    while the daemon is still walking)."""
    for line in lines:
        print(line)


def cmd_status(args: argparse.Namespace, c: Client) -> int:
    repo, branch = _branch_spec(args.spec)
    if args.json:
        r = c.status(repo, branch)
        emit(args, r)
        return 0
    _, changes = c.status_stream(repo, branch)
    print_lines(fmt.change_line(ch) for ch in changes)
    return 0


def cmd_commit(args: argparse.Namespace, c: Client) -> int:
    repo, branch = _branch_spec(args.spec)
    bar = progress_bar("commit", args)
    try:
        r = c.commit(repo, branch=branch, message=args.message, allow_empty=args.allow_empty,
                     progress=bar, force=args.force)
    finally:
        if bar:
            bar.close()
    emit(args, r, r.commit)
    return 0


def cmd_merge(args: argparse.Namespace, c: Client) -> int:
    repo, source, _ = parse_spec(args.spec, want_path=False)
    if source is None:
        raise UsageError(f"{args.spec!r}: name the branch or commit to merge, REPO@SOURCE")
    r = c.merge(repo, source, branch=args.into, message=args.message, strategy=args.strategy)
    emit(args, r, fmt.merge_text(r))
    return 0


def cmd_revert(args: argparse.Namespace, c: Client) -> int:
    repo, commit, _ = parse_spec(args.spec, want_path=False)
    if commit is None:
        raise UsageError(f"{args.spec!r}: name the commit to revert, REPO@COMMIT")
    r = c.revert(repo, commit, branch=args.branch, message=args.message)
    emit(args, r, fmt.revert_text(r))
    return 0


def cmd_discard(args: argparse.Namespace, c: Client) -> int:
    repo, branch = _branch_spec(args.spec)
    r = c.discard(repo, args.paths, branch=branch)
    emit(args, r, f"discarded {r.discarded} staged path(s)" if args.paths else "discarded the staged changes")
    return 0


def cmd_ls(args: argparse.Namespace, c: Client) -> int:
    repo, ref, path = parse_spec(args.spec)
    if args.json:
        emit(args, c.ls(repo, path, ref=ref))
        return 0
    print_lines(fmt.entry_line(e) for e in c.ls_stream(repo, path, ref=ref))
    return 0


def cmd_cat(args: argparse.Namespace, c: Client) -> int:
    repo, ref, path = parse_spec(args.spec)
    out = sys.stdout.buffer
    c.cat_to(repo, path, out, ref=ref)
    out.flush()
    return 0


def cmd_get(args: argparse.Namespace, c: Client) -> int:
    repo, ref, path = parse_spec(args.spec)
    bar = progress_bar("get")
    try:
        r = c.get(repo, path, args.local, ref=ref, progress=bar, preserve_setuid=args.preserve_setuid)
    finally:
        if bar:
            bar.close()
    emit(args, r)
    for local, why in r.not_written.items():   # as cp -a: say what was not made, go on, and fail
        print(f"trunkfs: skipped {local}: {why}", file=sys.stderr)
    if r.skipped:  # as cp -r: say what was left out, and fail
        for rel in r.skipped_paths:
            print(f"trunkfs: skipped {repo}:{fmt.repo_path(path.rstrip('/') + '/' + rel)}: permission denied",
                  file=sys.stderr)
        more = r.skipped - len(r.skipped_paths)
        if more > 0:
            print(f"trunkfs: skipped {more} more entries you may not read", file=sys.stderr)
        return 1
    return 1 if r.not_written else 0


def cmd_log(args: argparse.Namespace, c: Client) -> int:
    repo, ref, _ = parse_spec(args.spec, want_path=False)
    if args.json:
        commits = c.log(repo, ref=ref, limit=args.limit)
        emit(args, commits)
        return 0
    for i, commit in enumerate(c.log_stream(repo, ref=ref, limit=args.limit)):
        print(("\n" if i else "") + fmt.commit_text(commit))
    return 0


def cmd_show(args: argparse.Namespace, c: Client) -> int:
    repo, ref, _ = parse_spec(args.spec, want_path=False)
    r = c.show(repo, ref)
    emit(args, r, fmt.commit_text(r, full=True))
    return 0


def cmd_diff(args: argparse.Namespace, c: Client) -> int:
    repo, ref1, _ = parse_spec(args.spec1, want_path=False)
    ref2 = None
    if args.spec2:
        repo2, ref2, _ = parse_spec(args.spec2, want_path=False)
        if repo2 != repo:
            raise UsageError("diff compares two refs of the same repo")
        ref2 = ref2 or "main"
    if args.json:
        emit(args, c.diff(repo, ref1 or "main", ref2))
        return 0
    _, changes = c.diff_stream(repo, ref1 or "main", ref2)
    print_lines(fmt.change_line(ch) for ch in changes)
    return 0


def cmd_provenance(args: argparse.Namespace, c: Client) -> int:
    repo, ref, _ = parse_spec(args.spec, want_path=False)
    steps = c.provenance(repo, ref)
    emit(args, steps, fmt.provenance_text(steps))
    return 0


def cmd_fsck(args: argparse.Namespace, c: Client) -> int:
    r = c.fsck(rebuild_index=args.rebuild_index, read_data=args.read_data)
    emit(args, r, fmt.fsck_text(r, args.read_data))
    return 0 if r.ok else 1


def cmd_fleet(args: argparse.Namespace, c: Client) -> int:
    members = c.fleet()
    emit(args, members, "\n".join(fmt.fleet_line(m) for m in members))
    return 0


def cmd_stats(args: argparse.Namespace, c: Client) -> int:
    r = c.stats()
    emit(args, r, fmt.stats_text(r))
    return 0


def cmd_console(args: argparse.Namespace, c: Client) -> int:
    r = c.console(revoke=args.revoke)
    if args.json:
        print(json.dumps(r, sort_keys=True))
    elif args.revoke:
        print(f"revoked {r['revoked']} console token(s) of uid {r['uid']}")
    else:
        print(r["url"])
    return 0


def _read_spec(path: str) -> dict:
    from ..pipelines.spec import parse_spec_text
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from None
    try:
        return parse_spec_text(text, path)
    except Exception as exc:  # InvalidArgument from the parser
        raise UsageError(str(exc)) from None


def cmd_pipeline(args: argparse.Namespace, c: Client) -> int:
    if args.action == "create":
        p = c.pipeline_create(_read_spec(args.file))
        emit(args, p, f"created pipeline {fmt.pipeline_line(p)}")
    elif args.action == "update":
        p = c.pipeline_update(_read_spec(args.file), reprocess=args.reprocess)
        note = p.raw.get("note") if isinstance(p.raw, dict) else None
        emit(args, p, f"updated pipeline {fmt.pipeline_line(p)}" + (f"\n({note})" if note else ""))
    elif args.action == "list":
        pipelines = c.pipeline_list()
        emit(args, pipelines, fmt.pipelines_text(pipelines))
    elif args.action == "show":
        p = c.pipeline_show(args.name)
        emit(args, p, fmt.pipeline_text(p))
    else:
        emit(args, c.pipeline_delete(args.name), f"deleted pipeline {args.name}")
    return 0


def cmd_job(args: argparse.Namespace, c: Client) -> int:
    if args.action == "list":
        jobs = c.job_list(args.pipeline)
        emit(args, jobs, fmt.jobs_text(jobs))
        return 0
    if args.action == "logs":
        logs = c.job_logs(args.id, args.datum)
        emit(args, logs, fmt.job_logs_text(logs))
        return 0
    job = {"show": c.job_show, "wait": c.job_wait, "cancel": c.job_cancel}[args.action](args.id)
    emit(args, job, fmt.job_text(job))
    if args.action == "wait":
        return 0 if job.state == "succeeded" else 1
    return 0


def cmd_executor(args: argparse.Namespace, c: Client) -> int:
    executors = c.executor_list()
    emit(args, executors, "\n".join(fmt.executor_line(e) for e in executors))
    return 0


def cmd_watch(args: argparse.Namespace, c: Client) -> int:
    repo, branch, _ = parse_spec(args.spec, want_path=False)
    try:
        with c.watch(repo, branch) as events:
            for e in events:
                print(json.dumps(e.raw, sort_keys=True) if args.json else fmt.event_line(e), flush=True)
    except KeyboardInterrupt:
        return 0
    return 0


def cmd_umount(args: argparse.Namespace, c: Client) -> int:
    emit(args, c.stop(), "daemon stopping")
    return 0


def cmd_daemon(args: argparse.Namespace) -> int:
    from .config import load_config
    from .main import run_daemon
    config = load_config(args.config, {
        "store": args.store, "state": args.state, "socket": args.socket, "mount": args.mount,
        "s3_endpoint": args.s3_endpoint, "s3_region": args.s3_region,
        "socket_group": args.socket_group, "compression_level": args.compression_level,
        "log_level": args.log_level, "allow_other": args.allow_other,
        "cache_size": args.cache_size, "cache_local": args.cache_local,
        "cache_memory": args.cache_memory, "tree_cache": args.tree_cache, "readahead": args.readahead,
        "read_requests": args.read_requests, "read_request_size": args.read_request_size,
        "uid": args.uid, "gid": args.gid, "run_jobs": args.run_jobs, "executor": args.executor,
        "http": args.http, "metrics_auth": args.metrics_auth, "writeback_cache": args.writeback_cache,
        "listing": args.listing, "staging_entries": args.staging_entries,
        "request_loop": args.request_loop})
    return run_daemon(config)


# -- parser -------------------------------------------------------------------
