"""Merging histories: the merge base of two commits, and the three-way
merge of trees by path.

The merge of ``ours`` and ``theirs`` from ``base`` goes name by name
through the three trees, descending only where both sides changed a
directory (a subtree whose entry is the same on two sides is settled
without reading it).  Per path, entries are compared whole but for their
name (type, mode, mtime, content):

* ours and theirs are the same: it goes in;
* ours is the base's: theirs goes in (a deletion too);
* theirs is the base's: ours goes in;
* both are directories (or one a directory and the other gone): merged
  name by name below; a merged directory left empty that one side
  deleted is deleted;
* otherwise both sides changed the path in different ways: a conflict,
  settled by the strategy (``ours`` or ``theirs`` wholesale) or reported
  with every conflicting path (:class:`MergeConflict`).

A directory's own metadata (mode, mtime) is taken from the side that
changed it, ours when both did.  Revert is the same merge with the
reverted commit as the base and its parent as theirs.

The descent keeps an explicit stack, so paths deeper than Python's
recursion limit merge too.  Plain synchronous functions: the daemon calls
them in worker threads.
"""

from __future__ import annotations

import logging
import heapq
import itertools
from collections.abc import Iterator

from .errors import Conflict, InvalidArgument
from .objects import DIR, dir_counts
from .store import Store
from .walk import is_dir, listing
from .writer import WriteSession

log = logging.getLogger(__name__)

OURS, THEIRS = "ours", "theirs"
STRATEGIES = (OURS, THEIRS)
_DERIVED = ("name", "tree", "size", "files", "dirs", "links")   # not a directory's own metadata


class MergeConflict(Conflict):
    """Paths both sides of a merge (or a revert and the commits after the
    reverted one) changed in different ways.  Nothing was committed."""

    SHOWN = 20

    def __init__(self, what: str, paths: list[str], hint: str = "") -> None:
        self.paths = sorted(paths)
        shown = ", ".join(self.paths[:self.SHOWN])
        more = f" and {len(self.paths) - self.SHOWN} more" if len(self.paths) > self.SHOWN else ""
        super().__init__(f"{what} conflicts on {len(self.paths)} path(s) changed on both sides: "
                         f"{shown}{more}; nothing was committed{hint}")

    def details(self) -> dict:
        return {"paths": self.paths}


def check_strategy(strategy: str | None) -> str | None:
    if strategy is not None and strategy not in STRATEGIES:
        raise InvalidArgument(f"merge strategy must be one of {', '.join(STRATEGIES)}, not {strategy!r}")
    return strategy


# -- history ---------------------------------------------------------------------

_ONE, _TWO, _STALE = 1, 2, 4


def _common(store: Store, a: str, b: str) -> list[str]:
    """Common ancestors of ``a`` and ``b`` none of which is below another
    found first, newest first.  Both histories are walked together, newest
    commit first (by commit time), marking each commit with the sides it
    is reached from; a commit reached from both is common, and what lies
    below it is marked stale and not reported.  The walk ends when every
    commit still queued is stale, so it reads the commits above the merge
    base, not whole histories.  A commit time out of order (clocks of
    daemons apart) only re-queues commits: a commit reached from both sides
    is always common."""
    flags: dict[str, int] = {a: _ONE, b: _TWO}
    queue: list[tuple[float, int, str]] = []
    order = itertools.count()

    def push(cid: str) -> None:
        heapq.heappush(queue, (-store.read_commit(cid).time, next(order), cid))
    push(a)
    push(b)
    found: list[str] = []
    while any(not flags[c] & _STALE for _, _, c in queue):
        _, _, cid = heapq.heappop(queue)
        mark = flags[cid]
        if mark & (_ONE | _TWO) == _ONE | _TWO and not mark & _STALE:
            found.append(cid)
            mark |= _STALE
            flags[cid] = mark
        for parent in store.read_commit(cid).parents:
            have = flags.get(parent, 0)
            if have & mark == mark:
                continue
            flags[parent] = have | mark
            push(parent)
    return found


def merge_base(store: Store, a: str | None, b: str | None) -> str | None:
    """The nearest common ancestor of commits ``a`` and ``b`` over every
    parent (either may be the other's ancestor, or the same commit): one
    that is no ancestor of another common ancestor, the newest when there
    are several (criss-cross merges).  None when they share no commit."""
    if a is None or b is None:
        return None
    if a == b:
        return a
    found = _common(store, a, b)
    best = [c for c in found if not any(o != c and is_ancestor(store, c, o) for o in found)]
    return best[0] if best else None


def is_ancestor(store: Store, ancestor: str | None, commit: str | None) -> bool:
    """Whether ``ancestor`` is ``commit`` or reached from it over any parents
    (no commit is an ancestor of everything)."""
    if ancestor is None:
        return True
    if commit is None:
        return False
    return ancestor == commit or ancestor in _common(store, ancestor, commit)


