"""Console tokens: ``trunkfs console`` asks the daemon for one over the
control socket and prints it in a URL, as Jupyter does.  A token stands for
the uid (and gid) that asked for it: every page it opens runs with that
uid's permissions.  Tokens live in the daemon's memory only (a restart
forgets them) and expire after ``lifetime`` seconds; only their SHA-256 is
kept (a lookup by digest tells nothing about the tokens it misses)."""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass

TOKEN_BYTES = 32
DEFAULT_LIFETIME = 7 * 24 * 3600.0    # seconds a token stays valid
MAX_TOKENS = 4096                     # kept at most; the oldest go first


@dataclass(frozen=True)
class Holder:
    """Who a token was issued to."""

    uid: int
    gid: int
    expires: float


class ConsoleTokens:
    def __init__(self, lifetime: float = DEFAULT_LIFETIME) -> None:
        self.lifetime = lifetime
        self._by_digest: dict[bytes, Holder] = {}

    @staticmethod
    def _digest(token: str) -> bytes:
        return hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()

    def issue(self, uid: int, gid: int) -> str:
        """A new token for ``uid``/``gid``."""
        self._expire()
        while len(self._by_digest) >= MAX_TOKENS:
            del self._by_digest[next(iter(self._by_digest))]
        token = secrets.token_urlsafe(TOKEN_BYTES)
        self._by_digest[self._digest(token)] = Holder(uid, gid, time.monotonic() + self.lifetime)
        return token

    def holder(self, token: str | None) -> Holder | None:
        """Who ``token`` was issued to; None for an unknown or expired token."""
        if not token or len(token) > 256:
            return None
        found = self._by_digest.get(self._digest(token))
        return found if found is not None and found.expires > time.monotonic() else None

    def valid(self, holder: Holder) -> bool:
        """Whether the token ``holder`` came from is still valid (an open
        event stream asks at each event: a revoked token ends it)."""
        return holder.expires > time.monotonic() and any(h is holder for h in self._by_digest.values())

    def revoke(self, uid: int) -> int:
        """Forget every token of ``uid``; how many there were."""
        gone = [d for d, h in self._by_digest.items() if h.uid == uid]
        for d in gone:
            del self._by_digest[d]
        return len(gone)

    def _expire(self) -> None:
        now = time.monotonic()
        for d in [d for d, h in self._by_digest.items() if h.expires <= now]:
            del self._by_digest[d]
