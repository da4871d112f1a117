"""The ``trunkfs`` command: a client of the daemon's control socket.

Every command but ``daemon`` is one or more requests on the socket, so a
program can do all the CLI does.  Paths are ``REPO[@REF][:/PATH]``.  Errors go
to stderr with a non-zero exit status; ``--json`` prints machine-readable
results on stdout.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import stat as statmod
import sys
import time

from ..client import Client, ClientError, file_frames


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


# -- output -------------------------------------------------------------------

def emit(args: argparse.Namespace, result: object, text: str | None = None) -> None:
    if args.json:
        print(json.dumps(result, indent=None, sort_keys=True))
    elif text is not None:
        if text:
            print(text)


def human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def when(ts: float) -> str:
    return datetime.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")


class Progress:
    """A one-line progress bar on stderr, only when stderr is a terminal."""

    def __init__(self, total: int, label: str, start: float | None = None) -> None:
        self.total = total
        self.label = label
        self.done = 0
        self.enabled = sys.stderr.isatty() and total >= 32 * 1024 * 1024
        self._last = 0.0
        self._start = time.monotonic() if start is None else start

    def add(self, n: int) -> None:
        self.done += n
        now = time.monotonic()
        if self.enabled and now - self._last > 0.2:
            self._last = now
            frac = self.done / self.total if self.total else 1
            rate = self.done / max(now - self._start, 1e-6)
            bar = "#" * int(frac * 30)
            sys.stderr.write(f"\r{self.label} [{bar:<30}] {frac * 100:5.1f}% "
                             f"{human(self.done)}/{human(self.total)} {human(rate)}/s ")
            sys.stderr.flush()

    def close(self) -> None:
        if self.enabled:
            sys.stderr.write("\r" + " " * 90 + "\r")
            sys.stderr.flush()


# -- commands -----------------------------------------------------------------

def cmd_repo(args: argparse.Namespace, c: Client) -> int:
    if args.action == "create":
        r = c.call("repo.create", name=args.name)
        emit(args, r, f"created repo {args.name}")
    elif args.action == "delete":
        r = c.call("repo.delete", name=args.name)
        emit(args, r, f"deleted repo {args.name}")
    else:
        r = c.call("repo.list")
        emit(args, r, "\n".join(f"{x['name']:<24} {human(x['size']):>10}  {(x['head'] or '-')[:12]}  "
                                f"branches: {', '.join(x['branches'])}" for x in r))
    return 0


def cmd_branch(args: argparse.Namespace, c: Client) -> int:
    if args.action == "list":
        r = c.call("branch.list", repo=args.spec)
        emit(args, r, "\n".join(f"{x['name']:<24} {x['head'] or '-'}" for x in r))
        return 0
    repo, branch, path = parse_spec(args.spec, want_path=False)
    if not branch:
        raise UsageError("name the branch: REPO@BRANCH")
    if args.action == "create":
        r = c.call("branch.create", repo=repo, branch=branch, **{"from": args.from_ref})
        emit(args, r, f"created branch {repo}@{branch} at {(r['head'] or '-')[:12]}")
    else:
        r = c.call("branch.delete", repo=repo, branch=branch)
        emit(args, r, f"deleted branch {repo}@{branch}")
    return 0


def _walk_local(local: str, rel: str):
    """Yield (relative path, lstat result, absolute path), directories first."""
    st = os.lstat(local)
    yield rel, st, local
    if statmod.S_ISDIR(st.st_mode):
        with os.scandir(local) as it:
            names = sorted(e.name for e in it)
        for name in names:
            yield from _walk_local(os.path.join(local, name), f"{rel}/{name}")


def cmd_put(args: argparse.Namespace, c: Client) -> int:
    repo, branch, dest = parse_spec(args.spec)
    for local in args.local:
        if not os.path.lexists(local):
            raise UsageError(f"{local}: no such file or directory")
    progress = Progress(0, "put")
    if progress.enabled or sys.stderr.isatty():
        total = 0
        for local in args.local:
            for _, st, _ in _walk_local(local, ""):
                if statmod.S_ISREG(st.st_mode):
                    total += st.st_size
        progress = Progress(total, "put")
    c.send({"op": "put", "args": {"repo": repo, "branch": branch, "dest": dest,
                                  "message": args.message}})
    skipped = 0
    try:
        for local in args.local:
            base = os.path.basename(os.path.normpath(local)) or "root"
            for rel, st, path in _walk_local(local, base):
                head = {"path": rel, "mode": statmod.S_IMODE(st.st_mode), "mtime": st.st_mtime_ns}
                if statmod.S_ISDIR(st.st_mode):
                    c.send({"entry": dict(head, type="dir")})
                elif statmod.S_ISLNK(st.st_mode):
                    c.send({"entry": dict(head, type="symlink", target=os.readlink(path))})
                elif statmod.S_ISREG(st.st_mode):
                    try:
                        _, frames = file_frames(path)
                    except OSError as exc:
                        raise ClientError("io_error", f"cannot read {path}: {exc.strerror}") from None
                    c.send({"entry": dict(head, type="file")})
                    for data in frames:
                        c.send_data(data)
                        progress.add(len(data))
                    c.send({"eof": True})
                else:
                    skipped += 1
                    print(f"trunkfs: skipping {path}: not a regular file, directory or symlink",
                          file=sys.stderr)
        c.send({"end": True})
    except (BrokenPipeError, ConnectionResetError):
        progress.close()
        raise c.reply_after_broken_pipe() from None
    r = c.read_reply()
    progress.close()
    emit(args, r, r["commit"])
    return 0


def cmd_rm(args: argparse.Namespace, c: Client) -> int:
    repo = branch = None
    paths = []
    for spec in args.spec:
        rp, br, path = parse_spec(spec)
        if repo is not None and (rp, br) != (repo, branch):
            raise UsageError("every path of one rm must be in the same REPO@BRANCH")
        if path == "/":
            raise UsageError(f"{spec}: name a path to remove")
        repo, branch = rp, br
        paths.append(path)
    r = c.call("rm", repo=repo, branch=branch, paths=paths, message=args.message)
    emit(args, r, r["commit"])
    return 0


def _branch_spec(spec: str) -> tuple[str, str | None]:
    repo, branch, path = parse_spec(spec, want_path=False)
    return repo, branch


def cmd_status(args: argparse.Namespace, c: Client) -> int:
    repo, branch = _branch_spec(args.spec)
    r = c.call("status", repo=repo, branch=branch)
    emit(args, r, "\n".join(f"{ch['status']} {ch['path']}" for ch in r["changes"]))
    return 0


def cmd_commit(args: argparse.Namespace, c: Client) -> int:
    repo, branch = _branch_spec(args.spec)
    show = sys.stderr.isatty() and not args.json
    started = time.monotonic()
    c.send({"op": "commit", "args": {k: v for k, v in dict(
        repo=repo, branch=branch, message=args.message, allow_empty=args.allow_empty,
        progress=show).items() if v is not None}})
    bar: Progress | None = None
    try:
        while True:
            msg = c.read_message()
            if "progress" in msg and "ok" not in msg:
                if bar is None:
                    bar = Progress(msg["total"], "commit", started)
                bar.add(msg["progress"] - bar.done)
                continue
            break
    finally:
        if bar is not None:
            bar.close()
    if not msg.get("ok"):
        err = msg.get("error") or {}
        raise ClientError(err.get("code", "error"), err.get("message", "unknown error"))
    r = msg["result"]
    emit(args, r, r["commit"])
    return 0


def cmd_discard(args: argparse.Namespace, c: Client) -> int:
    repo, branch = _branch_spec(args.spec)
    r = c.call("discard", repo=repo, branch=branch, paths=args.paths)
    emit(args, r, f"discarded {r['discarded']} staged path(s)" if args.paths else "discarded the staged changes")
    return 0


def cmd_ls(args: argparse.Namespace, c: Client) -> int:
    repo, ref, path = parse_spec(args.spec)
    r = c.call("ls", repo=repo, ref=ref, path=path)
    lines = []
    for e in r["entries"]:
        kind = {"dir": "d", "file": "-", "symlink": "l"}.get(e["type"], "?")
        size = e.get("size", 0)
        name = e["name"] + ("/" if e["type"] == "dir" else "")
        if e["type"] == "symlink":
            name += f" -> {e.get('target')}"
        lines.append(f"{kind}{statmod.filemode(e.get('mode') or 0)[1:]} {size:>14} "
                     f"{when((e.get('mtime') or 0) / 1e9)}  {name}")
    emit(args, r, "\n".join(lines))
    return 0


def cmd_cat(args: argparse.Namespace, c: Client) -> int:
    repo, ref, path = parse_spec(args.spec)
    c.send({"op": "get", "args": {"repo": repo, "ref": ref, "path": path, "file_only": True}})
    c.read_reply()
    out = sys.stdout.buffer
    while True:
        msg = c.read_message()
        if "data" in msg:
            out.write(c.read_exact(msg["data"]))
        elif msg.get("end"):
            break
        elif msg.get("ok") is False:
            raise ClientError(msg["error"]["code"], msg["error"]["message"])
    out.flush()
    return 0


def cmd_get(args: argparse.Namespace, c: Client) -> int:
    repo, ref, path = parse_spec(args.spec)
    c.send({"op": "get", "args": {"repo": repo, "ref": ref, "path": path}})
    info = c.read_reply()
    name = path.rstrip("/").rsplit("/", 1)[-1] or repo
    target = os.path.join(args.local, name) if os.path.isdir(args.local) else args.local
    progress = Progress(info.get("size", 0), "get")
    files = 0
    dirs_meta: list[tuple[str, dict]] = []
    out = None
    current: tuple[str, dict] | None = None
    while True:
        msg = c.read_message()
        if "data" in msg:
            data = c.read_exact(msg["data"])
            out.write(data)
            progress.add(len(data))
            continue
        if msg.get("ok") is False:
            raise ClientError(msg["error"]["code"], msg["error"]["message"])
        if msg.get("eof"):
            out.close()
            p, head = current
            os.chmod(p, head.get("mode") or 0o644)
            mt = head.get("mtime") or 0
            os.utime(p, ns=(mt, mt))
            files += 1
            continue
        if msg.get("end"):
            break
        head = msg["entry"]
        rel = head["path"]
        if rel.startswith("/") or ".." in rel.split("/"):
            raise ClientError("bad_reply", f"daemon sent an unsafe path {rel!r}")
        p = os.path.join(target, rel) if rel else target
        if head["type"] == "dir":
            os.makedirs(p, exist_ok=True)
            dirs_meta.append((p, head))
        elif head["type"] == "symlink":
            if os.path.lexists(p):
                os.unlink(p)
            os.symlink(head["target"], p)
        else:
            if os.path.islink(p):
                os.unlink(p)
            out = open(p, "wb")
            current = (p, head)
    for p, head in reversed(dirs_meta):
        os.chmod(p, head.get("mode") or 0o755)
        mt = head.get("mtime") or 0
        if mt:
            os.utime(p, ns=(mt, mt))
    progress.close()
    emit(args, {"path": target, "files": files, "commit": info.get("commit")}, "")
    return 0


def _print_commit(r: dict, full: bool) -> str:
    lines = [f"commit {r['id']}"]
    if full and r.get("branch"):
        lines[0] += f" ({r['branch']})"
    lines.append(f"Author: {r['author'].get('name', '?')} (uid {r['author'].get('uid', '?')})")
    lines.append(f"Date:   {when(r['time'])}")
    if r.get("parents"):
        lines.append("Parent: " + " ".join(p for p in r["parents"]))
    origin = r.get("origin") or {}
    if full:
        lines.append(f"Origin: {origin.get('kind', 'user')}")
        lines.append(f"Tree:   {r['tree']}")
        lines.append(f"Size:   {human(r['size'])} in {r['files']} files")
        for p in r.get("provenance") or []:
            lines.append(f"Provenance: {json.dumps(p, sort_keys=True)}")
    lines.append("")
    lines.append("    " + (r.get("message") or ""))
    return "\n".join(lines)


def cmd_log(args: argparse.Namespace, c: Client) -> int:
    repo, ref, _ = parse_spec(args.spec, want_path=False)
    r = c.call("log", repo=repo, ref=ref, limit=args.limit)
    emit(args, r, "\n\n".join(_print_commit(x, False) for x in r))
    return 0


def cmd_show(args: argparse.Namespace, c: Client) -> int:
    repo, ref, _ = parse_spec(args.spec, want_path=False)
    r = c.call("show", repo=repo, ref=ref)
    emit(args, r, _print_commit(r, True))
    return 0


def cmd_diff(args: argparse.Namespace, c: Client) -> int:
    repo, ref1, _ = parse_spec(args.spec1, want_path=False)
    ref2 = None
    if args.spec2:
        repo2, ref2, _ = parse_spec(args.spec2, want_path=False)
        if repo2 != repo:
            raise UsageError("diff compares two refs of the same repo")
        ref2 = ref2 or "main"
    r = c.call("diff", repo=repo, ref1=ref1 or "main", ref2=ref2)
    emit(args, r, "\n".join(f"{x['status']} {x['path']}" for x in r["changes"]))
    return 0


def cmd_fsck(args: argparse.Namespace, c: Client) -> int:
    r = c.call("fsck", rebuild_index=args.rebuild_index, read_data=args.read_data)
    text = "\n".join(r["problems"] + [
        f"{'ok' if r['ok'] else 'PROBLEMS FOUND'}: {r['commits']} commits, {r['trees']} trees, "
        f"{r['files']} files, {r['chunks']} chunks in {r['packs']} packs"
        + (f", {r['blobs_verified']} blobs verified" if args.read_data else "")])
    emit(args, r, text)
    return 0 if r["ok"] else 1


def cmd_stats(args: argparse.Namespace, c: Client) -> int:
    r = c.call("stats")
    cache = r.get("cache")
    extra = [] if not cache else [
        f"cache:         {human(cache['size'])} of {human(cache['limit'])} in {cache['entries']} chunks; "
        f"{cache['hits']} hits, {cache['misses']} misses, {human(cache['fetched_bytes'])} fetched"]
    emit(args, r, "\n".join([
        f"store:         {r['store']}",
        f"logical bytes: {human(r['logical_bytes'])} (all commits)",
        f"unique bytes:  {human(r['unique_bytes'])}",
        f"stored bytes:  {human(r['stored_bytes'])}",
        f"dedup ratio:   {r['dedup_ratio']}",
        f"chunks:        {r['chunks']}  trees: {r['trees']}  packs: {r['packs']}  commits: {r['commits']}"]
        + extra))
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


def _pipeline_text(p: dict) -> str:
    s = p["spec"]
    inp = s["input"]
    return (f"{p['name']} (version {p['version']}, owner uid {p['owner']['uid']}): "
            f"{inp['repo']}@{inp['branch']} {inp['glob']} -> {s['output']}: "
            f"{' '.join(s['transform']['cmd'])}")


def cmd_pipeline(args: argparse.Namespace, c: Client) -> int:
    if args.action in ("create", "update"):
        extra = {"reprocess": True} if getattr(args, "reprocess", False) else {}
        r = c.call(f"pipeline.{args.action}", spec=_read_spec(args.file), **extra)
        emit(args, r, f"{args.action}d pipeline {_pipeline_text(r)}")
    elif args.action == "list":
        r = c.call("pipeline.list")
        emit(args, r, "\n".join(_pipeline_text(p) for p in r))
    elif args.action == "show":
        r = c.call("pipeline.show", name=args.name)
        emit(args, r, _pipeline_text(r) + "\n" + json.dumps(r["spec"], indent=2, sort_keys=True))
    else:
        r = c.call("pipeline.delete", name=args.name)
        emit(args, r, f"deleted pipeline {args.name}")
    return 0


def _job_line(j: dict) -> str:
    d = j["datums"]
    out = (j.get("output_commit") or "-")[:12]
    dur = f"{j['duration']:.1f}s" if j.get("duration") is not None else "-"
    return (f"{j['id']}  {j['pipeline']:<16} {j['state']:<10} in {j['input']['repo']}@{j['input']['commit'][:12]}"
            f"  out {out}  datums {d['processed']}/{d['skipped']}/{d['failed']} of {d['total']}  {dur}")


def cmd_job(args: argparse.Namespace, c: Client) -> int:
    if args.action == "list":
        r = c.call("job.list", pipeline=args.pipeline)
        emit(args, r, "\n".join(_job_line(j) for j in r))
        return 0
    if args.action == "logs":
        r = c.call("job.logs", id=args.id, datum=args.datum)
        lines = [f"job {r['id']}: {r['state']}" + (f" ({r['error']})" if r.get("error") else "")]
        for label, e in r["logs"].items():
            lines.append(f"--- datum {label} ({', '.join(e['paths'])}): exit {e.get('exit')}, "
                         f"attempts {e.get('attempts')}" + (f", {e['error']}" if e.get("error") else ""))
            if e.get("stdout"):
                lines.append("stdout:\n" + e["stdout"].rstrip("\n"))
            if e.get("stderr"):
                lines.append("stderr:\n" + e["stderr"].rstrip("\n"))
        emit(args, r, "\n".join(lines))
        return 0
    op = {"show": "job.show", "wait": "job.wait", "cancel": "job.cancel"}[args.action]
    r = c.call(op, id=args.id)
    emit(args, r, _job_line(r) + (f"\nerror: {r['error']}" if r.get("error") else ""))
    if args.action == "wait":
        return 0 if r["state"] == "succeeded" else 1
    return 0


def cmd_provenance(args: argparse.Namespace, c: Client) -> int:
    repo, ref, _ = parse_spec(args.spec, want_path=False)
    r = c.call("provenance", repo=repo, ref=ref)
    lines = []
    for x in r:
        o = x["origin"]
        how = (f"pipeline {o.get('pipeline')} v{o.get('version')} job {o.get('job')}"
               if o.get("kind") == "pipeline" else o.get("kind", "user"))
        lines.append(f"{'  ' * x['depth']}{x['repo']}@{x['commit'][:12]}  ({how})")
    emit(args, r, "\n".join(lines))
    return 0


def cmd_watch(args: argparse.Namespace, c: Client) -> int:
    repo, branch, _ = parse_spec(args.spec, want_path=False)
    c.send({"op": "watch", "args": {"repo": repo, "branch": branch}})
    c.read_reply()
    try:
        while True:
            msg = c.read_message()
            if msg.get("ok") is False:
                raise ClientError(msg["error"]["code"], msg["error"]["message"])
            e = msg["event"]
            if args.json:
                print(json.dumps(e, sort_keys=True), flush=True)
            elif e["type"] == "commit":
                jobs = f" jobs {' '.join(e['jobs'])}" if e["jobs"] else ""
                print(f"commit {e['repo']}@{e['branch']} {e['commit']}{jobs}", flush=True)
            else:
                out = f" -> {e['output']}@{e['output_commit']}" if e.get("output_commit") else ""
                print(f"job {e['id']} {e['pipeline']} {e['state']}{out}", flush=True)
    except KeyboardInterrupt:
        return 0


def cmd_umount(args: argparse.Namespace, c: Client) -> int:
    r = c.call("daemon.stop")
    emit(args, r, "daemon stopping")
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
