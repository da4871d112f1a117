"""Two stored trees compared as bytes: only the entries that differ are decoded.

A ``diff`` of 10,000 changed files in 1,000 directories of 1,000 files
reads 2,000 trees of a thousand entries each, nearly all alike.  Decoding
them all (JSON to dicts), comparing the dicts and freeing them was most of
its time.  A tree is stored as canonical JSON (``objects.encode_tree``)::

    {"entries":[{...},{...},...],"v":N}

so an entry that did not change has the same bytes in both trees, and only
the entries whose bytes differ need decoding.

This is exact only for a tree whose bytes split at ``},{`` into its entries
and nowhere else, with its names in order and once each (what
``diff._pairs`` merges).  Whether a tree is such a tree is decided once per
machine, from its decoded entries, when its entries are first checked
(:func:`span_count`, kept by ``Index.mark_tree_checked``): no object inside
an entry (``xattrs``), no key but the known ones, no ``{`` in a name or a
target.  The bytes are then taken apart only if their layout gives exactly
that many entries and no other ``{`` (:func:`entry_spans`); anything else
is decoded as before.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple

from .objects import loads_json

_HEAD = b'{"entries":[{'
_TAIL = b'}],"v":'
_NAME_KEY = b'"name":"'
_PLAIN_NAME = re.compile(rb'"name":"([^"\\]*)"')   # a name with no JSON escape
_KEYS = frozenset(("name", "type", "mode", "mtime", "uid", "gid", "size", "chunks", "tree", "files",
                   "dirs", "links", "target", "rdev", "link"))   # every key but xattrs (an object)

Pair = tuple[dict | None, dict | None]


def span_count(entries: list) -> int | None:
    """How many entries a checked tree's bytes split into at ``},{``, or None
    when they may not be split so (see the module's docstring)."""
    names = []
    for e in entries:
        if type(e) is not dict or not e.keys() <= _KEYS:
            return None
        name, target = e.get("name"), e.get("target")
        if type(name) is not str or "{" in name or type(target) is str and "{" in target:
            return None
        names.append(name)
    if sorted(names) != names or len(set(names)) != len(names):
        return None
    return len(names)


class EntrySpans(NamedTuple):
    """A tree's entries as their JSON bytes without the braces, and the
    bytes they were split from."""
    spans: list[bytes]
    body: bytes


def entry_spans(raw: bytes, count: int) -> EntrySpans | None:
    """The entries of a tree stored as ``raw`` whose :func:`span_count` is
    ``count``, as spans; None when the bytes are not laid out so."""
    if not raw.startswith(_HEAD):
        return None
    end = raw.rfind(_TAIL)
    if end < len(_HEAD) or not raw.endswith(b"}") or not raw[end + len(_TAIL):-1].isdigit():
        return None
    body = raw[len(_HEAD):end]
    spans = body.split(b"},{")
    if len(spans) != count or raw.count(b"{") != count + 1:
        return None
    return EntrySpans(spans, body)


def _entry(span: bytes) -> dict:
    return loads_json(b"{" + span + b"}")


def changed_entries(a: EntrySpans, b: EntrySpans) -> list[Pair] | None:
    """``(entry in a, entry in b)`` for each name whose entries' bytes differ,
    in name order (None: not in that tree); None when the names cannot be
    read from the bytes (a name with a JSON escape): decode the trees."""
    if len(a.spans) == len(b.spans):
        both = [(_entry(x), _entry(y)) for x, y in zip(a.spans, b.spans) if x != y]
        # the same names in the same places (alike bytes are alike names)
        if all(x["name"] == y["name"] for x, y in both):
            return list(both)
    an, bn = _names(a), _names(b)
    if an is None or bn is None:
        return None
    return [(_entry(a.spans[i]) if i is not None else None, _entry(b.spans[j]) if j is not None else None)
            for i, j in merge_sorted(an, bn) if i is None or j is None or a.spans[i] != b.spans[j]]


def merge_sorted(an: Sequence[Any], bn: Sequence[Any]) -> Iterator[tuple[int | None, int | None]]:
    """The places of each name in two sorted lists of unique names, in
    order: ``(i, j)`` for a name in both, ``(i, None)`` or ``(None, j)`` for
    a name in one."""
    i = j = 0
    while i < len(an) or j < len(bn):
        if j == len(bn) or i < len(an) and an[i] < bn[j]:
            yield i, None
            i += 1
        elif i == len(an) or bn[j] < an[i]:
            yield None, j
            j += 1
        else:
            yield i, j
            i += 1
            j += 1


def _names(t: EntrySpans) -> list[bytes] | None:
    """The names of the spans as UTF-8 bytes (in the names' order: UTF-8
    keeps code point order), when each span has one name key and its name
    no escape."""
    names = _PLAIN_NAME.findall(t.body)
    if len(names) != len(t.spans) or t.body.count(_NAME_KEY) != len(t.spans):
        return None
    return names
