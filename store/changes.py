"""What a commit is asked to do, below every layer that commits: the change
to a branch head's tree (the :class:`Change` protocol, with :class:`Edit`
and :class:`ReplaceRoot`) and the commit's metadata (:class:`CommitMeta`).
The daemon's one commit path (``trunkfs.daemon.commits``) applies them;
staging and pipelines build them without knowing that path.
"""

from __future__ import annotations

import pwd
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from .store import Store
from .treeedit import TreeEditor
from .writer import WriteSession


def author_of(uid: int) -> dict:
    """A commit's author: the uid and its user name (``uid<N>`` when unknown)."""
    try:
        name = pwd.getpwuid(uid).pw_name
    except KeyError:
        name = f"uid{uid}"
    return {"uid": uid, "name": name}


class Change(Protocol):
    """What a commit does to the head's tree."""

    async def prepare(self, session: WriteSession) -> None:
        """Work done once, before the head is read (on the event loop; heavy
        work goes to threads)."""

    def build(self, base: dict | None, session: WriteSession) -> dict:
        """The new root entry over ``base`` (the head's root entry, None for a
        branch without commits); runs in a worker thread, once per attempt."""


@runtime_checkable
class HeadChecked(Protocol):
    """A change that must see the head commit it lands on first (a
    pipeline's output checks that its job is not committed already)."""

    def check_head(self, head: str | None) -> None:
        """Raise to stop the commit; runs in the worker thread before each
        :meth:`Change.build`, inside the compare-and-swap loop."""


class Edit:
    """Apply ``fn`` to a :class:`TreeEditor` over the head."""

    def __init__(self, store: Store, fn: Callable[[TreeEditor], None]) -> None:
        self.store = store
        self.fn = fn

    async def prepare(self, session: WriteSession) -> None:
        return None

    def build(self, base: dict | None, session: WriteSession) -> dict:
        editor = TreeEditor(self.store, base["tree"] if base else None)
        self.fn(editor)
        return editor.write(session)


class ReplaceRoot:
    """Make ``root`` (a written root entry: tree, size, files, dirs) the new tree."""

    def __init__(self, root: dict) -> None:
        self.root = root

    async def prepare(self, session: WriteSession) -> None:
        return None

    def build(self, base: dict | None, session: WriteSession) -> dict:
        return self.root


@dataclass
class CommitMeta:
    message: str
    author: dict
    origin: dict = field(default_factory=lambda: {"kind": "user"})
    provenance: list[dict] = field(default_factory=list)
    allow_empty: bool = True
    # parents after the head it lands on: the merged commit of a merge
    extra_parents: list[str] = field(default_factory=list)