# -- trees -----------------------------------------------------------------------

def _key(entry: dict | None) -> dict | None:
    """What is compared of an entry: all of it but its name."""
    if entry is None:
        return None
    return {k: v for k, v in entry.items() if k != "name"}


def _same(a: dict | None, b: dict | None) -> bool:
    return _key(a) == _key(b)


def _own_meta(entry: dict | None) -> dict | None:
    """A directory's own metadata (mode, mtime, ...), not what it holds."""
    if entry is None:
        return None
    return {k: v for k, v in entry.items() if k not in _DERIVED}


class _Frame:
    """One directory being merged: the three sides' entries, the merged
    children so far, and the names still to settle."""

    __slots__ = ("path", "name", "base", "ours", "theirs", "merged", "names")

    def __init__(self, path: str, name: str, base: dict | None, ours: dict | None,
                 theirs: dict | None, store: Store) -> None:
        self.path, self.name = path, name
        self.base, self.ours, self.theirs = base, ours, theirs
        self.merged: dict[str, dict] = {}
        lb, lo, lt = listing(store, base), listing(store, ours), listing(store, theirs)
        self.names: Iterator[tuple[str, dict | None, dict | None, dict | None]] = (
            (n, lb.get(n), lo.get(n), lt.get(n)) for n in sorted(lb.keys() | lo.keys() | lt.keys()))


def _dir_or_gone(entry: dict | None) -> bool:
    return entry is None or is_dir(entry)


class TreeMerge:
    """A three-way merge of directory entries, writing merged trees into a
    write session.  After :meth:`run`, ``conflicts`` lists the paths both
    sides changed differently (settled by ``strategy`` when one is given)."""

    def __init__(self, store: Store, session: WriteSession, strategy: str | None = None) -> None:
        self.store = store
        self.session = session
        self.strategy = check_strategy(strategy)
        self.conflicts: list[str] = []

    def run(self, base: dict | None, ours: dict, theirs: dict) -> dict:
        """The merged root entry (name, tree, size, files, dirs) of three root
        directory entries; ``base`` None is an empty directory."""
        if _same(ours, theirs) or (base is not None and _same(theirs, base)):
            return ours
        if base is not None and _same(ours, base):
            return theirs
        stack = [_Frame("", ours.get("name", ""), base, ours, theirs, self.store)]
        result: dict | None = None
        while stack:
            frame = stack[-1]
            for name, eb, eo, et in frame.names:
                path = f"{frame.path}/{name}"
                if (is_dir(eo) or is_dir(et)) and _dir_or_gone(eo) and _dir_or_gone(et) \
                        and not _same(eo, et) and not _same(eo, eb) and not _same(et, eb):
                    stack.append(_Frame(path, name, eb if is_dir(eb) else None, eo, et, self.store))
                    break
                chosen = self._settle(path, eb, eo, et)
                if chosen is not None:
                    frame.merged[name] = chosen
            else:
                stack.pop()
                done = self._finish(frame)
                if not stack:
                    result = done
                elif done is not None:
                    stack[-1].merged[frame.name] = done
        assert result is not None   # the root is never deleted
        return result

    def _settle(self, path: str, eb: dict | None, eo: dict | None, et: dict | None) -> dict | None:
        if _same(eo, et) or _same(et, eb):
            return eo
        if _same(eo, eb):
            return et
        self.conflicts.append(path)
        return et if self.strategy == THEIRS else eo

    def _finish(self, frame: _Frame) -> dict | None:
        """The merged directory's entry: ours when nothing differs from it,
        None when it is empty and a side deleted it, else a new tree."""
        merged = frame.merged
        if frame.path and not merged and (frame.ours is None or frame.theirs is None):
            return None
        mo, mb, mt = _own_meta(frame.ours), _own_meta(frame.base), _own_meta(frame.theirs)
        meta = mt if (mo == mb or mo is None) and mt is not None else mo
        assert meta is not None
        if frame.ours is not None and meta == mo and merged == listing(self.store, frame.ours):
            return frame.ours
        entries = [dict(e, name=n) for n, e in merged.items()]
        out = dict(meta, name=frame.name, type=DIR)
        out.update(tree=self.session.put_tree(entries), **dir_counts(entries))
        return out


def merge_roots(store: Store, session: WriteSession, base: dict | None, ours: dict,
                theirs: dict, strategy: str | None = None) -> tuple[dict, list[str]]:
    """``(merged root entry, conflicting paths)`` of three root entries."""
    merge = TreeMerge(store, session, strategy)
    root = merge.run(base, ours, theirs)
    return root, sorted(merge.conflicts)
