"""``<mount>/``: one entry per repo (its branch main, writable).

``<repo>@<branch>``, ``<repo>@<tag>`` and ``<repo>@<commit or unique
prefix>`` are not listed but found by lookup (a tag is a read-only commit
view, remembered by the kernel for a second only).  Each name of the root is the root inode of a view: a
:class:`~.branchview.BranchView` (one per branch, whatever name reached it)
or a :class:`~.commitview.CommitView`.  The root itself is read-only.

Repo roles (``access``): the listing shows a caller the repos it may read
(as ``trunkfs repo list`` does); a lookup of a name of a repo it may not
read answers EACCES, whatever follows the ``@``, as the socket answers
``permission_denied`` (a repo's name is no secret there either; ENOENT
would read as a typo).  The entries of repos that not everyone may read
have entry timeout 0: every path walk through them asks again.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import pyfuse3

from ..staging.manager import StagingManager
from ..store.errors import InvalidArgument, NotFound
from ..store.names import check_name
from .access import RepoGate
from ..store.refs import Refs
from .attrs import negative_entry
from .branchview import BranchView
from .commitview import CommitView
from .listings import ListedEntries
from .inodes import ROOT_INODE, Inode
from .view import NEGATIVE_TIMEOUT, View, ViewParts

log = logging.getLogger(__name__)

ROOT_TIMEOUT = 1.0
TAG_TIMEOUT = 1.0       # `<repo>@<tag>`: a tag deleted and made again names another commit
DEFAULT_BRANCH = "main"


def repo_of(inode: Inode) -> str:
    repo = inode.view.repo
    assert repo is not None, "a view below the root shows a repo"
    return repo


class RootDir(View):
    def __init__(self, parts: ViewParts, refs: Refs, staging: StagingManager, gate: RepoGate) -> None:
        super().__init__(parts)
        self.refs = refs
        self.staging = staging
        self.gate = gate
        self.inode = parts.inodes.add_root(self)
        self._branches: dict[tuple[str, str], BranchView] = {}

    # -- the views below the root ----------------------------------------------------------

    def branch_view(self, repo: str, branch: str) -> BranchView:
        view = self._branches.get((repo, branch))
        if view is None:
            view = BranchView(self.parts, repo, branch, self.staging.area(repo, branch))
            self._branches[(repo, branch)] = view
        return view

    def _branch_root(self, name: str, repo: str, branch: str) -> Inode:
        view = self.branch_view(repo, branch)
        inode = self.parts.inodes.at(ROOT_INODE, name)
        if inode is None or inode.view is not view:
            inode = self.parts.inodes.add(view, None, name)
        return inode

    async def _commit_root(self, name: str, repo: str, commit: str) -> Inode:
        inode = self.parts.inodes.at(ROOT_INODE, name)
        if inode is None or not (isinstance(inode.view, CommitView) and inode.view.commit == commit):
            entry = await self.parts.commit_root(commit)
            inode = self.parts.inodes.add(CommitView(self.parts, repo, commit), None, name)
            inode.entry = entry
        return inode

    async def _view_root(self, name: str) -> Inode:
        """The root inode of the view ``name`` names (NotFound, InvalidArgument if none)."""
        repo, at, ref = name.partition("@")
        check_name(repo, "repo")
        if at and not ref:
            raise NotFound(f"{name!r}: empty ref")
        commit, branch = await self.parts.run(self.refs.resolve, repo, ref or DEFAULT_BRANCH)
        if branch is not None:
            return self._branch_root(name, repo, branch)
        assert commit is not None
        return await self._commit_root(name, repo, commit)

    async def _attr_of(self, inode: Inode) -> pyfuse3.EntryAttributes:
        try:
            return await inode.view.getattr(inode)
        except BaseException:
            self.parts.inodes.release(inode)
            raise

    # -- what the root answers ---------------------------------------------------------------

    @staticmethod
    def repo_named(name: bytes) -> str | None:
        """The repo a name of the root is a view of (None: not a repo's name)."""
        repo = os.fsdecode(name).partition("@")[0]
        try:
            check_name(repo, "repo")
        except InvalidArgument:
            return None
        return repo

    async def lookup(self, parent: Inode, name: bytes) -> pyfuse3.EntryAttributes:
        try:
            inode = await self._view_root(os.fsdecode(name))
            attr = await self._attr_of(inode)
        except (NotFound, InvalidArgument):
            return negative_entry(NEGATIVE_TIMEOUT)
        try:
            attr.entry_timeout = await self.gate.entry_timeout(repo_of(inode), attr.entry_timeout)
            if _names_a_tag(os.fsdecode(name), inode):   # a tag can be deleted and made again
                attr.entry_timeout = min(attr.entry_timeout, TAG_TIMEOUT)
        except BaseException:
            self.parts.inodes.release(inode)
            raise
        inode.lookups += 1
        return attr

    async def getattr(self, inode: Inode) -> pyfuse3.EntryAttributes:
        return self.parts.attr(inode.ino, {"type": "dir", "mode": 0o755, "mtime": self.parts.started,
                                           "dirs": 0}, ROOT_TIMEOUT)

    async def entries(self, inode: Inode) -> ListedEntries:
        repos = await self.parts.run(self.refs.list_repos)
        self.gate.remember(repos)
        return ListedEntries([(os.fsencode(info.name), info.name) for info in repos])

    async def entry_attr(self, parent: Inode, name: bytes,
                         item: Any) -> tuple[Inode, pyfuse3.EntryAttributes] | None:
        """A repo: its branch main."""
        try:
            inode = self._branch_root(item, item, DEFAULT_BRANCH)
            attr = await self._attr_of(inode)
        except (NotFound, pyfuse3.FUSEError):
            return None
        attr.entry_timeout = await self.gate.entry_timeout(item, attr.entry_timeout)
        return inode, attr

    # -- branch moves ---------------------------------------------------------------------------

    def branch_moved(self, repo: str, branch: str | None) -> None:
        """Drop the kernel's entries for a branch's views (``branch`` None:
        every branch of ``repo``); what lies below them has short timeouts
        and follows on its own."""
        for inode in self.parts.inodes.children(ROOT_INODE):
            view = inode.view
            if isinstance(view, BranchView) and view.repo == repo and branch in (None, view.branch):
                try:
                    pyfuse3.invalidate_entry_async(ROOT_INODE, os.fsencode(inode.name),
                                                   ignore_enoent=True)
                except Exception:  # the kernel may not know the entry
                    log.debug("cannot invalidate %s", inode.name)


    def paths_staged(self, repo: str, branch: str, paths: list[list[str]]) -> None:
        """Drop the kernel's entries along paths staged other than through
        the mount (the socket's ``stage.*``) in a branch's views, so that the
        next path walk looks them up again (new sizes, new names, names gone)."""
        inodes = self.parts.inodes
        for view_inode in inodes.children(ROOT_INODE):
            view = view_inode.view
            if not (isinstance(view, BranchView) and view.repo == repo and view.branch == branch):
                continue
            for parts in paths:
                parent: Inode | None = view_inode
                for name in parts:
                    if parent is None:
                        break
                    try:
                        pyfuse3.invalidate_entry_async(parent.ino, os.fsencode(name), ignore_enoent=True)
                    except Exception:  # the kernel may not know the entry
                        log.debug("cannot invalidate %s", name)
                    parent = inodes.at(parent.ino, name)


def _names_a_tag(name: str, inode: Inode) -> bool:
    """Whether ``<repo>@<ref>`` resolved to a commit view through a tag (not a commit id)."""
    ref = name.partition("@")[2]
    return isinstance(inode.view, CommitView) and bool(ref) and not inode.view.commit.startswith(ref.lower())
