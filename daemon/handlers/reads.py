"""Reading a repo: ls, get (and cat), log, show, diff, provenance."""

from __future__ import annotations

from ...store.diff import diff_trees
from ...store.errors import InvalidArgument, NotFound
from ...store.names import join_path, split_path
from ...store.objects import DIR, FILE, SYMLINK, Commit
from .. import protocol
from .base import Request, op


def _entry_summary(e: dict) -> dict:
    out = {"name": e["name"], "type": e["type"], "mode": e.get("mode"), "mtime": e.get("mtime")}
    if e["type"] in (FILE, DIR):
        out["size"] = e.get("size", 0)
    if e["type"] == DIR:
        out["files"] = e.get("files", 0)
    if e["type"] == SYMLINK:
        out["target"] = e.get("target")
    return out


def _commit_summary(cid: str, c: Commit) -> dict:
    return {"id": cid, "repo": c.repo, "parents": c.parents, "message": c.message,
            "author": c.author, "time": c.time, "origin": c.origin, "provenance": c.provenance,
            "tree": c.tree, "size": c.size, "files": c.files}



async def _resolve(req: Request) -> tuple[str, str | None, str | None]:
    repo = req.repo()
    ref = req.arg("ref", str, "main")
    commit, branch = await req.service.workers.run(req.service.refs.resolve, repo, ref)
    return repo, commit, branch


def _lookup(store, commit: Commit | None, parts: list[str], repo: str) -> dict:
    """The entry at ``parts`` in a commit (the root is a synthetic dir entry)."""
    entry = {"name": "", "type": DIR, "mode": 0o755, "mtime": 0,
             "tree": commit.tree if commit else None,
             "size": commit.size if commit else 0, "files": commit.files if commit else 0}
    for i, name in enumerate(parts):
        if entry["type"] != DIR:
            raise NotFound(f"{repo}:{join_path(parts[:i])} is not a directory")
        found = None
        if entry["tree"]:
            for e in store.read_tree(entry["tree"]):
                if e["name"] == name:
                    found = e
                    break
        if found is None:
            raise NotFound(f"{repo}:{join_path(parts[:i + 1])} does not exist")
        entry = found
    return entry


@op("ls")
async def ls(req: Request) -> dict:
    svc = req.service
    repo, cid, _ = await _resolve(req)
    parts = split_path(req.arg("path", str, "/"))

    def listing() -> dict:
        commit = svc.store.read_commit(cid) if cid else None
        entry = _lookup(svc.store, commit, parts, repo)
        if entry["type"] != DIR:
            return {"commit": cid, "path": join_path(parts), "entries": [_entry_summary(entry)]}
        entries = svc.store.read_tree(entry["tree"]) if entry.get("tree") else []
        return {"commit": cid, "path": join_path(parts),
                "entries": [_entry_summary(e) for e in entries]}
    return await svc.workers.run(listing)


@op("get")
async def get(req: Request) -> None:
    """Reply, then stream the entries below ``path`` (the file itself for a file)."""
    svc = req.service
    repo, cid, _ = await _resolve(req)
    parts = split_path(req.arg("path", str, "/"))
    only_file = req.arg("file_only", bool, False)
    commit = await svc.workers.run(svc.store.read_commit, cid) if cid else None
    entry = await svc.workers.run(_lookup, svc.store, commit, parts, repo)
    if only_file and entry["type"] != FILE:
        raise InvalidArgument(f"{repo}:{join_path(parts)} is a {'directory' if entry['type'] == DIR else entry['type']}, not a file")
    conn = req.conn
    await conn.send(protocol.ok_reply({"commit": cid, "type": entry["type"],
                                       "size": entry.get("size", 0), "files": entry.get("files", 1)}))
    req.started = True

    async def send_entry(e: dict, rel: str) -> None:
        head = {"path": rel, "type": e["type"], "mode": e.get("mode"), "mtime": e.get("mtime")}
        if e["type"] == SYMLINK:
            head["target"] = e.get("target", "")
            await conn.send({"entry": head})
        elif e["type"] == FILE:
            head["size"] = e.get("size", 0)
            await conn.send({"entry": head})
            it = svc.store.iter_file(e)
            while True:
                data = await svc.workers.run(next, it, None)
                if data is None:
                    break
                await conn.send_data(data)
            await conn.send({"eof": True})
        else:
            await conn.send({"entry": head})
            entries = await svc.workers.run(svc.store.read_tree, e["tree"]) if e.get("tree") else []
            for child in entries:
                await send_entry(child, f"{rel}/{child['name']}" if rel else child["name"])

    await send_entry(entry, "")
    await conn.send({"end": True})
    return None


@op("log")
async def log_op(req: Request) -> list:
    svc = req.service
    repo, cid, _ = await _resolve(req)
    limit = req.arg("limit", int, 0)

    def walk() -> list:
        out = []
        cur = cid
        while cur and (not limit or len(out) < limit):
            c = svc.store.read_commit(cur)
            out.append(_commit_summary(cur, c))
            cur = c.parents[0] if c.parents else None
        return out
    return await svc.workers.run(walk)


@op("show")
async def show(req: Request) -> dict:
    svc = req.service
    repo, cid, branch = await _resolve(req)
    if cid is None:
        raise NotFound(f"branch {repo}@{branch} has no commits yet")
    commit = await svc.workers.run(svc.store.read_commit, cid)
    out = _commit_summary(cid, commit)
    out["branch"] = branch
    return out


@op("diff")
async def diff(req: Request) -> dict:
    svc = req.service
    repo = req.repo()
    ref1 = req.arg("ref1", str, "main")
    ref2 = req.arg("ref2", str, None)

    def compute() -> dict:
        c1, _ = svc.refs.resolve(repo, ref1)
        if ref2 is None:  # one ref: what that commit changed against its parent
            new = c1
            old = svc.store.read_commit(c1).parents[0] if c1 and svc.store.read_commit(c1).parents else None
        else:
            old = c1
            new, _ = svc.refs.resolve(repo, ref2)
        t_old = svc.store.read_commit(old).tree if old else None
        t_new = svc.store.read_commit(new).tree if new else None
        changes = [{"status": s, "path": p} for s, p in diff_trees(svc.store, t_old, t_new)]
        return {"from": old, "to": new, "changes": changes}
    return await svc.workers.run(compute)


@op("provenance")
async def provenance(req: Request) -> list:
    """Walk a commit's provenance upstream through every stage of the DAG."""
    svc = req.service
    repo, cid, _ = await _resolve(req)

    def walk() -> list:
        out, stack, seen = [], [(repo, cid, 0)], set()
        while stack:
            r, c, depth = stack.pop()
            if not c or c in seen:
                continue
            seen.add(c)
            commit = svc.store.read_commit(c)
            out.append({"depth": depth, "repo": r, "commit": c, "origin": commit.origin,
                        "provenance": commit.provenance})
            for p in reversed(commit.provenance):
                stack.append((p["repo"], p["commit"], depth + 1))
        return out
    return await svc.workers.run(walk)


