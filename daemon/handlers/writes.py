"""Writing a branch in one commit each: put (a stream of entries) and rm."""

from __future__ import annotations

import stat as statmod
from typing import Any

import trio

from ...store.errors import InvalidArgument, NotFound
from ...store.names import join_path, split_path
from ...store.objects import DIR, FILE, SYMLINK, unprivileged_mode
from ...store.treeedit import TreeEditor
from ...store.writer import WriteSession
from ...store.changes import CommitMeta, Edit
from ..auth import WRITE
from .base import Request, file_frames, first_error, next_entry, op


@op("rm")
async def rm(req: Request) -> dict:
    svc = req.service
    repo, branch = await req.branch_args(WRITE)
    paths = req.arg("paths", list)
    if not paths or not all(isinstance(p, str) for p in paths):
        raise InvalidArgument("rm: 'paths' must be a non-empty list of paths")
    parts = [split_path(p) for p in paths]

    def edit(editor: TreeEditor) -> None:
        for p in parts:
            editor.remove(join_path(p))
    done = await svc.commits.commit(repo, branch, Edit(svc.store, edit), CommitMeta(
        message=req.arg("message", str, "") or f"rm {' '.join(paths)}", author=req.author))
    return {"commit": done.id, "removed": [join_path(p) for p in parts], "jobs": done.jobs}


_MODE_MASK = 0o7777
MODE_MAX = 0o177777          # an st_mode with its file type bits; only the permission bits are kept
MTIME_MAX = 2 ** 63 - 1      # nanoseconds since 1970 in an int64 (the year 2262)


def _mode(head: dict, default: int, privileged: bool, is_dir: bool) -> int:
    """The checked permission bits of an entry; ``privileged`` (a root
    caller) keeps setuid and setgid."""
    mode = head.get("mode", default)
    if not isinstance(mode, int) or isinstance(mode, bool):
        raise InvalidArgument("entry mode must be an integer")
    if not 0 <= mode <= MODE_MAX:
        raise InvalidArgument(f"entry mode must be between 0 and 0o{MODE_MAX:o}")
    mode = statmod.S_IMODE(mode) & _MODE_MASK
    return mode if privileged else unprivileged_mode(mode, is_dir)


def _mtime(head: dict) -> int | None:
    mtime = head.get("mtime")
    if mtime is None:
        return None
    if not isinstance(mtime, int) or isinstance(mtime, bool):
        raise InvalidArgument("entry mtime must be an integer (nanoseconds)")
    if not 0 <= mtime <= MTIME_MAX:
        raise InvalidArgument(f"entry mtime must be between 0 and {MTIME_MAX} nanoseconds")
    return mtime


class ReceivedEntries:
    """The change of a ``put``: entries and file bytes received on the
    connection (``prepare``, chunked into the commit's write session as they
    arrive), placed over the head under ``dest`` (``build``)."""

    def __init__(self, req: Request, dest: list[str], meta: CommitMeta, removes: list[str] | None = None) -> None:
        self.req = req
        self.dest = dest
        self.removes = removes or []   # paths removed first, in the same commit (a transaction of trunkfs://)
        self.meta = meta          # its message is filled in when the caller gave none
        self.edits: list[tuple[str, str, Any]] = []   # (kind, path, entry or (mode, mtime))
        self.files = 0
        self.bytes = 0

    async def prepare(self, session: WriteSession) -> None:
        run = self.req.service.bulk.run
        work_send, work_recv = trio.open_memory_channel[tuple[str, Any, Any]](4)

        async def ingest_worker() -> None:
            async with work_recv:
                async for kind, ingest, payload in work_recv:
                    if kind == "data":
                        if len(payload) < 256 * 1024:
                            ingest.write(payload)
                        else:
                            await run(ingest.write, payload)
                    else:  # finish; a small file's last chunk is cheaper inline than a thread hop
                        if ingest.size < 256 * 1024:
                            chunks, size = ingest.finish()
                        else:
                            chunks, size = await run(ingest.finish)
                        path, mode, mtime = payload
                        self.edits.append(("file", path, {"type": FILE, "mode": mode, "mtime": mtime,
                                                          "size": size, "chunks": chunks}))

        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(ingest_worker)
                async with work_send:
                    await self._receive(session, work_send)
        except BaseExceptionGroup as group:
            raise first_error(group) from None
        if not self.meta.message:
            self.meta.message = f"put {self.files} files" + (f", removed {len(self.removes)}" if self.removes else "")

    async def _receive(self, session: WriteSession,
                       work: trio.MemorySendChannel[tuple[str, Any, Any]]) -> None:
        conn = self.req.conn
        privileged = conn.uid == 0
        while (head := await next_entry(conn, "put")) is not None:
            path = join_path(self.dest + split_path(head["path"]))
            kind = head.get("type")
            if kind == DIR:
                self.edits.append(("dir", path, (_mode(head, 0o755, privileged, True), _mtime(head))))
            elif kind == SYMLINK:
                target = head.get("target")
                if not isinstance(target, str) or not target or "\0" in target:
                    raise InvalidArgument(f"symlink {path} needs a non-empty target")
                self.edits.append(("file", path, {"type": SYMLINK, "mode": 0o777,
                                                  "mtime": _mtime(head) or 0, "target": target}))
            elif kind == FILE:
                if path == "/":
                    raise InvalidArgument("a file cannot be put at the repo's root path")
                mode, mtime = _mode(head, 0o644, privileged, False), _mtime(head) or 0   # checked before its bytes come
                ingest = session.ingest()
                async for data in file_frames(conn):
                    self.bytes += len(data)
                    await work.send(("data", ingest, data))
                await work.send(("finish", ingest, (path, mode, mtime)))
                self.files += 1
            else:
                raise InvalidArgument(f"entry {path}: unknown type {kind!r}")

    def build(self, base: dict | None, session: WriteSession) -> dict:
        editor = TreeEditor(session.store, base["tree"] if base else None)
        for path in self.removes:
            try:
                editor.remove(path)
            except NotFound:      # gone already: the result is the one asked for
                pass
        for kind, path, value in self.edits:
            if kind == "dir":
                editor.mkdir(path, *value)
            else:
                editor.put(path, value)
        return editor.write(session)


@op("put")
async def put(req: Request) -> dict:
    """Receive entries and file bytes, then commit them in one commit."""
    svc = req.service
    repo, branch = await req.branch_args(WRITE)
    dest = split_path(req.arg("dest", str, "/"))
    removes = req.arg("remove", list, [])
    if not all(isinstance(p, str) and split_path(p) for p in removes):
        raise InvalidArgument("put: 'remove' must be a list of paths below the root")
    meta = CommitMeta(message=req.arg("message", str, ""), author=req.author)
    change = ReceivedEntries(req, dest, meta, [join_path(split_path(p)) for p in removes])
    done = await svc.commits.commit(repo, branch, change, meta)
    return {"commit": done.id, "branch": branch, "files": change.files, "bytes": change.bytes,
            "new_bytes": done.new_bytes, "size": done.commit.size, "jobs": done.jobs}
