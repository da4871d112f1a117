"""Writing a branch in one commit each: put (a stream of entries) and rm.

A put stream carries directories, files (with their bytes), symlinks,
FIFOs, sockets and devices (metadata only; devices from root only, as
mknod(2) allows), and hard links: the names of one local file carry the
same ``link`` id, and every name after the first says which earlier name of
the put it is (``link_to``) instead of sending the bytes again
(docs/protocol.md).  A client's link id only groups names within its put:
the committed group gets a fresh id, so a put never joins a group already
in the branch."""

from __future__ import annotations

import stat as statmod
from typing import Any

import trio

from ...store.errors import InvalidArgument
from ...store.names import join_path, split_path
from ...store.entrycheck import LINK_ID_LEN, RDEV_MAX
from ...store.objects import CHAR, DEVICES, DIR, FILE, SPECIAL, SYMLINK, new_link_id, unprivileged_mode
from ...store.puttree import PutTree
from ...store.treeedit import TreeEditor
from ...store.writer import WriteSession
from ...store.changes import CommitMeta, Edit
from ..auth import WRITE, PermissionDenied
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
_HEX = frozenset("0123456789abcdef")


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


def _link_id(head: dict, path: str) -> str | None:
    """The checked ``link`` id of an entry (a group within this put), or None."""
    link = head.get("link")
    if link is None:
        return None
    if not (isinstance(link, str) and len(link) == LINK_ID_LEN and set(link) <= _HEX):
        raise InvalidArgument(f"entry {path}: link {link!r:.40} is not a link id "
                              f"({LINK_ID_LEN} lowercase hex digits)")
    return link


def _special(head: dict, kind: str, path: str, privileged: bool) -> dict:
    """The entry of a FIFO, socket or device: metadata only.  Only root may
    put a device, as only root may mknod(2) one."""
    entry = {"type": kind, "mode": _mode(head, 0o644, privileged, False), "mtime": _mtime(head) or 0}
    if kind in DEVICES:
        what = "character" if kind == CHAR else "block"
        if not privileged:
            raise PermissionDenied(f"entry {path}: only root may put a {what} device (as mknod(2) allows)")
        rdev = head.get("rdev")
        if type(rdev) is not int or not 0 <= rdev <= RDEV_MAX:
            raise InvalidArgument(f"entry {path}: a {what} device needs rdev, a device number "
                                  f"from 0 to {RDEV_MAX}")
        entry["rdev"] = rdev
    return entry


class PutLinks:
    """The hard-link groups of one put stream.  The first name of a group
    brings its content (and a client's ``link`` id); each later name refers
    to an earlier name of the same group (``link_to``) and shares that
    entry.  Every group gets a fresh committed id; a group left with one
    name in the put is no hard link and loses it."""

    def __init__(self) -> None:
        self.entries: dict[str, dict] = {}    # client link id -> the group's entry, shared by its names
        self.names: dict[str, str] = {}       # path -> client link id, of the names sent so far

    def replaced(self, path: str) -> None:
        """An entry arrived at ``path``: whatever name was there before is gone."""
        self.names.pop(path, None)

    def first(self, head: dict, path: str, entry: dict) -> None:
        """``entry`` starts the group ``head`` names, if it names one."""
        link = _link_id(head, path)
        if link is None:
            return
        if link in self.entries:
            raise InvalidArgument(f"entry {path}: link id {link} is a group an earlier entry of this put "
                                  "started; a later name carries link_to (an earlier name) and no content")
        entry["link"] = new_link_id()
        self.entries[link] = entry
        self.names[path] = link

    def later(self, head: dict, path: str, earlier: str) -> dict:
        """The entry of the group a later name joins: ``earlier`` must be an
        earlier name of this put with the same link id, of the same type."""
        link = _link_id(head, path)
        if link is None:
            raise InvalidArgument(f"entry {path}: link_to needs the link id of its group")
        if self.names.get(earlier) != link:
            raise InvalidArgument(f"entry {path}: link_to {earlier} is not an earlier name of link group "
                                  f"{link} in this put")
        entry = self.entries[link]
        if head.get("type") != entry["type"]:
            raise InvalidArgument(f"entry {path}: type {head.get('type')!r} is not that of {earlier} "
                                  f"({entry['type']})")
        self.names[path] = link
        return entry

    def finish(self) -> None:
        """Drop the link of each group that kept one name in the put."""
        counts: dict[str, int] = {}
        for link in self.names.values():
            counts[link] = counts.get(link, 0) + 1
        for link, entry in self.entries.items():
            if counts.get(link, 0) < 2:
                entry.pop("link", None)


INLINE_FILE = 64 * 1024   # a file up to this size is ingested as it ends, on the event loop


