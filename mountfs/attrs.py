"""The attributes the kernel sees, for committed entries and staged nodes alike."""

from __future__ import annotations

import stat

import pyfuse3

from ..staging.nodes import DirNode, FileNode, LinkNode, Node, SpecialNode

FORMATS = {"dir": stat.S_IFDIR, "symlink": stat.S_IFLNK, "file": stat.S_IFREG, "fifo": stat.S_IFIFO,
           "socket": stat.S_IFSOCK, "char": stat.S_IFCHR, "block": stat.S_IFBLK}
KIND_OF_FORMAT = {v: k for k, v in FORMATS.items()}

NAME_MAX = 255
BLKSIZE = 1024 * 1024  # st_blksize: cp, cat and friends size their buffers by it


def attributes(ino: int, x: Node | dict, uid: int, gid: int, timeout: float,
               nlink: int | None = None) -> pyfuse3.EntryAttributes:
    """Attributes of a committed entry (a tree entry dict) or a staged node
    (``staging.nodes``), shown as inode ``ino``; ``uid``/``gid`` are the
    owner when the entry names none.  ``nlink`` overrides the link count the
    entry implies (2 + subdirectories for a committed directory, 1 for a
    file; a staged node its hard-link names; one that left the tree 0)."""
    rdev = 0
    if isinstance(x, Node):
        kind = x.kind
        perm = x.mode & 0o7777
        links = x.nlink if x.linked else 0
        size = 0
        if isinstance(x, DirNode):
            size = 4096
            links = 2
        elif isinstance(x, LinkNode):
            size = len(x.target.encode("utf-8", "surrogateescape"))
        elif isinstance(x, SpecialNode):
            rdev = x.rdev
        else:
            assert isinstance(x, FileNode)
            size = x.size
        owner = uid if x.uid is None else x.uid
        group = gid if x.gid is None else x.gid
        mtime = x.mtime
        ctime = x.ctime or mtime
        atime = x.atime or mtime
    else:
        kind = x["type"]
        perm = (x.get("mode") or 0) & 0o7777
        links = 1
        if kind == "dir":
            perm = perm or 0o755
            size = 0
            links = 2 + int(x.get("dirs", 0))
        elif kind == "symlink":
            size = len(x.get("target", "").encode("utf-8", "surrogateescape"))
        else:
            size = int(x.get("size", 0))
            rdev = x.get("rdev", 0)
        owner = x.get("uid", uid)
        group = x.get("gid", gid)
        mtime = ctime = atime = int(x.get("mtime") or 0)
    a = pyfuse3.EntryAttributes()
    a.st_ino = ino
    a.generation = 0
    a.entry_timeout = timeout
    a.attr_timeout = timeout
    a.st_mode = FORMATS[kind] | (0o777 if kind == "symlink" else perm)
    a.st_nlink = links if nlink is None else nlink
    a.st_size = size
    a.st_blocks = (size + 511) // 512 if kind == "file" else 0
    a.st_blksize = BLKSIZE
    a.st_uid = owner
    a.st_gid = group
    a.st_rdev = rdev
    a.st_mtime_ns = mtime
    a.st_ctime_ns = ctime
    a.st_atime_ns = atime
    return a


def negative_entry(timeout: float) -> pyfuse3.EntryAttributes:
    """A cacheable 'no such entry' (st_ino 0)."""
    a = pyfuse3.EntryAttributes()
    a.st_ino = 0
    a.entry_timeout = timeout
    return a
