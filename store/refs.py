"""Repos, branches and tags: small mutable objects in the store.

``repos/<name>`` holds a repo's identity; ``refs/<repo>/<branch>`` holds a
branch head and changes only by compare-and-swap, so a branch moves from the
old head to the new one or not at all.  ``tags/<repo>/<tag>`` names a
commit and never moves: it is created once (``If-None-Match``) and can only
be deleted.  A name is a branch or a tag of a repo, never both; a ref
resolves to a branch first, then a tag, then a commit id.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Callable

from .errors import AlreadyExists, Conflict, InvalidArgument, NotFound
from .names import check_name
from .objects import EVERYONE, RepoInfo, decode_ref, encode_ref
from .store import Store

log = logging.getLogger(__name__)

DEFAULT_BRANCH = "main"
MIN_PREFIX = 6
UPDATE_ATTEMPTS = 20
NEW_REPO_ACL = [{"kind": EVERYONE, "id": None, "role": "read"}]
_HEX = re.compile(r"^[0-9a-f]+$")


class Refs:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.backend = store.backend

    # -- repos -----------------------------------------------------------------

    def create_repo(self, name: str, owner: int = 0, acl: list[dict] | None = None) -> RepoInfo:
        """A new repo owned by ``owner`` (a uid); its access list is ``acl``,
        by default ``read`` for everyone (as a new directory is readable)."""
        check_name(name, "repo")
        info = RepoInfo(name=name, id=uuid.uuid4().hex, created=time.time(), owner=owner,
                        acl=[dict(e) for e in (NEW_REPO_ACL if acl is None else acl)])
        try:
            self.backend.put_if(f"repos/{name}", info.encode(), None)
        except Conflict:
            raise AlreadyExists(f"repo {name!r} already exists") from None
        self.backend.put_if(f"refs/{name}/{DEFAULT_BRANCH}", encode_ref(None), None)
        log.info("created repo %s", name)
        return info

    def get_repo(self, name: str) -> RepoInfo:
        check_name(name, "repo")
        found = self.backend.get_versioned(f"repos/{name}")
        if found is None:
            raise NotFound(f"repo {name!r} does not exist")
        return RepoInfo.decode(found[0], f"repos/{name}")

    def update_repo(self, name: str, change: Callable[[RepoInfo], RepoInfo]) -> RepoInfo:
        """Replace a repo's record by ``change(record)`` with a compare-and-swap,
        read and changed again when another writer got there first."""
        check_name(name, "repo")
        key = f"repos/{name}"
        for _ in range(UPDATE_ATTEMPTS):
            found = self.backend.get_versioned(key)
            if found is None:
                raise NotFound(f"repo {name!r} does not exist")
            new = change(RepoInfo.decode(found[0], key))
            try:
                self.backend.put_if(key, new.encode(), found[1])
            except Conflict:
                continue
            log.info("updated the record of repo %s", name)
            return new
        raise Conflict(f"repo {name!r} kept changing; try again")

    def list_repos(self) -> list[RepoInfo]:
        out = []
        for key in sorted(self.backend.list("repos/")):
            found = self.backend.get_versioned(key)
            if found is not None:
                out.append(RepoInfo.decode(found[0], key))
        return out

    def delete_repo(self, name: str) -> None:
        self.get_repo(name)
        for key in list(self.backend.list(f"refs/{name}/")) + list(self.backend.list(f"tags/{name}/")):
            self.backend.delete(key)
        self.backend.delete(f"retention/{name}")
        self.backend.delete(f"repos/{name}")
        log.info("deleted repo %s (its data stays in the store until garbage collection)", name)

    # -- branches --------------------------------------------------------------

    def list_branches(self, repo: str) -> dict[str, str | None]:
        return self._named_commits("refs", repo)

    def _named_commits(self, kind: str, repo: str) -> dict[str, str | None]:
        """Name -> commit of every branch (``refs``) or tag (``tags``) of a repo."""
        self.get_repo(repo)
        out: dict[str, str | None] = {}
        for key in sorted(self.backend.list(f"{kind}/{repo}/")):
            found = self.backend.get_versioned(key)
            if found is not None:
                out[key.rsplit("/", 1)[-1]] = decode_ref(found[0], key)
        return out

    def read_branch(self, repo: str, branch: str) -> tuple[str | None, str]:
        """Return (head commit or None, version for compare-and-swap)."""
        check_name(branch, "branch")
        key = f"refs/{repo}/{branch}"
        found = self.backend.get_versioned(key)
        if found is None:
            self.get_repo(repo)
            raise NotFound(f"branch {branch!r} does not exist in repo {repo!r}")
        return decode_ref(found[0], key), found[1]

    def create_branch(self, repo: str, branch: str, commit: str | None) -> None:
        check_name(branch, "branch")
        self.get_repo(repo)
        if self.read_tag(repo, branch) is not None:
            raise AlreadyExists(f"repo {repo!r} has a tag named {branch!r}; a branch cannot have its name")
        try:
            self.backend.put_if(f"refs/{repo}/{branch}", encode_ref(commit), None)
        except Conflict:
            raise AlreadyExists(f"branch {branch!r} already exists in repo {repo!r}") from None

    def delete_branch(self, repo: str, branch: str) -> None:
        _, version = self.read_branch(repo, branch)
        self.backend.delete_if(f"refs/{repo}/{branch}", version)

    def move_branch(self, repo: str, branch: str, commit: str, expected_version: str) -> str:
        """Point ``branch`` at ``commit`` if it is still at ``expected_version``."""
        return self.backend.put_if(f"refs/{repo}/{branch}", encode_ref(commit), expected_version)

    # -- tags --------------------------------------------------------------------

    def create_tag(self, repo: str, tag: str, commit: str) -> None:
        """Name ``commit`` ``tag`` in ``repo``, for good (AlreadyExists if the
        name is a tag or a branch already)."""
        check_name(tag, "tag")
        self.get_repo(repo)
        if self.backend.get_versioned(f"refs/{repo}/{tag}") is not None:
            raise AlreadyExists(f"repo {repo!r} has a branch named {tag!r}; a tag cannot have its name")
        try:
            self.backend.put_if(f"tags/{repo}/{tag}", encode_ref(commit), None)
        except Conflict:
            raise AlreadyExists(f"tag {tag!r} already exists in repo {repo!r} (tags never move)") from None
        log.info("tagged %s@%s as %s", repo, commit[:12], tag)

    def read_tag(self, repo: str, tag: str) -> str | None:
        """The commit a tag names (None: no such tag)."""
        key = f"tags/{repo}/{tag}"
        found = self.backend.get_versioned(key)
        return None if found is None else decode_ref(found[0], key)

    def list_tags(self, repo: str) -> dict[str, str | None]:
        return self._named_commits("tags", repo)

    def delete_tag(self, repo: str, tag: str) -> None:
        check_name(tag, "tag")
        self.get_repo(repo)
        key = f"tags/{repo}/{tag}"
        found = self.backend.get_versioned(key)
        if found is None:
            raise NotFound(f"tag {tag!r} does not exist in repo {repo!r}")
        try:
            self.backend.delete_if(key, found[1])
        except (Conflict, NotFound):
            pass    # deleted meanwhile: gone, as asked
        log.info("deleted tag %s of repo %s", tag, repo)

    # -- resolving -------------------------------------------------------------

    def resolve(self, repo: str, ref: str | None) -> tuple[str | None, str | None]:
        """Resolve a branch name or commit id (prefix) to ``(commit, branch)``.

        ``branch`` is None when ``ref`` named a commit.
        """
        ref = ref or DEFAULT_BRANCH
        info = self.get_repo(repo)
        if not isinstance(ref, str) or not ref:
            raise InvalidArgument("ref must be a non-empty string")
        key = f"refs/{repo}/{ref}" if "/" not in ref and check_ref_chars(ref) else None
        if key is not None:
            found = self.backend.get_versioned(key)
            if found is not None:
                return decode_ref(found[0], key), ref
            tagged = self.read_tag(repo, ref)
            if tagged is not None:
                return tagged, None
        lowered = ref.lower()
        if _HEX.match(lowered):
            if len(lowered) < MIN_PREFIX:
                raise InvalidArgument(
                    f"{ref!r} is neither a branch of {repo!r} nor a commit prefix of at least {MIN_PREFIX} characters")
            matches = self.store.commits_with_prefix(info.id, lowered)
            if not matches and len(lowered) == 64:   # whole, and maybe written by another daemon
                try:
                    if self.store.read_commit(lowered).repo_id == info.id:
                        matches = [lowered]
                except NotFound:
                    if self.store.expired(lowered):
                        raise     # "expired": clearer than "no such commit"
            if len(matches) == 1:
                return matches[0], None
            if len(matches) > 1:
                raise InvalidArgument(f"commit prefix {ref!r} is ambiguous in repo {repo!r} ({len(matches)} commits)")
        raise NotFound(f"{ref!r} is neither a branch, a tag nor a commit of repo {repo!r}")


def check_ref_chars(ref: str) -> bool:
    try:
        check_name(ref, "branch")
        return True
    except InvalidArgument:
        return False
