"""Staged changes by path: what the socket's ``stage.*`` operations do (the
``trunkfs://`` filesystem writes a branch through them).  The mount makes
the same changes through its inodes (mountfs/branchnodes.py).

Each function runs on the event loop inside ``area.mutation()``; what it
needs of the committed tree comes through ``listing`` (the caller runs the
store reads in a worker thread).  A committed file that is replaced is
copied up first (by reference) and then truncated, so the commit's
conflict check knows what it replaced (``conflicts``).  Each change moves
the area's epoch: the mount resolves again what it holds of the branch.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from ..store.errors import InvalidArgument, NotFound
from ..store.names import join_path
from ..store.objects import DIR
from .area import StagingArea
from .nodes import DirNode, FileNode, Node
from .overlay import lower_of

Listing = Callable[[dict | None], Awaitable[dict[str, dict]]]


def _is_dir(x: Node | dict | None) -> bool:
    return isinstance(x, DirNode) or (isinstance(x, dict) and x.get("type") == DIR)


async def _child(node: DirNode, followed: dict | None, name: str,
                 listing: Listing) -> tuple[Node | dict | None, dict | None]:
    """What ``name`` is in a staged directory (None: nothing, or removed),
    and the committed entry its lower directory has there."""
    lower = (await listing(lower_of(node, followed))).get(name)
    if name in node.delta:
        return node.delta[name], lower
    return lower, lower


async def directory(area: StagingArea, head_root: dict | None, parts: list[str], listing: Listing,
                    uid: int, gid: int, create: bool) -> tuple[DirNode, dict | None]:
    """The staged directory at ``parts`` (made, with its parents, when
    ``create``), and the committed entry it follows."""
    node, followed = area.ensure_root(head_root), head_root
    for i, name in enumerate(parts):
        cur, lower = await _child(node, followed, name, listing)
        if cur is None:
            if not create:
                raise NotFound(f"{area.where}:{join_path(parts[:i + 1])} does not exist")
            made = area.new_node("dir", 0o755, uid, gid)
            assert isinstance(made, DirNode)
            area.link(node, name, made)
            node, followed = made, None
        elif isinstance(cur, DirNode):
            node, followed = cur, lower
        elif isinstance(cur, dict) and cur.get("type") == DIR:
            staged = area.copy_up(node, name, cur)
            assert isinstance(staged, DirNode)
            node, followed = staged, lower
        else:
            raise InvalidArgument(f"{area.where}:{join_path(parts[:i + 1])} is not a directory")
    return node, followed


async def new_file(area: StagingArea, head_root: dict | None, parts: list[str], listing: Listing,
                   uid: int, gid: int, mode: int) -> FileNode:
    """An empty staged file at ``parts`` (its directories made as needed),
    replacing the file or symlink there; a directory there is refused."""
    if not parts:
        raise InvalidArgument("a file cannot be staged at the repo's root path")
    parent, followed = await directory(area, head_root, parts[:-1], listing, uid, gid, create=True)
    name = parts[-1]
    cur, lower = await _child(parent, followed, name, listing)
    if _is_dir(cur):
        raise InvalidArgument(f"{area.where}:{join_path(parts)} is a directory")
    if isinstance(cur, dict) and cur.get("type") == "file":
        cur = area.copy_up(parent, name, cur)
    if isinstance(cur, FileNode):
        area.truncate(cur, 0, uid)
        cur.mode = mode & 0o777
        area.save(cur)
        area.epoch += 1
        return cur
    if cur is not None:           # a symlink: gone, a file in its place
        area.unlink(parent, name, lower)
    node = area.new_node("file", mode & 0o777, uid, gid)
    assert isinstance(node, FileNode)
    area.link(parent, name, node)
    area.epoch += 1
    return node


async def remove(area: StagingArea, head_root: dict | None, parts: list[str], listing: Listing) -> None:
    """Remove the file or symlink at ``parts`` (NotFound when there is none;
    a directory is refused: its files are removed one by one)."""
    if not parts:
        raise InvalidArgument("the repo's root cannot be removed")
    parent, followed = await directory(area, head_root, parts[:-1], listing, 0, 0, create=False)
    cur, lower = await _child(parent, followed, parts[-1], listing)
    if cur is None:
        raise NotFound(f"{area.where}:{join_path(parts)} does not exist")
    if _is_dir(cur):
        raise InvalidArgument(f"{area.where}:{join_path(parts)} is a directory")
    area.unlink(parent, parts[-1], lower)
