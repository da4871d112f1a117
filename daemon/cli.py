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
import select
import signal
import sys

from ..client import Client, ClientError
from .commands import (UsageError, cmd_branch, cmd_cat, cmd_commit, cmd_console, cmd_daemon, cmd_diff,
                       cmd_discard, cmd_executor, cmd_fsck, cmd_gc, cmd_get, cmd_job, cmd_log, cmd_ls, cmd_merge, cmd_pipeline,
                       cmd_fleet, cmd_provenance, cmd_put, cmd_repo, cmd_retention, cmd_revert, cmd_rm, cmd_show,
                       cmd_stats, cmd_status, cmd_tag,
                       cmd_umount, cmd_watch, parse_spec)
from .terminal import setup_stdout

__all__ = ["build_parser", "main", "parse_spec"]


def build_parser() -> argparse.ArgumentParser:
    # --json before or after the subcommand; SUPPRESS keeps a subparser from
    # resetting a --json given before it to False
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                        help="print machine-readable JSON")
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
    d.add_argument("--no-writeback-cache", dest="writeback_cache", action="store_false", default=None,
                   help="send every write to the daemon at once (a staging quota refusal is then "
                        "EDQUOT at write(2), not ENOSPC at close)")
    d.add_argument("--cache-size", help="chunk cache bound, e.g. 10G (default 10%% of free disk, at most 10G)")
    d.add_argument("--cache-local", action="store_true", default=None,
                   help="keep the disk cache even for a local store (default: memory only)")
    d.add_argument("--cache-memory", help="the chunk cache's memory layer (default 96M on S3, 32M on a local store)")
    d.add_argument("--tree-cache", help="decoded trees kept in memory, with their name indexes (default 64M)")
    d.add_argument("--staging-entries", type=int,
                   help="staged entries kept in memory per branch; the rest are read back from the "
                        "staging journal when asked for (default 50000)")
    d.add_argument("--readahead", help="most bytes read ahead of one sequential reader "
                                       "(default 48M on S3, 16M local; at most half of --cache-memory; 0: off)")
    d.add_argument("--read-requests", type=int,
                   help="readahead requests to the store in flight at once, per daemon (default 4 on S3, 8 local)")
    d.add_argument("--read-request-size", help="most bytes one read request to the store asks for "
                                               "(default 40M on S3: a pack and its spill; 4M local)")
    d.add_argument("--http", metavar="HOST:PORT",
                   help="serve the web console and Prometheus metrics (/metrics) at http://HOST:PORT "
                        "(e.g. 127.0.0.1:8300; off loopback every request needs a token)")
    d.add_argument("--listing", choices=("auto", "whole", "names"),
                   help="how a directory listing sends its files: auto (by name only while few of them "
                        "are then looked up; the default), whole (with attributes), names")
    d.add_argument("--request-loop", choices=("lean", "stock"),
                   help="the lock pyfuse3's loop takes before it reads each FUSE request: lean (no trio "
                        "checkpoint when it is free: one scheduler pass less a request; the default) or "
                        "stock (pyfuse3's trio.Lock)")
    d.add_argument("--metrics-auth", choices=("auto", "token", "none"),
                   help="whether /metrics needs a console token (auto: not on loopback, yes elsewhere)")
    d.add_argument("--uid", type=int, help="owner uid shown for files (default: the daemon's)")
    d.add_argument("--gid", type=int, help="owner gid shown for files")
    d.add_argument("--s3-endpoint", help="endpoint URL of an S3-compatible server")
    d.add_argument("--s3-region", help="S3 region")
    d.add_argument("--compression-level", type=int, help="zstd level (default 1)")
    d.add_argument("--log-level", help="DEBUG, INFO, WARNING or ERROR")
    d.add_argument("--no-jobs", dest="run_jobs", action="store_false", default=None,
                   help="run no pipeline jobs here (other daemons on the store run them): "
                        "a read-only replica, a laptop")
    d.add_argument("--executor", action="append", metavar="NAME=tcp://HOST:PORT",
                   help="a Dask cluster pipelines may name as their executor (its scheduler's address); "
                        "repeatable; [executors.NAME] tables in the config file say more")
    d.set_defaults(func=None)

    r = sub.add_parser("repo", parents=[common], help="create, list, delete repos; their access lists")
    rs = r.add_subparsers(dest="action", required=True)
    for action in ("create", "delete"):
        x = rs.add_parser(action, parents=[common])
        x.add_argument("name")
    rs.add_parser("list", parents=[common])
    x = rs.add_parser("acl", parents=[common], help="show a repo's owner and access list, or change it",
                      description="Roles: read < write < admin (each implies the ones before). "
                                  "PRINCIPAL is user:NAME, group:NAME or everyone.")
    x.add_argument("name", metavar="REPO")
    x.add_argument("--grant", action="append", metavar="PRINCIPAL=ROLE",
                   help="give a role (replacing the principal's entry); repeatable")
    x.add_argument("--revoke", action="append", metavar="PRINCIPAL", help="remove an entry; repeatable")
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
    x = bs.add_parser("reset", parents=[common], help="move a branch to another commit (admin only)")
    x.add_argument("spec", metavar="REPO@BRANCH")
    x.add_argument("--to", dest="to_ref", required=True, metavar="REF", help="a branch, tag or commit")
    b.set_defaults(func=cmd_branch)

    r2 = sub.add_parser("retention", parents=[common],
                        help="how much history the collector keeps: set, show, clear a repo's rules")
    rs2 = r2.add_subparsers(dest="action", required=True)
    x = rs2.add_parser("set", parents=[common], help="keep the newest N commits and/or the last D days")
    x.add_argument("repo", metavar="REPO")
    x.add_argument("--branch", help="the rule of this branch only (default: the repo's)")
    x.add_argument("--keep-last", type=int, metavar="N")
    x.add_argument("--keep-days", type=float, metavar="D")
    x = rs2.add_parser("show", parents=[common])
    x.add_argument("repo", metavar="REPO")
    x = rs2.add_parser("clear", parents=[common], help="keep the whole history again")
    x.add_argument("repo", metavar="REPO")
    x.add_argument("--branch")
    r2.set_defaults(func=cmd_retention)

    x = sub.add_parser("gc", parents=[common], help="delete what nothing live refers to (root only)")
    x.add_argument("--dry-run", action="store_true", help="report what would go; change nothing")
    x.add_argument("--grace", metavar="DURATION",
                   help="never delete objects younger than this (default 24h; e.g. 30m, 2h, 7d, 0)")
    x.add_argument("--max-unused", type=float, metavar="SHARE",
                   help="repack live packs with more garbage than this share (default 0.3; 1: never)")
    x.set_defaults(func=cmd_gc)

    t = sub.add_parser("tag", parents=[common], help="name a commit for good: create, list, delete tags")
    ts = t.add_subparsers(dest="action", required=True)
    x = ts.add_parser("create", parents=[common])
    x.add_argument("spec", metavar="REPO[@REF]", help="the commit to tag (default: the head of main)")
    x.add_argument("name", metavar="NAME")
    x = ts.add_parser("list", parents=[common])
    x.add_argument("spec", metavar="REPO")
    x = ts.add_parser("delete", parents=[common], help="delete a tag (admin only)")
    x.add_argument("spec", metavar="REPO")
    x.add_argument("name", metavar="NAME")
    t.set_defaults(func=cmd_tag)

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
    x.add_argument("--force", action="store_true",
                   help="keep the staged version of paths the branch changed since they were staged "
                        "(else such a commit fails with a conflict naming them)")
    x.set_defaults(func=cmd_commit)

    x = sub.add_parser("discard", parents=[common], help="drop staged changes (all, or those paths)")
    x.add_argument("spec", metavar="REPO[@BRANCH]")
    x.add_argument("paths", nargs="*", metavar="PATH")
    x.set_defaults(func=cmd_discard)

    x = sub.add_parser("merge", parents=[common], help="merge a branch or commit into a branch",
                       description="Fast-forward when the target branch is behind SOURCE, else "
                                   "commit a three-way merge with two parents.  A path both sides "
                                   "changed differently is a conflict: nothing changes, and every "
                                   "such path is listed.  Staged changes of the target stay staged.")
    x.add_argument("spec", metavar="REPO@SOURCE")
    x.add_argument("--into", metavar="BRANCH", help="the branch merged into (default main)")
    x.add_argument("-m", "--message", default="")
    x.add_argument("--strategy", choices=("ours", "theirs"),
                   help="settle every conflicting path with the target's (ours) or the source's (theirs) version")
    x.set_defaults(func=cmd_merge)

    x = sub.add_parser("revert", parents=[common], help="commit the undoing of one commit",
                       description="A new commit on BRANCH that undoes what COMMIT changed against "
                                   "its (first) parent; COMMIT must be in BRANCH's history.  A path "
                                   "a later commit changed again is a conflict.")
    x.add_argument("spec", metavar="REPO@COMMIT")
    x.add_argument("--branch", help="where the revert is committed (default main)")
    x.add_argument("-m", "--message", default="")
    x.set_defaults(func=cmd_revert)

    x = sub.add_parser("get", parents=[common], help="copy a file or directory out (cp -r semantics)")
    x.add_argument("spec", metavar="REPO@REF:/PATH")
    x.add_argument("local", metavar="LOCAL")
    x.add_argument("--preserve-setuid", action="store_true",
                   help="restore setuid and setgid bits of files (only when run as root)")
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

    x = sub.add_parser("console", parents=[common],
                       help="print a URL of the web console with a token for you (the daemon needs --http)")
    x.add_argument("--revoke", action="store_true", help="invalidate every console token of your uid")
    x.set_defaults(func=cmd_console)

    x = sub.add_parser("fleet", parents=[common], help="the daemons sharing the store, last seen first")
    x.set_defaults(func=cmd_fleet)

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

    ex = sub.add_parser("executor", parents=[common],
                        help="where pipelines may run: the executors this daemon lists, and whether they answer")
    exs = ex.add_subparsers(dest="action", required=True)
    exs.add_parser("list", parents=[common])
    ex.set_defaults(func=cmd_executor)

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
    args.json = getattr(args, "json", False)
    setup_stdout()
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
            error: dict = {"code": exc.code, "message": str(exc)}
            if exc.details:
                error["details"] = exc.details
            print(json.dumps({"ok": False, "error": error}))
        print(f"trunkfs: {exc}", file=sys.stderr)
        return 1
    except (BrokenPipeError, ConnectionResetError):
        if stdout_reader_gone():   # `trunkfs log | head`: end quietly, as git does
            return quiet_sigpipe_exit()
        print("trunkfs: the daemon closed the connection", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"trunkfs: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def stdout_reader_gone() -> bool:
    """Whether standard output is a pipe whose reader closed it."""
    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(ev & select.POLLERR for _, ev in poller.poll(0))
    except (OSError, ValueError):
        return False


def quiet_sigpipe_exit() -> int:
    """The status of a process ended by SIGPIPE, with nothing more written:
    standard output goes to /dev/null so that the last flush cannot fail."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return 128 + signal.SIGPIPE


if __name__ == "__main__":
    sys.exit(main())