class ReceivedEntries:
    """The change of a ``put``: entries and file bytes received on the
    connection (``prepare``, chunked into the commit's write session as they
    arrive) and placed into the put's own tree (``store.puttree``), which
    ``build`` grafts onto the head under ``dest``.  Entries of hard-link
    groups wait in ``linked`` until the put ends (a group keeps its link
    only if it kept two names)."""

    def __init__(self, req: Request, dest: list[str], meta: CommitMeta, removes: list[str] | None = None) -> None:
        self.req = req
        self.dest = dest
        self.removes = removes or []   # paths removed first, in the same commit (a transaction of trunkfs://)
        self.meta = meta          # its message is filled in when the caller gave none
        self.tree: PutTree | None = None
        # path -> entry of each name of a hard-link group, placed at the end
        self.linked: dict[str, dict] = {}
        self.links = PutLinks()
        self.files = 0
        self.bytes = 0

    async def prepare(self, session: WriteSession) -> None:
        run = self.req.service.bulk.run
        self.tree = PutTree(session)
        work_send, work_recv = trio.open_memory_channel[tuple[str, Any, Any]](4)

        async def ingest_worker() -> None:
            async with work_recv:
                async for kind, ingest, payload in work_recv:
                    if kind == "barrier":   # every file before it has its chunks
                        payload.set()
                    elif kind == "data":
                        if len(payload) < 256 * 1024:
                            ingest.write(payload)
                        else:
                            await run(ingest.write, payload)
                    else:  # finish; a small file's last chunk is cheaper inline than a thread hop
                        if ingest.size < 256 * 1024:
                            chunks, size = ingest.finish()
                        else:
                            chunks, size = await run(ingest.finish)
                        payload.update(size=size, chunks=chunks)

        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(ingest_worker)
                async with work_send:
                    await self._receive(session, work_send)
        except BaseExceptionGroup as group:
            raise first_error(group) from None
        self.links.finish()
        for path, entry in self.linked.items():
            self.tree.place(path, dict(entry))
        self.linked.clear()
        await run(self.tree.finish)
        if not self.meta.message:
            self.meta.message = f"put {self.files} files" + (f", removed {len(self.removes)}" if self.removes else "")

    def _path(self, rel: str) -> str:
        return join_path(self.dest + split_path(rel))

    async def _receive(self, session: WriteSession,
                       work: trio.MemorySendChannel[tuple[str, Any, Any]]) -> None:
        conn = self.req.conn
        privileged = conn.uid == 0
        tree = self.tree
        assert tree is not None
        while (head := await next_entry(conn, "put")) is not None:
            path = self._path(head["path"])
            kind = head.get("type")
            self.links.replaced(path)
            if self.linked:
                self._replace_waiting(path, kind == DIR and "link_to" not in head)
            if tree.due():   # write the directories the stream has left
                done = trio.Event()
                await work.send(("barrier", None, done))
                await done.wait()
                await self.req.service.bulk.run(tree.seal, path)
            if "link_to" in head:
                self._later_name(head, path)
            elif kind == DIR:
                if "link" in head:
                    raise InvalidArgument(f"entry {path}: a directory cannot be a hard link")
                tree.mkdir(path, _mode(head, 0o755, privileged, True), _mtime(head))
            elif kind == SYMLINK:
                target = head.get("target")
                if not isinstance(target, str) or not target or "\0" in target:
                    raise InvalidArgument(f"symlink {path} needs a non-empty target")
                self._named(head, path, {"type": SYMLINK, "mode": 0o777, "mtime": _mtime(head) or 0,
                                         "target": target})
            elif kind in SPECIAL:
                self._named(head, path, _special(head, kind, path, privileged))
            elif kind == FILE:
                if path == "/":
                    raise InvalidArgument("a file cannot be put at the repo's root path")
                # checked before its bytes come; size and chunks when they are in
                entry = {"type": FILE, "mode": _mode(head, 0o644, privileged, False), "mtime": _mtime(head) or 0}
                self._named(head, path, entry)
                ingest = session.ingest()
                held: list[bytes] | None = []   # a small file's frames, ingested here at its end
                held_bytes = 0
                async for data in file_frames(conn):
                    self.bytes += len(data)
                    if held is not None and held_bytes + len(data) <= INLINE_FILE:
                        held.append(data)
                        held_bytes += len(data)
                        continue
                    if held is not None:   # larger: to the ingest worker, in order
                        for part in held:
                            await work.send(("data", ingest, part))
                        held = None
                    await work.send(("data", ingest, data))
                if held is not None:   # no thread hop and no channel for a small file
                    for part in held:
                        ingest.write(part)
                    chunks, size = ingest.finish()
                    entry.update(size=size, chunks=chunks)
                else:
                    await work.send(("finish", ingest, entry))
                self.files += 1
            else:
                raise InvalidArgument(f"entry {path}: unknown type {kind!r}")

    def _named(self, head: dict, path: str, entry: dict) -> None:
        """Place a non-directory entry (the first name of its link group, if it has one)."""
        self.links.first(head, path, entry)
        if "link" in entry:
            self.linked[path] = entry
        else:
            assert self.tree is not None
            self.tree.place(path, entry)

    def _replace_waiting(self, path: str, is_dir: bool) -> None:
        """An entry arrived at ``path``: a waiting name there is replaced, and
        below it too unless a directory arrived (it merges), as placing in
        arrival order would have."""
        below = path.rstrip("/") + "/"
        for p in [p for p in self.linked if p == path or (not is_dir and p.startswith(below))]:
            del self.linked[p]

    def _later_name(self, head: dict, path: str) -> None:
        """A later name of a hard-link group: the entry of an earlier name, no bytes."""
        earlier = head["link_to"]
        if not isinstance(earlier, str):
            raise InvalidArgument(f"entry {path}: link_to must be the path of an earlier name")
        entry = self.links.later(head, path, self._path(earlier))
        self.linked[path] = entry
        self.files += entry["type"] == FILE

    def build(self, base: dict | None, session: WriteSession) -> dict:
        assert self.tree is not None, "prepare() first"
        return self.tree.graft(base, self.removes)


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
