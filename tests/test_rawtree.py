"""``diff`` compares stored trees as bytes (``store/rawtree.py``) only where
that gives what decoding them gives: checked against changes worked out
from the entry lists themselves, with names and targets made to break a
split at ``},{``."""

from __future__ import annotations

import json
import random

import pytest

from trunkfs.store.codec import blob_id
from trunkfs.store.diff import diff_trees
from trunkfs.store.index import NOT_SPLIT
from trunkfs.store.objects import DIR, FILE, SYMLINK, encode_tree
from trunkfs.store.rawtree import entry_spans, span_count

# names a split at "},{" could take apart, and names JSON escapes
BRACED = ['a},{b', 'x},{', '},{"name":"zz', 'q{', '}']
ESCAPED = ['quo"te', 'back\\slash', 'é-accent', '\udcff-not-utf8', 'ctl\x01']


def _file(name: str, n: int, **more: object) -> dict:
    return dict({"name": name, "type": FILE, "mode": 0o644, "mtime": 1, "size": n,
                 "chunks": [[f"{n:064x}", n]]}, **more)


def _link(name: str, target: str) -> dict:
    return {"name": name, "type": SYMLINK, "mode": 0o777, "mtime": 1, "target": target}


def _expected(old: list[dict], new: list[dict], prefix: str) -> list[tuple[str, str]]:
    a, b = {e["name"]: e for e in old}, {e["name"]: e for e in new}
    out = []
    for name in sorted(a.keys() | b.keys()):
        ea, eb = a.get(name), b.get(name)
        if ea == eb:
            continue
        out.append(("A" if ea is None else "D" if eb is None else "M", f"{prefix}/{name}"))
    return out


def _changed(rng: random.Random, entries: list[dict], fresh: list[str]) -> list[dict]:
    out = []
    for e in entries:
        r = rng.random()
        if r < 0.1:
            continue                                   # removed
        if r < 0.25 and e["type"] == FILE:
            e = _file(e["name"], e["size"] + 1000)     # new content
        elif r < 0.3:
            e = dict(e, mode=0o600)
        out.append(e)
    out += [_file(n, rng.randrange(1, 99)) for n in fresh if rng.random() < 0.5]
    return out


@pytest.mark.parametrize("seed", range(4))
def test_diff_of_stored_trees_compared_as_bytes_matches_their_entries(store, seed):
    rng = random.Random(seed)
    plain = [_file(f"f{i:04d}", i + 1) for i in range(300)]
    braced = [_file(n, i + 1) for i, n in enumerate(BRACED)] + [
        _link("l1", 'to},{"name":"fake'), _link("l2", "t{")]
    escaped = [_file(n, i + 1) for i, n in enumerate(ESCAPED)]
    session = store.session()
    dirs = {}
    for label, base in (("plain", plain), ("braced", plain[:50] + braced), ("escaped", plain[:50] + escaped),
                        ("xattr", plain[:50] + [_file("xb", 3, xattrs={"user.k": "01"})])):
        old = base
        new = _changed(rng, base, [f"g{i}" for i in range(20)] + ([f"n{label}{{"] if label == "braced" else []))
        dirs[label] = (sorted(old, key=lambda e: e["name"]), sorted(new, key=lambda e: e["name"]))
    roots = []
    for side in (0, 1):
        entries = [{"name": label, "type": DIR, "mode": 0o755, "mtime": 1,
                    "tree": session.put_tree([dict(e) for e in pair[side]])} for label, pair in dirs.items()]
        roots.append(session.put_tree(entries))
    session.flush()
    spans = {label: [store.index.tree_spans(blob_id(encode_tree(pair[side]))) for side in (0, 1)]
             for label, pair in dirs.items()}
    assert spans["plain"] == [300, len(dirs["plain"][1])], "trees written here are counted"
    assert spans["braced"] == spans["xattr"] == [NOT_SPLIT, NOT_SPLIT]
    assert spans["escaped"] == [len(dirs["escaped"][0]), len(dirs["escaped"][1])]
    want = [c for label in sorted(dirs) for c in _expected(*dirs[label], f"/{label}")]
    assert {c for c, _ in want} == {"A", "D", "M"}
    store.trees.clear()     # read as stored, not from the cache
    assert list(diff_trees(store, *roots)) == want
    # one side cached, the other read: the same
    store.read_tree(roots[0])
    for label in dirs:
        store.read_tree(next(e["tree"] for e in store.read_tree(roots[0]) if e["name"] == label))
    assert list(diff_trees(store, *roots)) == want


def test_a_tree_checked_before_counts_were_kept_is_counted_at_its_first_diff(store):
    session = store.session()
    old = [_file(f"f{i}", i + 1) for i in range(50)]
    new = [_file(f"f{i}", i + 2 if i % 7 == 0 else i + 1) for i in range(50)]
    ta, tb = session.put_tree(old), session.put_tree(new)
    session.flush()
    for t in (ta, tb):   # the mark an index written before this change holds
        store.index._db.put(b"k" + bytes.fromhex(t), b"")
    store.trees.clear()
    want = [("M", f"/f{i}") for i in sorted(range(0, 50, 7), key=lambda i: f"f{i}")]
    assert list(diff_trees(store, ta, tb)) == want
    assert store.index.tree_spans(bytes.fromhex(ta)) == 50
    assert list(diff_trees(store, ta, tb)) == want


def test_bytes_not_laid_out_as_counted_are_not_split():
    entries = [_file("a", 1), _file("b", 2)]
    raw = encode_tree(entries)
    assert span_count(entries) == 2
    found = entry_spans(raw, 2)
    assert found is not None and [json.loads(b"{" + s + b"}") for s in found.spans] == entries
    assert entry_spans(raw, 3) is None
    spaced = json.dumps({"entries": entries, "v": 1}, sort_keys=True).encode()   # another writer's spacing
    assert entry_spans(spaced, 2) is None
    extra = raw[:-1] + b',"w":{"x":1}}'
    assert entry_spans(extra, 2) is None
    assert entry_spans(json.dumps({"v": 1, "entries": entries}, separators=(",", ":")).encode(), 2) is None
    assert span_count([_file("b", 1), _file("a", 1)]) is None, "out of order"
    assert span_count([_file("a", 1), _file("a", 2)]) is None, "a name twice"
    assert span_count([_file("a", 1, extra={"k": 1})]) is None, "an unknown key"
