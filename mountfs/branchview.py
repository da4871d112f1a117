"""``<mount>/<repo>/`` (branch main) and ``<mount>/<repo>@<branch>/``: a
branch, writable, over its staging area.

Reads show the branch head with the staged changes over it
(``branchnodes``); every change goes to the staging area
(``staging.area``), never to the store.  Attribute and entry timeouts are
short, so that nlink, mtime and sizes are right just after a change.  One
BranchView serves every name of its branch (``r`` and ``r@main``): a rename
between them stays within one staging area.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Awaitable
from typing import Any

import pyfuse3

from ..staging.area import StagingArea
from ..staging.nodes import DirNode, FileNode, LinkNode, Node, now_ns
from .attrs import KIND_OF_FORMAT, NAME_MAX, negative_entry
from ..staging.overlay import is_dir_like
from .branchnodes import WRITABLE_TIMEOUT, BranchNodes, Resolved, link_of
from .handles import Handle, OpenFile
from .inodes import Inode
from .listings import DirListing, ListedEntries, TreePages
from .reader import ChunkReader
from .view import VIRTUAL_XATTRS, XATTR_BRANCH, XATTR_COMMIT, XATTR_REPO, View, ViewParts, fuse_error

XATTR_MAX = 65536


def _kind(x: Resolved) -> str:
    return x.kind if isinstance(x, Node) else x["type"]


def _open_file(handle: Handle) -> OpenFile:
    if not isinstance(handle, OpenFile):
        raise fuse_error(errno.EBADF)
    return handle


class BranchView(View):
    repo: str
    staged = True

    def __init__(self, parts: ViewParts, repo: str, branch: str, area: StagingArea) -> None:
        super().__init__(parts)
        self.repo = repo
        self.branch = branch
        self.area = area
        self.nodes = BranchNodes(parts, repo, branch, area)

    # -- lookup, attributes, listings -------------------------------------------------------

    async def lookup(self, parent: Inode, name: bytes) -> pyfuse3.EntryAttributes:
        n = self.nodes
        sname = os.fsdecode(name)
        p = await n.resolve(parent)
        if await n.child_of(parent, p, sname) is None:
            return negative_entry(WRITABLE_TIMEOUT)
        number = None
        block = self.parts.inodes.block_of(parent.ino)
        # listed by name only from the tree the directory still shows (nothing
        # staged in it): the same file, so the number it was listed with
        if block is not None and isinstance(p, dict) and p.get("tree") == block[0] \
                and self.parts.inodes.at(parent.ino, sname) is None:
            number = self.parts.listed_number(parent, sname)
            if number is not None:
                self.parts.advice.missed()   # and wanted after all
        inode, r = await n.place(parent, sname, number)
        try:
            attr = await n.attr(inode, r)
        except BaseException:
            self.parts.inodes.release(inode)
            raise
        inode.lookups += 1
        return attr

    def getattr(self, inode: Inode) -> Awaitable[pyfuse3.EntryAttributes]:
        return self.nodes.attr(inode)

    async def entries(self, inode: Inode) -> DirListing:
        r = await self.nodes.resolve(inode)
        if not is_dir_like(r):
            raise fuse_error(errno.ENOTDIR)
        if isinstance(r, dict):   # committed, nothing staged in it: its tree
            return TreePages(self.parts.store, self.parts.run, r.get("tree"))
        return ListedEntries([(os.fsencode(name), name) for name in sorted(await self.nodes.listing(inode, r))])

    async def entry_attr(self, parent: Inode, name: bytes,
                         item: Any) -> tuple[Inode, pyfuse3.EntryAttributes] | None:
        # item: a listed name (ListedEntries), or a tree's entry (TreePages)
        try:
            child, r = await self.nodes.place(parent, item if isinstance(item, str) else item["name"])
        except pyfuse3.FUSEError:  # gone since opendir
            return None
        try:
            return child, await self.nodes.attr(child, r)
        except pyfuse3.FUSEError:
            self.parts.inodes.release(child)
            return None

    async def readlink(self, inode: Inode) -> bytes:
        r = await self.nodes.resolve(inode)
        if isinstance(r, LinkNode):
            return os.fsencode(r.target)
        if isinstance(r, dict) and r["type"] == "symlink":
            return os.fsencode(r.get("target", ""))
        raise fuse_error(errno.EINVAL)

    async def access(self, inode: Inode, mode: int) -> bool:
        await self.nodes.resolve(inode)
        return True

    # -- files -------------------------------------------------------------------------------

    def _new_handle(self, inode: Inode, node: FileNode | None, uid: int) -> int:
        handle = OpenFile(inode, uid=uid)
        if node is not None:
            handle.hold(node)
        return self.parts.handles.add(handle)

    async def open(self, inode: Inode, flags: int, ctx: pyfuse3.RequestContext) -> pyfuse3.FileInfo:
        r = await self.nodes.resolve(inode)
        if is_dir_like(r):
            raise fuse_error(errno.EISDIR)
        if _kind(r) == "symlink":
            raise fuse_error(errno.ELOOP)
        node = r if isinstance(r, FileNode) else None
        if flags & os.O_TRUNC and flags & os.O_ACCMODE != os.O_RDONLY:
            async with self.area.mutation():
                node = await self._upper_file(inode)
                self.area.truncate(node, 0, uid=ctx.uid)
        return pyfuse3.FileInfo(fh=self._new_handle(inode, node, ctx.uid), keep_cache=False)

    async def _upper_file(self, inode: Inode) -> FileNode:
        node = await self.nodes.upper(inode)
        if not isinstance(node, FileNode):
            raise fuse_error(errno.EISDIR)
        return node

    async def read(self, handle: Handle, off: int, size: int) -> bytes | memoryview:
        h = _open_file(handle)
        r = await self.nodes.resolve(h.inode)
        if isinstance(r, dict):   # committed content
            if h.reader is None or h.reader_of is not r:
                h.reader, h.reader_of = ChunkReader.of_entry(self.parts.cache, r), r
            return await h.reader.read(off, size)
        if not isinstance(r, FileNode):
            raise fuse_error(errno.EISDIR)
        h.hold(r)
        end = min(off + size, r.size)
        if off >= end:
            return b""
        parts = []
        for kind, s, e in r.pieces(off, end):
            if kind == "data":
                parts.append(self.area.read_data(r, s, e - s))
            elif kind == "base":
                if h.reader is None or h.reader_of is not r.base_chunks:
                    h.reader = ChunkReader(self.parts.cache, r.base_chunks, r.base_size)
                    h.reader_of = r.base_chunks
                parts.append(bytes(await h.reader.read(s, e - s)))
            else:
                parts.append(bytes(e - s))
        return parts[0] if len(parts) == 1 else b"".join(parts)

    async def write(self, handle: Handle, off: int, buf: bytes) -> int:
        h = _open_file(handle)
        async with self.area.mutation():
            node = await self._upper_file(h.inode)
            h.hold(node)
            return self.area.write(node, off, buf, uid=h.uid)

    async def fsync(self, handle: Handle, datasync: bool) -> None:
        h = _open_file(handle)
        if h.node is not None:
            self.area.fsync(h.node, datasync)

    async def fsyncdir(self, handle: Handle, datasync: bool) -> None:
        self.area.flush_files()
        await self.parts.run(self.area.journal.sync)  # rename, create... are durable now

    async def release(self, handle: Handle) -> None:
        node = handle.node if isinstance(handle, OpenFile) else None
        if node is not None:
            node.opens -= 1
            if node.opens == 0:
                self.area.save_if_dirty(node)
                self.area.release_data(node)

    # -- attributes ----------------------------------------------------------------------------

    async def setattr(self, inode: Inode, attr: pyfuse3.EntryAttributes,
                      fields: pyfuse3.SetattrFields, fh: int | None,
                      ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        area = self.area
        async with area.mutation():
            node = await self.nodes.upper(inode)
            if fields.update_size:
                if not isinstance(node, FileNode):
                    raise fuse_error(errno.EISDIR if isinstance(node, DirNode) else errno.EINVAL)
                area.truncate(node, attr.st_size, uid=ctx.uid)
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
            node.ctime = attr.st_ctime_ns if getattr(fields, "update_ctime", False) else now_ns()
            if isinstance(node, FileNode) and node.opens and not fields.update_size:
                area.mark_dirty(node)   # journaled at release or fsync, like its data
            else:
                area.save(node)
            return await self.nodes.attr(inode, node)

    # -- names ---------------------------------------------------------------------------------

    async def _new_entry(self, parent: Inode, name: bytes, kind: str, mode: int,
                         ctx: pyfuse3.RequestContext, target: str = "",
                         rdev: int = 0) -> tuple[Inode, Node]:
        """Make a file, directory, symlink, FIFO, socket or device at
        parent/name (in a mutation)."""
        n = self.nodes
        sname = os.fsdecode(name)
        if len(name) > NAME_MAX:
            raise fuse_error(errno.ENAMETOOLONG)
        pnode = await n.upper_dir(parent)
        if await n.child_of(parent, pnode, sname) is not None:
            raise fuse_error(errno.EEXIST)
        gid = ctx.gid
        if pnode.mode & stat.S_ISGID:
            gid = pnode.gid if pnode.gid is not None else self.parts.gid
            if kind == "dir":
                mode |= stat.S_ISGID
        node = self.area.new_node(kind, mode, ctx.uid, gid, target, rdev)
        self.area.link(pnode, sname, node)
        if kind == "dir":
            pnode.dirs_version += 1
        n.detach(parent, sname)
        inode = n.child(parent, sname)
        inode.obj, inode.epoch = node, self.area.epoch
        return inode, node

    async def _made(self, inode: Inode, node: Node) -> pyfuse3.EntryAttributes:
        attr = await self.nodes.attr(inode, node)
        inode.lookups += 1
        return attr

    async def mkdir(self, parent: Inode, name: bytes, mode: int,
                    ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        async with self.area.mutation():
            return await self._made(*await self._new_entry(parent, name, "dir", mode, ctx))

    async def symlink(self, parent: Inode, name: bytes, target: bytes,
                      ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        async with self.area.mutation():
            return await self._made(*await self._new_entry(parent, name, "symlink", 0o777, ctx,
                                                           os.fsdecode(target)))

    async def mknod(self, parent: Inode, name: bytes, mode: int, rdev: int,
                    ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        kind = KIND_OF_FORMAT.get(stat.S_IFMT(mode) or stat.S_IFREG)
        if kind is None or kind in ("dir", "symlink"):
            raise fuse_error(errno.EINVAL)
        if kind in ("char", "block") and ctx.uid != 0:
            raise fuse_error(errno.EPERM)   # as the kernel rules (it checks CAP_MKNOD first)
        async with self.area.mutation():
            return await self._made(*await self._new_entry(parent, name, kind, mode, ctx,
                                                           rdev=rdev if kind in ("char", "block") else 0))

    async def create(self, parent: Inode, name: bytes, mode: int, flags: int,
                     ctx: pyfuse3.RequestContext) -> tuple[pyfuse3.FileInfo, pyfuse3.EntryAttributes]:
        async with self.area.mutation():
            inode, node = await self._new_entry(parent, name, "file", mode, ctx)
            attr = await self._made(inode, node)
            assert isinstance(node, FileNode)
            return pyfuse3.FileInfo(fh=self._new_handle(inode, node, ctx.uid), keep_cache=False), attr

    async def link(self, inode: Inode, parent: Inode, name: bytes,
                   ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        """link(2): one more name for a file, symlink, FIFO, socket or device
        of this branch (another branch or repo: EXDEV)."""
        if parent.view is not self:
            raise fuse_error(errno.EXDEV)
        if len(name) > NAME_MAX:
            raise fuse_error(errno.ENAMETOOLONG)
        n = self.nodes
        inodes = self.parts.inodes
        sname = os.fsdecode(name)
        async with self.area.mutation():
            r = await n.resolve(inode)
            if is_dir_like(r):
                raise fuse_error(errno.EPERM)
            if inode.orphan and not inodes.placed(inode):
                raise fuse_error(errno.ENOENT)   # unlinked (linkat of an open, unlinked file)
            pnode = await n.upper_dir(parent)
            if await n.child_of(parent, pnode, sname) is not None:
                raise fuse_error(errno.EEXIST)
            node = await n.upper(inode)
            self.area.add_name(pnode, sname, node)
            n.detach(parent, sname)
            assert node.link is not None
            shared = inodes.group_inode((self, node.link), inode)
            inodes.alias(shared, parent, sname)
            shared.obj, shared.epoch = node, self.area.epoch
            return await self._made(shared, node)

    async def unlink(self, parent: Inode, name: bytes) -> None:
        await self._remove(parent, name, want_dir=False)

    async def rmdir(self, parent: Inode, name: bytes) -> None:
        await self._remove(parent, name, want_dir=True)

    async def _remove(self, parent: Inode, name: bytes, want_dir: bool) -> None:
        n = self.nodes
        sname = os.fsdecode(name)
        area = self.area
        async with area.mutation():
            pnode = await n.upper_dir(parent)
            child = await n.child_of(parent, pnode, sname)
            if child is None:
                raise fuse_error(errno.ENOENT)
            child = await n.staged(child)   # a hard link: the other names lose one
            held = self.parts.inodes.at(parent.ino, sname)
            if want_dir:
                if not is_dir_like(child):
                    raise fuse_error(errno.ENOTDIR)
                if await n.listing(n.inode_at(parent, sname), child):
                    raise fuse_error(errno.ENOTEMPTY)
            elif is_dir_like(child):
                raise fuse_error(errno.EISDIR)
            area.unlink(pnode, sname, (await n.lower_listing(parent, pnode)).get(sname))
            if want_dir:
                pnode.dirs_version += 1
            if held is not None:
                n.keep(held, child)
                if isinstance(child, Node):
                    child.ctime = now_ns()
            n.detach(parent, sname)

    async def rename(self, parent: Inode, name: bytes, new_parent: Inode, new_name: bytes,
                     flags: int) -> None:
        if new_parent.view is not self:
            raise fuse_error(errno.EXDEV)   # another branch, a commit view or the mount root
        if len(new_name) > NAME_MAX:
            raise fuse_error(errno.ENAMETOOLONG)
        n = self.nodes
        inodes = self.parts.inodes
        sname, dname = os.fsdecode(name), os.fsdecode(new_name)
        area = self.area
        async with area.mutation():
            spnode = await n.upper_dir(parent)
            dpnode = await n.upper_dir(new_parent)
            src = await n.child_of(parent, spnode, sname)
            if src is None:
                raise fuse_error(errno.ENOENT)
            dst = await n.child_of(new_parent, dpnode, dname)
            if flags & pyfuse3.RENAME_EXCHANGE:
                if dst is None:
                    raise fuse_error(errno.ENOENT)
                a = await n.upper_child(parent, spnode, sname, pin=True)
                b = await n.upper_child(new_parent, dpnode, dname, pin=True)
                if a is b:
                    return
                area.exchange(spnode, sname, a, dpnode, dname, b)
                spnode.dirs_version += 1
                dpnode.dirs_version += 1
                ia = inodes.take(parent.ino, sname)
                ib = inodes.take(new_parent.ino, dname)
                if ia is not None:
                    inodes.place(ia, new_parent, dname)
                    ia.obj, ia.epoch = a, area.epoch
                if ib is not None:
                    inodes.place(ib, parent, sname)
                    ib.obj, ib.epoch = b, area.epoch
                return
            if dst is not None:
                if flags & pyfuse3.RENAME_NOREPLACE:
                    raise fuse_error(errno.EEXIST)
                if dst is src or (link_of(src) is not None and link_of(src) == link_of(dst)):
                    return   # two names of one file: rename(2) does nothing
                if is_dir_like(src) and not is_dir_like(dst):
                    raise fuse_error(errno.ENOTDIR)
                if not is_dir_like(src) and is_dir_like(dst):
                    raise fuse_error(errno.EISDIR)
                if is_dir_like(dst) and await n.listing(n.inode_at(new_parent, dname), dst):
                    raise fuse_error(errno.ENOTEMPTY)
            if is_dir_like(src):
                await self._check_not_inside(src, new_parent)
            if dst is not None:
                dst = await n.staged(dst)   # a hard link replaced: the other names lose one
            node = await n.upper_child(parent, spnode, sname, pin=True)
            slower = (await n.lower_listing(parent, spnode)).get(sname)
            dlower = (await n.lower_listing(new_parent, dpnode)).get(dname)
            if dst is not None:
                held = inodes.at(new_parent.ino, dname)
                if held is not None:
                    n.keep(held, dst)
                n.detach(new_parent, dname)
            area.move(spnode, sname, slower, dpnode, dname, node, dlower)
            if isinstance(node, DirNode) or is_dir_like(dst):
                spnode.dirs_version += 1
                dpnode.dirs_version += 1
            moved = inodes.take(parent.ino, sname)
            if moved is not None:
                inodes.place(moved, new_parent, dname)
                moved.obj, moved.epoch = node, area.epoch

    async def _check_not_inside(self, src: Resolved, new_parent: Inode) -> None:
        """A directory cannot move into its own subtree (the kernel checks
        this too, for what its dentry cache knows)."""
        inode: Inode | None = new_parent
        while inode is not None:
            if (await self.nodes.resolve(inode)) is src:
                raise fuse_error(errno.EINVAL)
            inode = inode.parent

    # -- extended attributes ------------------------------------------------------------------

    async def _stored_xattrs(self, inode: Inode) -> dict[str, bytes]:
        r = await self.nodes.resolve(inode)
        if isinstance(r, Node):
            return dict(r.xattrs)
        return {k: bytes.fromhex(v) for k, v in r.get("xattrs", {}).items()}

    async def _virtual_xattrs(self, inode: Inode) -> dict[bytes, bytes]:
        await self.nodes.resolve(inode)
        head = await self.nodes.head()
        out = {XATTR_REPO: self.repo.encode(), XATTR_BRANCH: self.branch.encode()}
        if head:
            out[XATTR_COMMIT] = head.encode()
        return out

    async def _user_xattr(self, inode: Inode, name: bytes) -> bytes:
        if name.startswith(VIRTUAL_XATTRS):
            value = (await self._virtual_xattrs(inode)).get(name)
        else:
            value = (await self._stored_xattrs(inode)).get(os.fsdecode(name))
        if value is None:
            raise fuse_error(pyfuse3.ENOATTR)
        return value

    async def listxattr(self, inode: Inode) -> list[bytes]:
        return [*await self._virtual_xattrs(inode),
                *(os.fsencode(n) for n in await self._stored_xattrs(inode))]

    async def setxattr(self, inode: Inode, name: bytes, value: bytes) -> None:
        if name.startswith(VIRTUAL_XATTRS):
            return  # ours, computed: copying them (cp -a, rsync -X) is accepted and ignored
        if not name.startswith(b"user."):
            raise fuse_error(errno.ENOTSUP)
        if len(value) > XATTR_MAX:
            raise fuse_error(errno.E2BIG)
        async with self.area.mutation():
            node = await self.nodes.upper(inode)
            node.xattrs[os.fsdecode(name)] = bytes(value)
            node.ctime = now_ns()
            self.area.save(node)

    async def removexattr(self, inode: Inode, name: bytes) -> None:
        if name.startswith(VIRTUAL_XATTRS):
            return  # computed names cannot go; rsync -X removing them must not fail
        if not name.startswith(b"user."):
            raise fuse_error(pyfuse3.ENOATTR)
        sname = os.fsdecode(name)
        async with self.area.mutation():
            node = await self.nodes.upper(inode)
            if sname not in node.xattrs:
                raise fuse_error(pyfuse3.ENOATTR)
            del node.xattrs[sname]
            node.ctime = now_ns()
            self.area.save(node)
