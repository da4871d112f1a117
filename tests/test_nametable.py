"""A tree's names and kinds kept in the index (``store/nametable.py``) for
listings by name: the record gives what decoding the tree gives, a record
that is not one is not used, and what is kept goes with the tree's pack."""

from __future__ import annotations

import json
import os
import random

import pytest

from trunkfs.store import nametable
from trunkfs.store.codec import blob_id
from trunkfs.store.nametable import HARD_LINK, KIND_CODES, NameTable
from trunkfs.store.objects import DIR, FILE, SYMLINK

# names as an attacker picks them: not UTF-8, control characters, the
# record's own separator's neighbours, JSON that spells keys
HOSTILE = ["caf\udce9", "line\nbreak", "\x01ctl", '"name":"x', 'q","type":"dir', "back\\slash",
           "é-accent", "日本", "-rf", " lead", "trail ", "a" * 255]


def _entry(name: str, kind: str, **more: object) -> dict:
    e: dict = {"name": name, "type": kind, "mode": 0o644, "mtime": 1}
    if kind == FILE:
        e.update(size=1, chunks=[["ab" * 32, 1]])
    elif kind == DIR:
        e.update(mode=0o755, tree="0" * 64)
    elif kind == SYMLINK:
        e.update(mode=0o777, target='x","type":"dir')
    elif kind in ("char", "block"):
        e.update(rdev=259)
    e.update(more)
    return e


def _tree(rng: random.Random) -> list[dict]:
    names = sorted(set(HOSTILE + [f"f{i:04d}" for i in range(rng.randrange(1, 300))]))
    entries = [_entry(n, rng.choice(sorted(KIND_CODES))) for n in names]
    for e in rng.sample(entries, 3):   # hard-link names
        if e["type"] == FILE:
            e["link"] = "0123456789abcdef"
    return entries


@pytest.mark.parametrize("seed", range(3))
def test_a_record_gives_the_names_and_kinds_of_the_entries(seed):
    entries = _tree(random.Random(seed))
    table = nametable.table_of(entries)
    assert nametable.decode(nametable.encode(table)) == table
    assert table.names == [os.fsencode(e["name"]) for e in entries]
    assert list(table.kinds) == [HARD_LINK if "link" in e else KIND_CODES[e["type"]] for e in entries]
    assert nametable.decode(nametable.encode(NameTable([], b""))) == ([], b"")


def test_a_record_whose_parts_disagree_is_not_used():
    good = nametable.encode(NameTable([b"a", b"b"], b"ff"))
    assert nametable.decode(good) == ([b"a", b"b"], b"ff")
    for bad in (b"", b"ff", b"ff/a", b"f/a/b", b"fff/a/b", b"ff/a//b", b"ff//b", b"ff/a/", b"/a"):
        assert nametable.decode(bad) is None, bad


@pytest.mark.allow_warnings   # the malformed entry is logged as left out
def test_the_store_keeps_a_record_with_each_checked_tree_and_lists_from_it(store):
    rng = random.Random(5)
    session = store.session()
    written = [_tree(rng) for _ in range(3)]
    ids = [session.put_tree([dict(e) for e in entries]) for entries in written]
    # as another daemon on the bucket stores a tree: checked at its first read here
    other = sorted(_tree(rng), key=lambda e: e["name"])
    raw = json.dumps({"v": 3, "entries": other}, separators=(",", ":"), sort_keys=True).encode()
    other_id = session.trees.add(raw, blob_id(raw)).hex()
    # and one with a malformed entry: never marked, listed from what the checks keep
    bad = sorted(_tree(rng) + [_entry("zz-bad", FILE, mode="rwx")], key=lambda e: e["name"])
    raw = json.dumps({"v": 3, "entries": bad}, separators=(",", ":"), sort_keys=True).encode()
    bad_id = session.trees.add(raw, blob_id(raw)).hex()
    session.flush()
    store.trees.clear()

    def record(tree: str) -> bytes | None:
        return store.index.tree_names(bytes.fromhex(tree))

    def expected(tree: str) -> NameTable:
        store.trees.clear()
        return nametable.table_of(store.read_tree(tree))

    for tree in ids:
        assert record(tree) is not None, "a tree this daemon writes is kept with its mark"
    assert record(other_id) is None and record(bad_id) is None
    for tree in [*ids, other_id, bad_id]:
        store.trees.clear()
        listed = store.tree_names(tree)
        assert listed == expected(tree)
    assert record(other_id) is not None, "kept once checked here"
    assert record(bad_id) is None, "a tree that is not clean is never trusted"
    assert b"zz-bad" not in store.tree_names(bad_id).names

    # read from the record, not the tree: a record of other names is what a listing shows
    store.trees.clear()
    store.index.keep_tree_names(bytes.fromhex(ids[0]), nametable.encode(NameTable([b"only"], b"f")))
    assert store.tree_names(ids[0]).names == [b"only"]
    # a record that is not one is not used, and is written again from the tree
    store.index.keep_tree_names(bytes.fromhex(ids[0]), b"ff/a")
    assert store.tree_names(ids[0]) == expected(ids[0])
    assert nametable.decode(record(ids[0]) or b"") == expected(ids[0])
    # a mark made before records were kept: the first listing keeps one
    store.index.mark_tree_checked(bytes.fromhex(ids[1]), None)
    assert record(ids[1]) is None
    store.trees.clear()
    assert store.tree_names(ids[1]) == expected(ids[1])
    assert nametable.decode(record(ids[1]) or b"") == expected(ids[1])


def test_what_is_kept_of_a_tree_goes_with_its_pack(store):
    session = store.session()
    tree = session.put_tree([_entry("a", FILE), _entry("b", DIR)])
    session.flush()
    bid = bytes.fromhex(tree)
    loc = store.index.blob(bid)
    assert loc is not None and store.index.tree_names(bid) is not None and store.index.tree_checked(bid)
    store.index.remove_packs({loc.pack_id})
    assert store.index.tree_names(bid) is None and not store.index.tree_checked(bid)
