#!/usr/bin/env python3
"""A minimal pyfuse3 file system for bench/requests.py: a root directory and
one file ``f``; every ``getxattr`` is refused at once.  What a request
costs through pyfuse3 and trio with nothing of trunkfs in the way.

Usage: python bench/minfuse.py MOUNTPOINT   (serves until unmounted)
"""

from __future__ import annotations

import errno
import stat
import sys

import pyfuse3
import trio

ROOT, FILE = pyfuse3.ROOT_INODE, pyfuse3.ROOT_INODE + 1


class MinimalOperations(pyfuse3.Operations):
    async def getattr(self, inode: int, ctx: pyfuse3.RequestContext | None = None) -> pyfuse3.EntryAttributes:
        if inode not in (ROOT, FILE):
            raise pyfuse3.FUSEError(errno.ENOENT)
        attr = pyfuse3.EntryAttributes()
        attr.st_ino = inode
        attr.st_mode = stat.S_IFDIR | 0o755 if inode == ROOT else stat.S_IFREG | 0o644
        attr.st_nlink = 1
        attr.st_size = 0
        attr.attr_timeout = attr.entry_timeout = 300
        return attr

    async def lookup(self, parent: int, name: bytes, ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        if parent != ROOT or name != b"f":
            raise pyfuse3.FUSEError(errno.ENOENT)
        return await self.getattr(FILE)

    async def getxattr(self, inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> bytes:
        raise pyfuse3.FUSEError(pyfuse3.ENOATTR)


def main() -> None:
    pyfuse3.init(MinimalOperations(), sys.argv[1], {"fsname=minfuse"})
    try:
        trio.run(pyfuse3.main, 2, 64)   # as the daemon runs it (mountfs/mount.py)
    finally:
        pyfuse3.close(unmount=False)


if __name__ == "__main__":
    main()
