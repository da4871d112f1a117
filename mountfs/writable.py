"""The write side of branch views: POSIX operations over a staging area.

A branch view shows the branch head with the branch's staged changes over
it.  Every inode of a branch view is a :class:`WNode`: a place (parent
WNode, name) that resolves either to a staged node or to a committed entry.
Once a place has a staged node, the WNode is bound to that node, so an
inode keeps its identity through renames and writes; an unlinked WNode keeps
what it had, so open handles go on working.

Changes go to the staging area (``staging.area``) and never to the store.
A change copies up only what it touches: the directories on its path (as
deltas over the committed directories) and, for a file, its metadata and
chunk list by reference.  File bytes are copied only where written.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
from dataclasses import dataclass
from typing import Any

import pyfuse3

from ..staging.area import StagingArea
from ..staging.nodes import FOLLOW, DirNode, FileNode, Node, node_from_entry, now_ns
from .attrs import NAME_MAX, make_attr, negative_entry, node_attr
from .filehandle import FileHandle
from .inodes import View, same_identity

log = logging.getLogger(__name__)

WRITABLE_TIMEOUT = 1.0
RENAME_NOREPLACE = 1
RENAME_EXCHANGE = 2
XATTR_PREFIX = "user."
VIRTUAL_XATTRS = "user.trunkfs."


@dataclass(eq=False)
class WNode:
    ino: int
    view: View
    area: StagingArea
    parent: "WNode | None"       # None for the view's root
    name: str
    lookups: int = 0
    obj: Node | None = None      # the staged node bound to this inode
    epoch: int = -1
    entry: dict | None = None    # the committed entry last resolved here
    orphan: bool = False         # unlinked or replaced: keeps what it had
    seen: tuple | None = None    # (head, staging generation) when ``entry`` was resolved
    handles: int = 0             # open file handles (the inode stays while any is open)


@dataclass(eq=False)
class WHandle:
    wnode: WNode
    node: FileNode | None = None         # the staged node this handle holds open
    lower: FileHandle | None = None      # reader of a committed version
    lower_entry: dict | None = None
    base: FileHandle | None = None       # reader of a staged node's base chunks
    base_of: list | None = None


_EMPTY: dict[str, dict] = {}   # the lower listing of a new directory (never mutated)


def _fuse(code: int) -> pyfuse3.FUSEError:
    return pyfuse3.FUSEError(code)


def _is_dir(x: Any) -> bool:
    return isinstance(x, DirNode) or (isinstance(x, dict) and x.get("type") == "dir")


def _kind(x: Any) -> str:
    return x.kind if isinstance(x, Node) else x["type"]


class WritableViews:
    """Mixed into the Operations class: ``self.catalog``, ``self.cache``,
    ``self._tree_names``, ``self._root_entry``, ``self.inodes`` come from it."""

    def _init_writable(self, staging) -> None:
        self.staging = staging
        self.wnodes: dict[int, WNode] = {}
        self.wchildren: dict[tuple[int, str], WNode] = {}
        self.wroots: dict[str, WNode] = {}
        self.whandles: dict[int, WHandle] = {}

    # -- inodes --------------------------------------------------------------------

    def _wroot(self, view: View) -> WNode:
        w = self.wroots.get(view.name)
        if w is None:
            w = WNode(self.inodes.allocate(), view, self.staging.area(view.repo, view.branch), None, view.name)
            self.wroots[view.name] = w
            self.wnodes[w.ino] = w
        return w

    def _wchild(self, parent: WNode, name: str) -> WNode:
        key = (parent.ino, name)
        w = self.wchildren.get(key)
        if w is None:
            w = WNode(self.inodes.allocate(), parent.view, parent.area, parent, name)
            self.wchildren[key] = w
            self.wnodes[w.ino] = w
        return w

    def _wforget(self, w: WNode, count: int) -> None:
        w.lookups -= count
        if w.lookups > 0 or w.handles:
            return
        self.wnodes.pop(w.ino, None)
        if w.parent is None:
            if self.wroots.get(w.view.name) is w:
                del self.wroots[w.view.name]
        elif self.wchildren.get((w.parent.ino, w.name)) is w:
            del self.wchildren[(w.parent.ino, w.name)]

    def _detach(self, parent: WNode, name: str) -> None:
        """The WNode at parent/name (if any) no longer names that place."""
        w = self.wchildren.pop((parent.ino, name), None)
        if w is not None:
            w.orphan = True

    # -- resolution ------------------------------------------------------------------

    async def _head_root(self, w: WNode) -> dict:
        head = await self.heads.head(w.view.repo, w.view.branch)
        return await self._root_entry(head)

    async def wresolve(self, w: WNode) -> Node | dict:
        """What the inode is now: a staged node or a committed entry."""
        if w.orphan:
            if w.obj is None and w.entry is None:
                raise _fuse(errno.ENOENT)
            return w.obj if w.obj is not None else w.entry
        area = w.area
        if w.obj is not None and w.epoch == area.epoch:
            return w.obj
        head = await self.heads.head(w.view.repo, w.view.branch)
        if w.entry is not None and w.seen == (head, area.generation):
            return w.entry     # a committed entry, and nothing above it changed since
        if w.parent is None:
            r: Node | dict | None = area.root if area.root is not None else await self._head_root(w)
        else:
            p = await self.wresolve(w.parent)
            r = await self._child_of(w.parent, p, w.name)
            if r is None:
                raise _fuse(errno.ENOENT)
        if isinstance(r, Node):
            w.obj, w.epoch, w.entry = r, area.epoch, None
            return r
        w.obj = None
        if w.entry is not None and w.parent is not None and not same_identity(w.entry, r):
            # replaced on the branch (a put): this inode is the old file, as
            # after a rename over it; the path gets a new inode at its next lookup
            w.orphan = True
            if self.wchildren.get((w.parent.ino, w.name)) is w:
                del self.wchildren[(w.parent.ino, w.name)]
            return w.entry
        w.entry, w.seen = r, (head, area.generation)
        return r

    async def _lower_listing(self, w: WNode, node: DirNode) -> dict[str, dict]:
        """The committed directory under a staged one, by name."""
        low = node.lower
        if low == FOLLOW:
            head = await self.heads.head(w.view.repo, w.view.branch)
            if node.followed is not None and node.followed[0] == head:
                low = node.followed[1]
            else:
                if w.parent is None:
                    low = await self._root_entry(head)
                else:
                    pnode = await self.wresolve(w.parent)
                    low = (await self._lower_listing(w.parent, pnode)).get(w.name) \
                        if isinstance(pnode, DirNode) else None
                node.followed = (head, low)
        if not low or low.get("type") != "dir" or not low.get("tree"):
            return _EMPTY
        return await self._tree_names(low["tree"])

    async def _child_of(self, pw: WNode, p: Node | dict, name: str) -> Node | dict | None:
        if isinstance(p, DirNode):
            if name in p.delta:
                return p.delta[name]
            return (await self._lower_listing(pw, p)).get(name)
        if isinstance(p, dict) and p.get("type") == "dir":
            return (await self._tree_names(p["tree"])).get(name) if p.get("tree") else None
        raise _fuse(errno.ENOTDIR)

    async def _listing(self, w: WNode, d: Node | dict) -> dict[str, Node | dict]:
        if isinstance(d, DirNode):
            return d.overlay(await self._lower_listing(w, d))
        if isinstance(d, dict) and d.get("tree"):
            return dict(await self._tree_names(d["tree"]))
        return {}

    async def _nlink(self, w: WNode, d: DirNode) -> int:
        """2 + subdirectories (find(1) relies on it), cached until one comes or goes."""
        lower = await self._lower_listing(w, d)
        key = (id(lower), d.dirs_version)
        if d.nlink_cache is not None and d.nlink_cache[0] == key:
            return d.nlink_cache[1]
        dirs = sum(1 for e in lower.values() if e["type"] == "dir")
        for name, child in d.delta.items():
            was = lower.get(name)
            dirs -= bool(was and was["type"] == "dir")
            dirs += isinstance(child, DirNode)
        d.nlink_cache = (key, 2 + dirs)
        return 2 + dirs

    async def wattr(self, w: WNode, r: Node | dict | None = None) -> pyfuse3.EntryAttributes:
        if r is None:
            r = await self.wresolve(w)
        if isinstance(r, Node):
            nlink = await self._nlink(w, r) if isinstance(r, DirNode) and not w.orphan else 1
            return node_attr(w.ino, r, self.uid, self.gid, WRITABLE_TIMEOUT, nlink)
        attr = make_attr(w.ino, r, self.uid, self.gid, WRITABLE_TIMEOUT)
        if w.orphan and r["type"] != "dir":
            attr.st_nlink = 0
        return attr

    # -- copy-up -----------------------------------------------------------------------

    async def upper(self, w: WNode) -> Node:
        """The staged node of ``w``, staging it (and its directories) first."""
        r = await self.wresolve(w)
        if isinstance(r, Node):
            return r
        area = w.area
        if w.orphan:  # a committed file unlinked while open, written through its handle
            node = node_from_entry(-w.ino, r)   # never journaled: it has no name
            node.linked = False
            w.obj = node
            return node
        if w.parent is None:
            node = area.ensure_root(r)
        else:
            parent = await self.upper(w.parent)
            if not isinstance(parent, DirNode):
                raise _fuse(errno.ENOTDIR)
            node = parent.delta.get(w.name) or area.copy_up(parent, w.name, r)
        w.obj, w.epoch, w.entry = node, area.epoch, None
        return node

    async def _upper_dir(self, w: WNode) -> DirNode:
        node = await self.upper(w)
        if not isinstance(node, DirNode):
            raise _fuse(errno.ENOTDIR)
        return node

    async def _upper_child(self, pw: WNode, pnode: DirNode, name: str, pin: bool) -> Node:
        """The staged node at pnode/name; a directory about to move is pinned
        to the committed tree it showed (it stops following the head's path)."""
        cur = pnode.delta.get(name)
        lower = (await self._lower_listing(pw, pnode)).get(name)
        if cur is None:
            if name in pnode.delta or lower is None:
                raise _fuse(errno.ENOENT)
            cur = pw.area.copy_up(pnode, name, lower)
        if pin and isinstance(cur, DirNode) and cur.lower == FOLLOW:
            cur.lower = lower if lower and lower.get("type") == "dir" else None
            cur.followed = None
            pw.area.save(cur)
        return cur

    # -- lookup, attributes, directories ---------------------------------------------------

    async def wlookup(self, pw: WNode, name: bytes) -> pyfuse3.EntryAttributes:
        p = await self.wresolve(pw)
        sname = os.fsdecode(name)
        r = await self._child_of(pw, p, sname)
        if r is None:
            return negative_entry(WRITABLE_TIMEOUT)
        w = self._wchild(pw, sname)
        r = await self.wresolve(w)
        if w.orphan:  # it was replaced on the branch just now
            w = self._wchild(pw, sname)
            r = await self.wresolve(w)
        w.lookups += 1
        return await self.wattr(w, r)

    async def wlisting(self, w: WNode) -> list[tuple[bytes, Any]]:
        r = await self.wresolve(w)
        if not _is_dir(r):
            raise _fuse(errno.ENOTDIR)
        return [(os.fsencode(n), x) for n, x in sorted((await self._listing(w, r)).items())]

    async def wsetattr(self, w: WNode, attr: pyfuse3.EntryAttributes, fields: pyfuse3.SetattrFields,
                       fh: int | None, ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        area = w.area
        async with area.mutation():
            node = await self.upper(w)
            t = now_ns()
            if fields.update_size:
                if not isinstance(node, FileNode):
                    raise _fuse(errno.EISDIR if isinstance(node, DirNode) else errno.EINVAL)
                area.truncate(node, attr.st_size)
            if fields.update_mode:
                node.mode = stat.S_IMODE(attr.st_mode)
            if fields.update_uid:
                node.uid = attr.st_uid
            if fields.update_gid:
                node.gid = attr.st_gid
            if fields.update_mtime:
                node.mtime = attr.st_mtime_ns
            if fields.update_atime:
                node.atime = attr.st_atime_ns
            node.ctime = attr.st_ctime_ns if getattr(fields, "update_ctime", False) else t
            if isinstance(node, FileNode) and node.opens and not fields.update_size:
                area.mark_dirty(node)   # journaled at release or fsync, like its data
            else:
                area.save(node)
            return await self.wattr(w, node)

    async def _new_entry(self, pw: WNode, name: bytes, kind: str, mode: int,
                         ctx: pyfuse3.RequestContext, target: str = "") -> tuple[WNode, Node]:
        sname = os.fsdecode(name)
        if len(name) > NAME_MAX:
            raise _fuse(errno.ENAMETOOLONG)
        area = pw.area
        pnode = await self._upper_dir(pw)
        if await self._child_of(pw, pnode, sname) is not None:
            raise _fuse(errno.EEXIST)
        gid = ctx.gid
        if pnode.mode & stat.S_ISGID:
            gid = pnode.gid if pnode.gid is not None else self.gid
            if kind == "dir":
                mode |= stat.S_ISGID
        node = area.new_node(kind, mode, ctx.uid, gid, target)
        area.link(pnode, sname, node)
        self._detach(pw, sname)
        w = self._wchild(pw, sname)
        w.obj, w.epoch = node, area.epoch
        return w, node

    async def wmkdir(self, pw: WNode, name: bytes, mode: int, ctx) -> pyfuse3.EntryAttributes:
        async with pw.area.mutation():
            w, node = await self._new_entry(pw, name, "dir", mode, ctx)
            (await self._upper_dir(pw)).dirs_version += 1
            w.lookups += 1
            return await self.wattr(w, node)

    async def wsymlink(self, pw: WNode, name: bytes, target: bytes, ctx) -> pyfuse3.EntryAttributes:
        async with pw.area.mutation():
            w, node = await self._new_entry(pw, name, "symlink", 0o777, ctx, os.fsdecode(target))
            w.lookups += 1
            return await self.wattr(w, node)

    async def wcreate(self, pw: WNode, name: bytes, mode: int, flags: int, ctx) -> tuple[pyfuse3.FileInfo, pyfuse3.EntryAttributes]:
        async with pw.area.mutation():
            w, node = await self._new_entry(pw, name, "file", mode, ctx)
            w.lookups += 1
            fh = self._whandle(w, node)
            return pyfuse3.FileInfo(fh=fh, keep_cache=False), await self.wattr(w, node)

    async def _remove(self, pw: WNode, name: bytes, want_dir: bool) -> None:
        sname = os.fsdecode(name)
        area = pw.area
        async with area.mutation():
            pnode = await self._upper_dir(pw)
            child = await self._child_of(pw, pnode, sname)
            if child is None:
                raise _fuse(errno.ENOENT)
            cw = self.wchildren.get((pw.ino, sname))
            if want_dir:
                if not _is_dir(child):
                    raise _fuse(errno.ENOTDIR)
                tmp = cw or WNode(0, pw.view, area, pw, sname)
                if await self._listing(tmp, child):
                    raise _fuse(errno.ENOTEMPTY)
            elif _is_dir(child):
                raise _fuse(errno.EISDIR)
            lower_has = sname in await self._lower_listing(pw, pnode)
            area.unlink(pnode, sname, lower_has)
            if want_dir:
                pnode.dirs_version += 1
            if cw is not None:
                if isinstance(child, dict):
                    cw.entry, cw.obj = child, None
                else:
                    cw.obj = child
                if isinstance(child, Node):
                    child.ctime = now_ns()
            self._detach(pw, sname)

    async def wunlink(self, pw: WNode, name: bytes) -> None:
        await self._remove(pw, name, want_dir=False)

    async def wrmdir(self, pw: WNode, name: bytes) -> None:
        await self._remove(pw, name, want_dir=True)

    async def wrename(self, spw: WNode, sname_b: bytes, dpw: WNode, dname_b: bytes, flags: int) -> None:
        sname, dname = os.fsdecode(sname_b), os.fsdecode(dname_b)
        if len(dname_b) > NAME_MAX:
            raise _fuse(errno.ENAMETOOLONG)
        if spw.area is not dpw.area:
            raise _fuse(errno.EXDEV)
        area = spw.area
        async with area.mutation():
            spnode = await self._upper_dir(spw)
            dpnode = await self._upper_dir(dpw)
            src = await self._child_of(spw, spnode, sname)
            if src is None:
                raise _fuse(errno.ENOENT)
            dst = await self._child_of(dpw, dpnode, dname)
            if flags & RENAME_EXCHANGE:
                if dst is None:
                    raise _fuse(errno.ENOENT)
                a = await self._upper_child(spw, spnode, sname, pin=True)
                b = await self._upper_child(dpw, dpnode, dname, pin=True)
                if a is b:
                    return
                area.exchange(spnode, sname, a, dpnode, dname, b)
                spnode.dirs_version += 1
                dpnode.dirs_version += 1
                wa = self.wchildren.pop((spw.ino, sname), None)
                wb = self.wchildren.pop((dpw.ino, dname), None)
                if wa is not None:
                    wa.parent, wa.name, wa.obj, wa.epoch = dpw, dname, a, area.epoch
                    self.wchildren[(dpw.ino, dname)] = wa
                if wb is not None:
                    wb.parent, wb.name, wb.obj, wb.epoch = spw, sname, b, area.epoch
                    self.wchildren[(spw.ino, sname)] = wb
                return
            if dst is not None:
                if flags & RENAME_NOREPLACE:
                    raise _fuse(errno.EEXIST)
                if dst is src:
                    return
                if _is_dir(src) and not _is_dir(dst):
                    raise _fuse(errno.ENOTDIR)
                if not _is_dir(src) and _is_dir(dst):
                    raise _fuse(errno.EISDIR)
                if _is_dir(dst):
                    dw = self.wchildren.get((dpw.ino, dname)) or WNode(0, dpw.view, area, dpw, dname)
                    if await self._listing(dw, dst):
                        raise _fuse(errno.ENOTEMPTY)
            if _is_dir(src):
                await self._check_not_inside(src, dpw)
            node = await self._upper_child(spw, spnode, sname, pin=True)
            slower_has = sname in await self._lower_listing(spw, spnode)
            if dst is not None:
                dw = self.wchildren.get((dpw.ino, dname))
                if dw is not None:
                    if isinstance(dst, dict):
                        dw.entry, dw.obj = dst, None
                    else:
                        dw.obj = dst
                self._detach(dpw, dname)
            area.move(spnode, sname, slower_has, dpnode, dname, node)
            if isinstance(node, DirNode) or _is_dir(dst):
                spnode.dirs_version += 1
                dpnode.dirs_version += 1
            sw = self.wchildren.pop((spw.ino, sname), None)
            if sw is not None:
                sw.parent, sw.name, sw.obj, sw.epoch = dpw, dname, node, area.epoch
                self.wchildren[(dpw.ino, dname)] = sw

    async def _check_not_inside(self, src: Node | dict, dpw: WNode) -> None:
        """A directory cannot move into its own subtree (the kernel checks
        this too, for what its dentry cache knows)."""
        w: WNode | None = dpw
        while w is not None:
            if (await self.wresolve(w)) is src:
                raise _fuse(errno.EINVAL)
            w = w.parent

    # -- files -------------------------------------------------------------------------

    def _whandle(self, w: WNode, node: FileNode | None) -> int:
        h = WHandle(w)
        w.handles += 1
        if node is not None:
            self._hold(h, node)
        fh = self._next_fh
        self._next_fh += 1
        self.whandles[fh] = h
        return fh

    @staticmethod
    def _hold(h: WHandle, node: FileNode) -> None:
        if h.node is node:
            return
        if h.node is not None:
            h.node.opens -= 1
        h.node = node
        node.opens += 1

    async def wopen(self, w: WNode, flags: int, ctx) -> pyfuse3.FileInfo:
        r = await self.wresolve(w)
        if _is_dir(r):
            raise _fuse(errno.EISDIR)
        if _kind(r) == "symlink":
            raise _fuse(errno.ELOOP)
        node = r if isinstance(r, FileNode) else None
        if flags & os.O_TRUNC and flags & os.O_ACCMODE != os.O_RDONLY:
            async with w.area.mutation():
                node = await self.upper(w)
                w.area.truncate(node, 0)
        fh = self._whandle(w, node)
        return pyfuse3.FileInfo(fh=fh, keep_cache=False)

    async def wread(self, h: WHandle, off: int, size: int) -> bytes | memoryview:
        r = await self.wresolve(h.wnode)
        if isinstance(r, dict):
            if h.lower is None or h.lower_entry is not r:
                h.lower = FileHandle(self.cache, r, f"{h.wnode.view.name}/{h.wnode.name}")
                h.lower_entry = r
            return await h.lower.read(off, size)
        if not isinstance(r, FileNode):
            raise _fuse(errno.EISDIR)
        self._hold(h, r)
        end = min(off + size, r.size)
        if off >= end:
            return b""
        parts = []
        for kind, s, e in r.pieces(off, end):
            if kind == "data":
                parts.append(h.wnode.area.read_data(r, s, e - s))
            elif kind == "base":
                if h.base is None or h.base_of is not r.base_chunks:
                    h.base = FileHandle(self.cache, {"chunks": r.base_chunks, "size": r.base_size}, h.wnode.name)
                    h.base_of = r.base_chunks
                parts.append(bytes(await h.base.read(s, e - s)))
            else:
                parts.append(bytes(e - s))
        return parts[0] if len(parts) == 1 else b"".join(parts)

    async def wwrite(self, h: WHandle, off: int, buf: bytes) -> int:
        area = h.wnode.area
        async with area.mutation():
            node = await self.upper(h.wnode)
            if not isinstance(node, FileNode):
                raise _fuse(errno.EISDIR)
            self._hold(h, node)
            return area.write(node, off, buf)

    async def wfsync(self, h: WHandle, datasync: bool) -> None:
        if h.node is not None:
            h.wnode.area.fsync(h.node, datasync)

    async def wrelease(self, fh: int) -> None:
        h = self.whandles.pop(fh, None)
        if h is None:
            return
        node = h.node
        if node is not None:
            node.opens -= 1
            if node.opens == 0:
                h.wnode.area.save_if_dirty(node)
                h.wnode.area.release_data(node)
        h.wnode.handles -= 1
        self._wforget(h.wnode, 0)

    # -- extended attributes ------------------------------------------------------------------

    async def wgetxattrs(self, w: WNode) -> dict[str, bytes]:
        r = await self.wresolve(w)
        if isinstance(r, Node):
            return dict(r.xattrs)
        return {k: bytes.fromhex(v) for k, v in r.get("xattrs", {}).items()}

    async def wsetxattr(self, w: WNode, name: bytes, value: bytes) -> None:
        sname = os.fsdecode(name)
        if sname.startswith(VIRTUAL_XATTRS):
            return  # ours, computed: copying them (cp -a, rsync -X) is accepted and ignored
        if not sname.startswith(XATTR_PREFIX):
            raise _fuse(errno.ENOTSUP)
        if len(value) > 65536:
            raise _fuse(errno.E2BIG)
        async with w.area.mutation():
            node = await self.upper(w)
            node.xattrs[sname] = bytes(value)
            node.ctime = now_ns()
            w.area.save(node)

    async def wremovexattr(self, w: WNode, name: bytes) -> None:
        sname = os.fsdecode(name)
        if sname.startswith(VIRTUAL_XATTRS):
            return  # computed names cannot go; rsync -X removing them must not fail
        if not sname.startswith(XATTR_PREFIX):
            raise _fuse(pyfuse3.ENOATTR)
        async with w.area.mutation():
            node = await self.upper(w)
            if sname not in node.xattrs:
                raise _fuse(pyfuse3.ENOATTR)
            del node.xattrs[sname]
            node.ctime = now_ns()
            w.area.save(node)
