"""The ``trunkfs`` command: argparse and formatting over the client
(:mod:`trunkfs.client`); how each kind of object is shown is in
:mod:`trunkfs.daemon.format`.

Every command but ``daemon`` is one or more requests on the socket, so a
program can do all the CLI does.  Paths are ``REPO[@REF][:/PATH]``.  Errors go
to stderr with a non-zero exit status; ``--json`` prints the daemon's reply
on stdout, as it came.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence

from ..client import Client, ClientError, Result
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
    else:
        emit(args, c.branch_delete(repo, branch), f"deleted branch {repo}@{branch}")
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
        print(f"trunkfs: skipping {path}: not a regular file, directory or symlink", file=sys.stderr)
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


def cmd_status(args: argparse.Namespace, c: Client) -> int:
    repo, branch = _branch_spec(args.spec)
    r = c.status(repo, branch)
    emit(args, r, fmt.changes_text(r.changes))
    return 0


def cmd_commit(args: argparse.Namespace, c: Client) -> int:
    repo, branch = _branch_spec(args.spec)
    bar = progress_bar("commit", args)
    try:
        r = c.commit(repo, branch=branch, message=args.message, allow_empty=args.allow_empty,
                     progress=bar)
    finally:
        if bar:
            bar.close()
    emit(args, r, r.commit)
    return 0


def cmd_discard(args: argparse.Namespace, c: Client) -> int:
    repo, branch = _branch_spec(args.spec)
    r = c.discard(repo, args.paths, branch=branch)
    emit(args, r, f"discarded {r.discarded} staged path(s)" if args.paths else "discarded the staged changes")
    return 0


def cmd_ls(args: argparse.Namespace, c: Client) -> int:
    repo, ref, path = parse_spec(args.spec)
    r = c.ls(repo, path, ref=ref)
    emit(args, r, fmt.listing_text(r))
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
        r = c.get(repo, path, args.local, ref=ref, progress=bar)
    finally:
        if bar:
            bar.close()
    emit(args, r)
    return 0


def cmd_log(args: argparse.Namespace, c: Client) -> int:
    repo, ref, _ = parse_spec(args.spec, want_path=False)
    commits = c.log(repo, ref=ref, limit=args.limit)
    emit(args, commits, fmt.commits_text(commits))
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
    r = c.diff(repo, ref1 or "main", ref2)
    emit(args, r, fmt.changes_text(r.changes))
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


def cmd_stats(args: argparse.Namespace, c: Client) -> int:
    r = c.stats()
    emit(args, r, fmt.stats_text(r))
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
        emit(args, p, f"updated pipeline {fmt.pipeline_line(p)}")
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
        "uid": args.uid, "gid": args.gid})
    return run_daemon(config)


# -- parser -------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="print machine-readable JSON")
    p = argparse.ArgumentParser(prog="trunkfs", parents=[common],
                                description="Versioned data repositories, stored deduplicated; "
                                            "paths are REPO[@REF][:/PATH].")
    sub = p.add_subparsers(dest="command", required=True)

    d = sub.add_parser("daemon", parents=[common], help="run the daemon in the foreground")
    d.add_argument("--config", help="TOML config file")
    d.add_argument("--store", help="store URL: file:///path or s3://bucket/prefix")
    d.add_argument("--state", help="state directory (index, temp files)")
    d.add_argument("--socket", help="control socket path")
    d.add_argument("--socket-group", help="group allowed to use the socket (mode 0660)")
    d.add_argument("--mount", help="mount point (an empty directory)")
    d.add_argument("--allow-other", action="store_true", default=None,
                   help="let other users (and containers) read the mount")
    d.add_argument("--cache-size", help="chunk cache bound, e.g. 10G (default 10%% of free disk, at most 10G)")
    d.add_argument("--cache-local", action="store_true", default=None,
                   help="keep the disk cache even for a local store (default: memory only)")
    d.add_argument("--uid", type=int, help="owner uid shown for files (default: the daemon's)")
    d.add_argument("--gid", type=int, help="owner gid shown for files")
    d.add_argument("--s3-endpoint", help="endpoint URL of an S3-compatible server")
    d.add_argument("--s3-region", help="S3 region")
    d.add_argument("--compression-level", type=int, help="zstd level (default 1)")
    d.add_argument("--log-level", help="DEBUG, INFO, WARNING or ERROR")
    d.set_defaults(func=None)

    r = sub.add_parser("repo", parents=[common], help="create, list, delete repos")
    rs = r.add_subparsers(dest="action", required=True)
    for action in ("create", "delete"):
        x = rs.add_parser(action, parents=[common])
        x.add_argument("name")
    rs.add_parser("list", parents=[common])
    r.set_defaults(func=cmd_repo)

    b = sub.add_parser("branch", parents=[common], help="create, list, delete branches")
    bs = b.add_subparsers(dest="action", required=True)
    x = bs.add_parser("create", parents=[common])
    x.add_argument("spec", metavar="REPO@NEW")
    x.add_argument("--from", dest="from_ref", help="branch or commit to start from (default main)")
    x = bs.add_parser("list", parents=[common])
    x.add_argument("spec", metavar="REPO")
    x = bs.add_parser("delete", parents=[common])
    x.add_argument("spec", metavar="REPO@BRANCH")
    b.set_defaults(func=cmd_branch)

    x = sub.add_parser("put", parents=[common], help="put local files/dirs into a branch, as one commit")
    x.add_argument("spec", metavar="REPO[@BRANCH][:/DEST]")
    x.add_argument("local", nargs="+", metavar="LOCAL")
    x.add_argument("-m", "--message", default="")
    x.set_defaults(func=cmd_put)

    x = sub.add_parser("rm", parents=[common], help="remove paths from a branch, as one commit")
    x.add_argument("spec", nargs="+", metavar="REPO[@BRANCH]:/PATH")
    x.add_argument("-m", "--message", default="")
    x.set_defaults(func=cmd_rm)

    x = sub.add_parser("status", parents=[common], help="staged changes of a branch (A, M, D)")
    x.add_argument("spec", metavar="REPO[@BRANCH]")
    x.set_defaults(func=cmd_status)

    x = sub.add_parser("commit", parents=[common], help="commit a branch's staged changes")
    x.add_argument("spec", metavar="REPO[@BRANCH]")
    x.add_argument("-m", "--message", default="")
    x.add_argument("--allow-empty", action="store_true", help="commit even when nothing is staged")
    x.set_defaults(func=cmd_commit)

    x = sub.add_parser("discard", parents=[common], help="drop staged changes (all, or those paths)")
    x.add_argument("spec", metavar="REPO[@BRANCH]")
    x.add_argument("paths", nargs="*", metavar="PATH")
    x.set_defaults(func=cmd_discard)

    x = sub.add_parser("get", parents=[common], help="copy a file or directory out (cp -r semantics)")
    x.add_argument("spec", metavar="REPO@REF:/PATH")
    x.add_argument("local", metavar="LOCAL")
    x.set_defaults(func=cmd_get)

    x = sub.add_parser("cat", parents=[common], help="print a file")
    x.add_argument("spec", metavar="REPO@REF:/PATH")
    x.set_defaults(func=cmd_cat)

    x = sub.add_parser("ls", parents=[common], help="list a directory")
    x.add_argument("spec", metavar="REPO@REF[:/PATH]")
    x.set_defaults(func=cmd_ls)

    x = sub.add_parser("log", parents=[common], help="commits of a branch, newest first")
    x.add_argument("spec", metavar="REPO[@REF]")
    x.add_argument("-n", "--limit", type=int, default=0)
    x.set_defaults(func=cmd_log)

    x = sub.add_parser("show", parents=[common], help="one commit in full")
    x.add_argument("spec", metavar="REPO@REF")
    x.set_defaults(func=cmd_show)

    x = sub.add_parser("diff", parents=[common], help="added, modified, deleted paths")
    x.add_argument("spec1", metavar="REPO@REF1")
    x.add_argument("spec2", nargs="?", metavar="REPO@REF2")
    x.set_defaults(func=cmd_diff)

    x = sub.add_parser("fsck", parents=[common], help="check every reachable object")
    x.add_argument("--rebuild-index", action="store_true", help="rebuild the local index from the store first")
    x.add_argument("--read-data", action="store_true", help="also read and verify every chunk")
    x.set_defaults(func=cmd_fsck)

    x = sub.add_parser("stats", parents=[common], help="store figures")
    x.set_defaults(func=cmd_stats)

    pl = sub.add_parser("pipeline", parents=[common], help="register, list, show, update, delete pipelines")
    ps = pl.add_subparsers(dest="action", required=True)
    for action in ("create", "update"):
        x = ps.add_parser(action, parents=[common])
        x.add_argument("-f", "--file", required=True, help="the spec, TOML or JSON")
        if action == "update":
            x.add_argument("--reprocess", action="store_true",
                           help="run the new version on the input branch's current head")
    ps.add_parser("list", parents=[common])
    for action in ("show", "delete"):
        x = ps.add_parser(action, parents=[common])
        x.add_argument("name")
    pl.set_defaults(func=cmd_pipeline)

    jb = sub.add_parser("job", parents=[common], help="pipeline jobs: list, show, logs, wait, cancel")
    js = jb.add_subparsers(dest="action", required=True)
    x = js.add_parser("list", parents=[common])
    x.add_argument("pipeline", nargs="?")
    for action in ("show", "wait", "cancel"):
        x = js.add_parser(action, parents=[common])
        x.add_argument("id")
    x = js.add_parser("logs", parents=[common])
    x.add_argument("id")
    x.add_argument("--datum", help="only this datum's logs")
    jb.set_defaults(func=cmd_job)

    x = sub.add_parser("watch", parents=[common], help="stream new commits and job changes, one line each")
    x.add_argument("spec", metavar="REPO[@BRANCH]")
    x.set_defaults(func=cmd_watch)

    x = sub.add_parser("provenance", parents=[common], help="where a commit's data came from, upstream")
    x.add_argument("spec", metavar="REPO@REF")
    x.set_defaults(func=cmd_provenance)

    x = sub.add_parser("umount", parents=[common], help="ask the daemon to unmount and stop")
    x.set_defaults(func=cmd_umount)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "daemon":
        try:
            return cmd_daemon(args)
        except Exception as exc:  # configuration errors
            from ..store.errors import TrunkError
            if isinstance(exc, TrunkError):
                print(f"trunkfs: {exc}", file=sys.stderr)
                return 2
            raise
    try:
        with Client() as client:
            return args.func(args, client)
    except UsageError as exc:
        print(f"trunkfs: {exc}", file=sys.stderr)
        return 2
    except ClientError as exc:
        if args.json:
            print(json.dumps({"ok": False, "error": {"code": exc.code, "message": str(exc)}}))
        print(f"trunkfs: {exc}", file=sys.stderr)
        return 1
    except (BrokenPipeError, ConnectionResetError):
        print("trunkfs: the daemon closed the connection", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"trunkfs: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
