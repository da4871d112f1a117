"""The garbage collector: delete the packs nothing live refers to, safely
beside other daemons that write (docs/gc.md).

**Live** is what these reach: every commit a branch or a tag of any repo
names, and their ancestors; every commit younger than the grace period
(it may be about to become a head); the output trees of pipeline datum
records (``datums/``); and the blobs the caller adds (this daemon's
staging areas).  The mark is a Bloom filter of blob ids (``bloom``): its
memory is bounded in the number of blobs, and a false positive only keeps
garbage; trees and commits are visited once each (exact sets of their ids,
far fewer than chunks).

**Two phases.**  A pack none of whose blobs is live (by the pack's own
index, so that a blob stored twice is never lost with one of its copies),
and whose object is older than the grace period, is *condemned*: a record
``gc/condemned/<pack>.<when>.<grace>``.  Writers never reuse a condemned
pack's blobs (they store them anew), and a commit that reuses one past its
deadline is refused (``Store.check_session``).  A later collection (or
the same one, with grace 0) deletes a condemned pack once ``grace`` has
passed since it was condemned, if a new mark still finds it dead; one
found live again is pardoned.  Order, as restic's prune: condemn, then
delete the pack object, then forget it in the index, then delete its
record; a collector killed at any point loses nothing live and the next
run finishes what it left.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field

from .bloom import BloomFilter
from .errors import IntegrityError, NotFound, ObjectMissing, TrunkError
from .objects import DIR, FILE
from .packs import ENTRY, MAGIC, TRAILER, PackWriter, pack_key, read_pack_index
from .refs import Refs
from .retention import RetentionRule, RetentionRules
from .store import (CONDEMNED_PREFIX, DELETED_PREFIX, EXPIRED_PREFIX, REPACKED_PREFIX, Store, condemned_key,
                    parse_condemned)

log = logging.getLogger(__name__)

DEFAULT_GRACE = 86400.0
DEFAULT_MAX_UNUSED = 0.3   # as restic's prune --max-unused: repack packs with more garbage than this
SKEW_MARGIN = 600.0        # clocks of the daemons may disagree by this much
REPORT_KEY = "gc/last"


@dataclass
class GcReport:
    dry_run: bool
    grace: float
    commits: int = 0              # live commits walked
    trees: int = 0
    blobs_marked: int = 0
    packs: int = 0
    live_packs: int = 0
    expired_commits: int = 0      # commits no branch, tag or retention rule keeps, deleted
    condemned: int = 0            # packs condemned by this run
    pardoned: int = 0             # condemned packs found live again
    deleted: int = 0              # packs deleted by this run
    deleted_bytes: int = 0
    reclaimable_bytes: int = 0    # garbage packs (deleted now or later)
    waiting_bytes: int = 0        # of them: kept for now by the grace period
    live_pack_bytes: int = 0
    live_blob_bytes: int = 0      # stored bytes of the live blobs
    repacked: int = 0             # packs whose live blobs were copied to new packs
    repacked_bytes: int = 0       # live bytes copied
    mark_memory_bytes: int = 0
    seconds: float = 0.0
    time: float = field(default_factory=time.time)

    def to_json(self) -> dict:
        return asdict(self)


def margin(grace: float) -> float:
    """Extra wait before a condemned pack is deleted: the clock skew
    allowance, never more than the grace itself (grace 0 is for tests)."""
    return min(grace, SKEW_MARGIN)


class Collector:
    def __init__(self, store: Store, grace: float = DEFAULT_GRACE, dry_run: bool = False,
                 extra_blobs: Iterable[bytes] = (), extra_trees: Iterable[str] = (),
                 max_unused: float = DEFAULT_MAX_UNUSED) -> None:
        if grace < 0:
            raise ValueError("the grace period cannot be negative")
        self.store = store
        self.refs = Refs(store)
        self.grace = grace
        self.dry_run = dry_run
        self.max_unused = max_unused      # a live pack with more garbage than this share is repacked
        self.extra_blobs = extra_blobs    # this daemon's staging: chunks its staged files keep
        self.extra_trees = extra_trees    # and the trees its renamed directories keep
        self.report = GcReport(dry_run, grace)
        self.kept: set[str] = set()       # the live commits, once marked
        self._commit_times: dict[str, float] = {}   # every indexed commit's time (read once)

    def run(self) -> GcReport:
        t0 = time.monotonic()
        store = self.store
        store.sync_index()            # every pack and commit of the store, whoever wrote them
        expected = sum(count for _, _, count in store.index.packs())
        bloom = BloomFilter(expected)
        self.report.mark_memory_bytes = bloom.memory_bytes
        self._mark(bloom)
        self._expire_commits()
        self._sweep(bloom)
        self.report.seconds = round(time.monotonic() - t0, 3)
        if not self.dry_run:
            store.backend.put(REPORT_KEY, json.dumps(self.report.to_json()).encode())
        else:
            store.backend.put(REPORT_KEY + "-dry-run", json.dumps(self.report.to_json()).encode())
        log.info("gc%s: %d live commits, %d packs (%d live), condemned %d, pardoned %d, deleted %d "
                 "(%d bytes), %d bytes reclaimable, in %.1f s", " (dry run)" if self.dry_run else "",
                 self.report.commits, self.report.packs, self.report.live_packs, self.report.condemned,
                 self.report.pardoned, self.report.deleted, self.report.deleted_bytes,
                 self.report.reclaimable_bytes, self.report.seconds)
        return self.report

    # -- mark ------------------------------------------------------------------------

    def _roots(self) -> list[tuple[str, RetentionRule | None]]:
        """(commit, the retention rule its history is kept by) of every
        branch and tag, and of every commit younger than the grace period."""
        now = time.time()
        rules = RetentionRules(self.store.backend)
        by_repo: dict[str, list[RetentionRule]] = {}
        roots: list[tuple[str, RetentionRule | None]] = []
        for info in self.refs.list_repos():
            by_repo[info.name] = rules.get(info.name)
            for branch, head in self.refs.list_branches(info.name).items():
                if head:
                    roots.append((head, rules.rule_for(by_repo[info.name], branch)))
            for _, tagged in self.refs.list_tags(info.name).items():
                if tagged:
                    roots.append((tagged, rules.rule_for(by_repo[info.name], None)))
        young_after = now - self.grace - margin(self.grace)
        for cid in self.store.index.commit_ids():       # young commits: maybe about to be heads
            try:
                commit = self.store.read_commit(cid.hex())
            except (NotFound, IntegrityError):
                continue
            self._commit_times[cid.hex()] = commit.time
            if commit.time > young_after:
                roots.append((cid.hex(), rules.rule_for(by_repo.get(commit.repo, []), None)))
        return roots

    def _mark(self, bloom: BloomFilter) -> None:
        now = time.time()
        kept: set[str] = set()            # commits some root keeps
        whole: set[str] = set()           # commits kept with all their ancestors
        seen_trees: set[str] = set()
        for root, rule in self._roots():
            depths: dict[str, int] = {}
            stack = [(root, 0)]
            while stack:
                cid, depth = stack.pop()
                if cid in whole or depths.get(cid, depth + 1) <= depth:
                    continue
                depths[cid] = depth
                try:
                    commit = self.store.read_commit(cid)
                except NotFound:
                    if self.store.expired(cid):   # history cut by an earlier collection
                        continue
                    raise                         # a missing ancestor: stop, delete nothing
                if rule is not None and not rule.keeps(depth, commit.time, now):
                    continue
                if rule is None:
                    whole.add(cid)
                if cid not in kept:
                    kept.add(cid)
                    self._mark_tree(commit.tree, bloom, seen_trees)
                stack.extend((p, depth + 1) for p in commit.parents)
        self.kept = kept
        for key in self.store.backend.list("datums/"):   # outputs a pipeline may reuse
            found = self.store.backend.get_versioned(key)
            if found is None:
                continue
            try:
                tree = json.loads(found[0])["tree"]
            except (ValueError, KeyError, TypeError):
                log.warning("gc: skipping the unreadable datum record %s", key)
                continue
            self._mark_tree(str(tree), bloom, seen_trees)
        for tree in self.extra_trees:
            self._mark_tree(tree, bloom, seen_trees)
        for blob in self.extra_blobs:
            bloom.add(blob)
        self.report.commits = len(kept)
        self.report.trees = len(seen_trees)
        self.report.blobs_marked = bloom.added

    def _mark_tree(self, tree: str, bloom: BloomFilter, seen: set[str]) -> None:
        stack = [tree]
        while stack:
            tid = stack.pop()
            if tid in seen:
                continue
            seen.add(tid)
            bloom.add(bytes.fromhex(tid))
            for entry in self.store.read_tree(tid):
                kind = entry.get("type")
                if kind == DIR and entry.get("tree"):
                    stack.append(entry["tree"])
                elif kind == FILE:
                    for hexid, _ in entry.get("chunks", ()):
                        bloom.add(bytes.fromhex(hexid))

    # -- commits no branch, tag or rule keeps ---------------------------------------

    def _expire_commits(self) -> None:
        """Delete the commit objects no root keeps and older than the grace
        period (a tombstone first, so that opening one says it expired)."""
        store = self.store
        horizon = time.time() - self.grace - margin(self.grace)
        expired = []
        for hexid, when in self._commit_times.items():
            if hexid not in self.kept and when <= horizon:
                expired.append(hexid)
        self.report.expired_commits = len(expired)
        if self.dry_run:
            return
        for hexid in expired:
            store.backend.put(f"{EXPIRED_PREFIX}{hexid}", b"")
            store.backend.delete(f"commits/{hexid}")
            store.forget_commit(hexid)
        if expired:
            log.info("gc: %d commits expired (no branch, tag or retention rule keeps them)", len(expired))

    # -- sweep -----------------------------------------------------------------------

    def _sweep(self, bloom: BloomFilter) -> None:
        store, report = self.store, self.report
        packs = {pid: size for pid, size, _ in store.index.packs()}
        report.packs = len(packs)
        live_bytes: dict[bytes, int] = {}
        for bid, loc in store.index.blobs():
            if bid in bloom:
                live_bytes[loc.pack_id] = live_bytes.get(loc.pack_id, 0) + loc.stored_len
                report.live_blob_bytes += loc.stored_len
        live = set(live_bytes)
        records = {}
        for key in store.backend.list(CONDEMNED_PREFIX):
            parsed = parse_condemned(key)
            if parsed is not None:
                records[parsed[0]] = (key, parsed[1], parsed[2])
        now = time.time()
        if not self.dry_run and self.max_unused < 1 and self._repack(packs, live_bytes, records, bloom, now):
            packs = {pid: size for pid, size, _ in store.index.packs()}
            live = {loc.pack_id for bid, loc in store.index.blobs() if bid in bloom}
            for key in store.backend.list(CONDEMNED_PREFIX):     # with the repacked ones
                parsed = parse_condemned(key)
                if parsed is not None:
                    records[parsed[0]] = (key, parsed[1], parsed[2])
        dead: dict[bytes, int] = {}
        for pid, size in packs.items():
            if pid in live:
                report.live_pack_bytes += size
            elif self._all_dead(pid, bloom, set(records)):   # no live blob has its only copy here
                dead[pid] = size
            else:
                live.add(pid)
                report.live_pack_bytes += size
        report.live_packs = len(live)
        report.reclaimable_bytes = sum(dead.values())
        for pid, (key, _, _) in records.items():   # live again: a writer reused it before it knew
            if pid not in dead and pid in packs:
                report.pardoned += 1
                if not self.dry_run:
                    store.backend.delete(key)
                    log.info("gc: pack %s is live again; pardoned", pid.hex()[:12])
        for pid, size in dead.items():
            if pid in records:
                continue
            written = store.backend.modified(pack_key(pid))
            if written is None or now - written < self.grace:
                report.waiting_bytes += size
                continue
            report.condemned += 1
            if not self.dry_run:
                key = condemned_key(pid, now, self.grace)
                store.backend.put(key, b"")
                records[pid] = (key, now, self.grace)
        gone: set[bytes] = set()
        for pid, (key, when, grace) in records.items():
            if pid in packs and pid not in dead:
                continue
            if pid in packs and now - when < grace + margin(grace):
                report.waiting_bytes += dead.get(pid, 0)
                continue
            if self.dry_run:
                continue
            # the order restic's prune keeps: a tombstone (so that other daemons
            # know the pack went on purpose, and where its live blobs went), the
            # pack, the index, the record
            moved = store.backend.get_versioned(f"{REPACKED_PREFIX}{pid.hex()}")
            store.backend.put(f"{DELETED_PREFIX}{pid.hex()}", moved[0] if moved else b"")
            store.backend.delete(pack_key(pid))       # gone already (a killed run) is fine
            gone.add(pid)
            report.deleted += 1
            report.deleted_bytes += packs.get(pid, 0)
            log.info("gc: deleted pack %s (%d bytes)", pid.hex()[:12], packs.get(pid, 0))
        store.index.remove_packs({pid for pid in gone if pid in packs})
        for pid in gone:
            store.backend.delete(records[pid][0])
            store.backend.delete(f"{REPACKED_PREFIX}{pid.hex()}")

    def _repack(self, packs: dict[bytes, int], live_bytes: dict[bytes, int], records: dict,
                bloom: BloomFilter, now: float) -> int:
        """Copy the live blobs of packs that are mostly garbage (older than
        the grace period) into new packs, and condemn the old ones: they go
        once the copies are known everywhere (``_all_dead``).  The blobs are
        copied as stored (no recompression)."""
        store = self.store
        counts = {pid: count for pid, _, count in store.index.packs()}
        candidates = []
        for pid, size in packs.items():
            # the share of the pack's blob bytes that no live blob uses (its
            # header, index and trailer are not garbage)
            blob_bytes = size - len(MAGIC) - counts.get(pid, 0) * ENTRY.size - TRAILER.size
            if pid in live_bytes and pid not in records and blob_bytes > 0 \
                    and 1 - live_bytes[pid] / blob_bytes > self.max_unused:
                candidates.append(pid)
        writer: PackWriter | None = None
        sources: list[bytes] = []
        for pid in candidates:
            written = store.backend.modified(pack_key(pid))
            if written is None or now - written < self.grace:
                continue
            try:
                _, blobs = read_pack_index(store.backend, pid)
                raw = store.backend.get(pack_key(pid))
            except (IntegrityError, ObjectMissing, TrunkError) as exc:
                log.warning("gc: cannot read pack %s to repack it: %s", pid.hex()[:12], exc)
                continue
            if writer is None:
                writer = PackWriter(store.tmp_dir)
            for bid, loc in blobs:
                found = store.index.blob(bid) if bid in bloom else None
                if found is not None and found.pack_id == pid:   # live, and this is the copy in use
                    writer.add(loc.type, bid, raw[loc.offset:loc.offset + loc.stored_len], loc.flags,
                               loc.plain_len)
                    self.report.repacked_bytes += loc.stored_len
            sources.append(pid)
            if writer.size >= store.pack_size:
                self._finish_repack(writer, sources, now)
                writer, sources = None, []
        if writer is not None:
            if len(writer):
                self._finish_repack(writer, sources, now)
            else:
                writer.abort()
        return self.report.repacked

    def _finish_repack(self, writer: PackWriter, sources: list[bytes], now: float) -> None:
        store = self.store
        new_id, blobs = writer.finish()
        size = os.stat(writer.path).st_size
        store.backend.put_file(pack_key(new_id), writer.path)
        store.index.add_pack(new_id, size, blobs)     # the live blobs are found there now
        for pid in sources:
            store.backend.put(f"{REPACKED_PREFIX}{pid.hex()}", json.dumps([new_id.hex()]).encode())
            store.backend.put(condemned_key(pid, now, self.grace), b"")
            self.report.repacked += 1
        log.info("gc: repacked %d packs into %s (%d blobs, %d bytes)", len(sources), new_id.hex()[:12],
                 len(blobs), size)
        try:
            os.unlink(writer.path)
        except FileNotFoundError:
            pass

    def _all_dead(self, pid: bytes, bloom: BloomFilter, condemned: set[bytes]) -> bool:
        """Whether no live blob of the pack (by its own index) has its only
        copy there: each is found, by the index, in another pack that is not
        condemned."""
        try:
            _, blobs = read_pack_index(self.store.backend, pid)
        except (IntegrityError, ObjectMissing, TrunkError) as exc:
            log.warning("gc: cannot read the index of pack %s, keeping it: %s", pid.hex()[:12], exc)
            return False
        for bid, _ in blobs:
            if bid in bloom:
                loc = self.store.index.blob(bid)
                if loc is None or loc.pack_id == pid or loc.pack_id in condemned:
                    return False
        return True
