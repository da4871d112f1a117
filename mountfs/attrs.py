"""Turning tree entries into the attributes the kernel sees."""

from __future__ import annotations

import stat

import pyfuse3

NAME_MAX = 255
BLKSIZE = 1024 * 1024  # st_blksize: cp, cat and friends size their buffers by it


def make_attr(ino: int, entry: dict, uid: int, gid: int, timeout: float) -> pyfuse3.EntryAttributes:
    a = pyfuse3.EntryAttributes()
    a.st_ino = ino
    a.generation = 0
    a.entry_timeout = timeout
    a.attr_timeout = timeout
    kind = entry["type"]
    mode = (entry.get("mode") or 0) & 0o7777
    if kind == "dir":
        a.st_mode = stat.S_IFDIR | (mode or 0o755)
        a.st_nlink = 2 + int(entry.get("dirs", 0))
        a.st_size = 0
    elif kind == "symlink":
        a.st_mode = stat.S_IFLNK | 0o777
        a.st_nlink = 1
        a.st_size = len(entry.get("target", "").encode("utf-8", "surrogateescape"))
    else:
        a.st_mode = stat.S_IFREG | mode
        a.st_nlink = 1
        a.st_size = int(entry.get("size", 0))
    a.st_blocks = (a.st_size + 511) // 512 if kind == "file" else 0
    a.st_blksize = BLKSIZE
    a.st_uid = entry.get("uid", uid)
    a.st_gid = entry.get("gid", gid)
    a.st_rdev = 0
    t = int(entry.get("mtime") or 0)
    a.st_mtime_ns = t
    a.st_ctime_ns = t
    a.st_atime_ns = t
    return a


def negative_entry(timeout: float) -> pyfuse3.EntryAttributes:
    """A cacheable 'no such entry' (st_ino 0)."""
    a = pyfuse3.EntryAttributes()
    a.st_ino = 0
    a.entry_timeout = timeout
    return a


def node_attr(ino: int, node, uid: int, gid: int, timeout: float, nlink: int = 1) -> pyfuse3.EntryAttributes:
    """Attributes of a staged node (``staging.nodes``)."""
    a = pyfuse3.EntryAttributes()
    a.st_ino = ino
    a.generation = 0
    a.entry_timeout = timeout
    a.attr_timeout = timeout
    mode = node.mode & 0o7777
    if node.kind == "dir":
        a.st_mode = stat.S_IFDIR | mode
        a.st_nlink = nlink
        a.st_size = 4096
    elif node.kind == "symlink":
        a.st_mode = stat.S_IFLNK | 0o777
        a.st_nlink = 1
        a.st_size = len(node.target.encode("utf-8", "surrogateescape"))
    else:
        a.st_mode = stat.S_IFREG | mode
        a.st_nlink = 1 if node.linked else 0
        a.st_size = node.size
    a.st_blocks = (a.st_size + 511) // 512 if node.kind == "file" else 0
    a.st_blksize = BLKSIZE
    a.st_uid = uid if node.uid is None else node.uid
    a.st_gid = gid if node.gid is None else node.gid
    a.st_rdev = 0
    a.st_mtime_ns = node.mtime
    a.st_ctime_ns = node.ctime or node.mtime
    a.st_atime_ns = node.atime or node.mtime
    return a
