"""Checking a store: walk every object reachable from a branch head.

Structure (always): every ref names a commit that exists and hashes right,
every commit's parents and trees exist and decode, every chunk a file needs
is located in a pack that exists in the store with the right size.  With
``read_data`` every pack is read once and every blob in it verified against
its id, so corrupt bytes are found too.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from .errors import IntegrityError, NotFound, TrunkError
from .objects import DIR, FILE
from .packs import pack_key
from .refs import Refs
from .store import Store
from .walk import listing

log = logging.getLogger(__name__)


@dataclass
class FsckReport:
    commits: int = 0
    trees: int = 0
    files: int = 0
    chunks: int = 0
    packs: int = 0
    blobs_verified: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_json(self) -> dict:
        return {"ok": self.ok, "commits": self.commits, "trees": self.trees, "files": self.files,
                "chunks": self.chunks, "packs": self.packs,
                "blobs_verified": self.blobs_verified, "problems": self.problems}


def fsck(store: Store, read_data: bool = False, max_problems: int = 1000) -> FsckReport:
    report = FsckReport()
    refs = Refs(store)

    def problem(msg: str) -> None:
        if len(report.problems) < max_problems:
            report.problems.append(msg)
        log.warning("fsck: %s", msg)

    seen_commits: set[str] = set()
    seen_trees: set[str] = set()
    chunks: set[str] = set()

    def read_listing(tree: str, where: str) -> dict[str, dict] | None:
        """A tree's entries by name the first time it is met, else None
        (each tree is checked once, however many commits share it)."""
        if tree in seen_trees:
            return None
        seen_trees.add(tree)
        try:
            entries = listing(store, {"type": DIR, "tree": tree})
        except TrunkError as exc:
            problem(f"{where}: tree {tree}: {exc}")
            return None
        for text in store.malformed_entries.get(tree, ()):
            problem(f"{where}: {text}")
        report.trees += 1
        return entries

    def check_file(e: dict, path: str) -> None:
        report.files += 1
        total = 0
        for hexid, length in e.get("chunks", []):
            chunks.add(hexid)
            total += length
        if total != e.get("size", 0):
            problem(f"{path}: chunk lengths add up to {total}, size says {e.get('size')}")

    def walk_tree(tree: str, where: str) -> None:
        """Depth first by name, each tree read once through the walker's
        listing; an explicit stack, so any depth works."""
        top = read_listing(tree, where)
        if top is None:
            return
        stack = [(where, iter(sorted(top.items())))]
        while stack:
            prefix, items = stack[-1]
            for name, e in items:
                path = f"{prefix}/{name}"
                if e["type"] == DIR:
                    below = read_listing(e["tree"], path)
                    if below is not None:
                        stack.append((path, iter(sorted(below.items()))))
                        break
                elif e["type"] == FILE:
                    check_file(e, path)
            else:
                stack.pop()

    def walk_commit(cid: str, where: str) -> None:
        stack = [cid]
        while stack:
            c = stack.pop()
            if c in seen_commits:
                continue
            seen_commits.add(c)
            try:
                commit = store._load_commit(c)
            except (NotFound, IntegrityError) as exc:
                if not store.expired(c):     # history cut by retention is no problem
                    problem(f"{where}: {exc}")
                continue
            report.commits += 1
            walk_tree(commit.tree, f"{where}@{c[:12]}:")
            stack.extend(commit.parents)

    for info in refs.list_repos():
        try:
            branches = refs.list_branches(info.name)
        except TrunkError as exc:
            problem(f"repo {info.name}: {exc}")
            continue
        for branch, head in branches.items():
            if head:
                walk_commit(head, f"{info.name}@{branch}")
        for tag, tagged in refs.list_tags(info.name).items():
            if tagged:
                walk_commit(tagged, f"{info.name}@{tag}")

    # Locate every chunk; each pack must exist with the size the index knows.
    pack_sizes = {pid: size for pid, size, _ in store.index.packs()}
    needed_packs: dict[bytes, list] = {}
    for hexid in chunks:
        report.chunks += 1
        loc = store.index.blob(bytes.fromhex(hexid))
        if loc is None:
            problem(f"chunk {hexid} is referenced but in no pack")
            continue
        needed_packs.setdefault(loc.pack_id, []).append((bytes.fromhex(hexid), loc))
    for pid in needed_packs:
        key = pack_key(pid)
        size = store.backend.stat(key)
        report.packs += 1
        if size is None:
            problem(f"pack {key} is missing from the store")
        elif size != pack_sizes.get(pid):
            problem(f"pack {key} has size {size}, expected {pack_sizes.get(pid)}")
        elif read_data:
            try:
                data = store.backend.get(key)
            except TrunkError as exc:
                problem(f"pack {key}: {exc}")
                continue
            for bid, loc in needed_packs[pid]:
                stored = data[loc.offset:loc.offset + loc.stored_len]
                try:
                    store.codec.decode(stored, loc.flags, loc.plain_len, bid, f"pack {key}")
                    report.blobs_verified += 1
                except IntegrityError as exc:
                    problem(str(exc))
    return report
