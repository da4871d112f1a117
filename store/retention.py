"""Retention rules: how much of a repo's history the collector keeps.

``retention/<repo>`` holds ``{"v": 1, "w", "rules": [{"branch", "keep_last",
"keep_days"}]}``.  A rule for a branch applies to it; a rule without a
branch to every other branch and tag of the repo; without any rule, every
commit reachable from a branch or a tag is kept forever.  A commit is kept
by a rule when it is among the ``keep_last`` newest of the history from
the head (counted along parents) or younger than ``keep_days``; with both,
either keeps it.  The head itself is always kept.  Commits no rule keeps
become unreachable: the collector deletes them (``gc``), and opening one
afterwards says it expired.
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass

from .backends.base import Backend
from .errors import Conflict, InvalidArgument
from .names import check_name

RETENTION_VERSION = 1


@dataclass(frozen=True)
class RetentionRule:
    branch: str | None = None
    keep_last: int | None = None
    keep_days: float | None = None

    def keeps(self, depth: int, commit_time: float, now: float) -> bool:
        if depth == 0:
            return True
        if self.keep_last is not None and depth < self.keep_last:
            return True
        return self.keep_days is not None and commit_time >= now - self.keep_days * 86400

    def to_json(self) -> dict:
        return {"branch": self.branch, "keep_last": self.keep_last, "keep_days": self.keep_days}

    @classmethod
    def from_json(cls, obj: object) -> "RetentionRule":
        if not isinstance(obj, dict):
            raise InvalidArgument("a retention rule must be an object")
        branch, last, days = obj.get("branch"), obj.get("keep_last"), obj.get("keep_days")
        if branch is not None:
            check_name(branch, "branch")
        if last is not None and (isinstance(last, bool) or not isinstance(last, int) or last < 1):
            raise InvalidArgument("keep_last must be a whole number of commits, 1 or more")
        if days is not None and (isinstance(days, bool) or not isinstance(days, (int, float))
                                 or not 0 <= days <= 1_000_000):
            raise InvalidArgument("keep_days must be a number of days, 0 or more")
        if last is None and days is None:
            raise InvalidArgument("a retention rule needs keep_last, keep_days or both")
        return cls(branch, last, None if days is None else float(days))


class RetentionRules:
    """The rules of one store's repos, read and changed by compare-and-swap."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    def get(self, repo: str) -> list[RetentionRule]:
        found = self.backend.get_versioned(f"retention/{repo}")
        if found is None:
            return []
        try:
            return [RetentionRule.from_json(r) for r in json.loads(found[0]).get("rules", [])]
        except (ValueError, AttributeError, InvalidArgument) as exc:
            raise InvalidArgument(f"the retention rules of repo {repo!r} cannot be read: {exc}") from exc

    def rule_for(self, rules: list[RetentionRule], branch: str | None) -> RetentionRule | None:
        """The rule of ``branch`` (None: a tag), else the repo's, else None (keep all)."""
        for r in rules:
            if branch is not None and r.branch == branch:
                return r
        return next((r for r in rules if r.branch is None), None)

    def change(self, repo: str, rule: RetentionRule | None, branch: str | None) -> list[RetentionRule]:
        """Set the rule of ``branch`` (None: the repo's), or drop it when ``rule`` is None."""
        key = f"retention/{repo}"
        for _ in range(20):
            found = self.backend.get_versioned(key)
            rules = self.get(repo) if found is not None else []
            rules = [r for r in rules if r.branch != branch] + ([rule] if rule is not None else [])
            body = json.dumps({"v": RETENTION_VERSION, "w": secrets.token_hex(8), "time": time.time(),
                               "rules": [r.to_json() for r in rules]}).encode()
            try:
                if not rules and found is not None:
                    self.backend.delete_if(key, found[1])
                elif rules:
                    self.backend.put_if(key, body, found[1] if found is not None else None)
                return rules
            except Conflict:
                continue
        raise Conflict(f"the retention rules of repo {repo!r} kept changing; try again")

    def drop(self, repo: str) -> None:
        self.backend.delete(f"retention/{repo}")
