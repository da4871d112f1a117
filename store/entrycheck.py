"""The shape of a stored tree entry, checked when a tree is read.

A tree may come from another daemon on the same bucket, an older or newer
trunkfs, or anyone with write access to the bucket.  Every value the mount,
the socket and the pipelines later turn into a stat, an open or an
``int``-sized field is checked here once, when the tree is decoded: an
entry of the wrong shape or with an out-of-range number is left out of its
directory (logged, and reported by ``fsck``) instead of failing every
listing of that directory or stopping whoever reads it; an mtime beyond
the 64-bit range is clamped into it.  Well-formed
entries whose data is missing or corrupt stay in: reading them is an
integrity error (EIO at the mount), as for any damaged data.
"""

from __future__ import annotations

import os

NAME_MAX = 255
TARGET_MAX = 4095                 # PATH_MAX - 1: what readlink can return
INT64 = (-(2 ** 63), 2 ** 63 - 1)
MODE_MAX = 0o177777
ID_MAX = 2 ** 32 - 2              # (uid_t)-1 means "no change" to chown
SIZE_MAX = 2 ** 63 - 1
CHUNK_MAX = 2 ** 31               # far above the chunker's largest chunk
_HEX = frozenset("0123456789abcdef")
_NUMBERS = (("mode", 0, MODE_MAX), ("mtime", *INT64), ("uid", 0, ID_MAX), ("gid", 0, ID_MAX))
KINDS = ("file", "dir", "symlink", "fifo", "socket", "char", "block")
RDEV_MAX = 2 ** 64 - 1
LINK_ID_LEN = 16


def _int_in(value: object, low: int, high: int) -> bool:
    return type(value) is int and low <= value <= high


def _blob_id(value: object) -> bool:
    if not (isinstance(value, str) and len(value) == 64):
        return False
    try:
        return len(bytes.fromhex(value)) == 32   # C speed; no spaces slipped in
    except ValueError:
        return False


def _byte_name(value: object, limit: int) -> str | None:
    if not isinstance(value, str):
        return "is not a string"
    if value.isascii():               # the common case, without encoding
        if not 0 < len(value) <= limit:
            return f"is not 1-{limit} bytes"
        return "holds a NUL byte" if "\0" in value else None
    try:
        raw = os.fsencode(value)
    except UnicodeEncodeError:
        return "names no bytes"
    if not 0 < len(raw) <= limit:
        return f"is not 1-{limit} bytes"
    if b"\0" in raw:
        return "holds a NUL byte"
    return None


_PLAIN_FILE_KEYS = frozenset(("chunks", "mode", "mtime", "name", "size", "type"))


def plain_file(e: dict) -> bool:
    """Whether ``e`` is a well-formed file entry of the common shape: these
    six keys, an ASCII name.  The fast path of :func:`entry_problem` (most
    entries of most trees): False sends the entry through every check."""
    if e.keys() != _PLAIN_FILE_KEYS:
        return False
    chunks, mode, mtime, name, size = e["chunks"], e["mode"], e["mtime"], e["name"], e["size"]
    if not (e["type"] == "file" and type(name) is str and name.isascii() and 0 < len(name) <= NAME_MAX
            and "/" not in name and "\0" not in name and name != "." and name != ".."
            and type(mode) is int and 0 <= mode <= MODE_MAX and type(size) is int and 0 <= size <= SIZE_MAX
            and type(mtime) is int and INT64[0] <= mtime <= INT64[1] and type(chunks) is list):
        return False
    try:
        for c in chunks:
            if not (type(c) is list and len(c) == 2):
                return False
            cid, n = c
            if not (type(n) is int and 0 <= n <= CHUNK_MAX and type(cid) is str and len(cid) == 64
                    and len(bytes.fromhex(cid)) == 32):
                return False
    except ValueError:
        return False
    return True


def entry_problem(e: object) -> str | None:
    """Why ``e`` is not a valid tree entry, or None when it is.  An integer
    mtime out of the 64-bit range is clamped into it first (a time only
    describes the entry; the rest of it is still good)."""
    if type(e) is dict and plain_file(e):
        return None
    return entry_verdict(e)[0]


def entry_verdict(e: object) -> tuple[str | None, bool]:
    """:func:`entry_problem` without its fast path, and whether an mtime
    was clamped: a tree is well formed as stored only if no entry has a
    problem and none was clamped."""
    if not isinstance(e, dict):
        return "is not an object", False
    mtime = e.get("mtime")
    clamped = False
    if type(mtime) is float and abs(mtime) >= 2.0 ** 63:   # an integer past 64 bits, as orjson reads one
        mtime = e["mtime"] = INT64[1] if mtime > 0 else INT64[0]
        clamped = True
    if type(mtime) is int and not INT64[0] <= mtime <= INT64[1]:
        e["mtime"] = min(max(mtime, INT64[0]), INT64[1])
        clamped = True
    return _shape_problem(e), clamped


def _shape_problem(e: dict) -> str | None:
    name = e.get("name")
    why = _byte_name(name, NAME_MAX)
    if why is None and ("/" in name or name in (".", "..")):   # type: ignore[operator]
        why = "is '.', '..' or holds a '/'"
    if why:
        return f"its name {why}"
    kind = e.get("type")
    if kind not in KINDS:
        return f"its type {kind!r} is none of {', '.join(KINDS)}"
    for key, low, high in _NUMBERS:
        value = e.get(key)
        if value is not None and not (type(value) is int and low <= value <= high):
            return f"its {key} {value!r:.40} is not an integer in {low}..{high}"
    xattrs = e.get("xattrs")
    if xattrs is not None and not (isinstance(xattrs, dict) and all(
            isinstance(k, str) and isinstance(v, str) and _is_hex(v) for k, v in xattrs.items())):
        return "its xattrs are not names with hex values"
    if kind == "dir":
        if not _blob_id(e.get("tree")):
            return "its tree is not a blob id"
        for key in ("size", "files", "dirs", "links"):
            if key in e and not _int_in(e[key], 0, SIZE_MAX):
                return f"its {key} is not a count"
        return None
    link = e.get("link")
    if link is not None and not (isinstance(link, str) and len(link) == LINK_ID_LEN and _is_hex(link)):
        return f"its link {link!r:.40} is not a link id ({LINK_ID_LEN} hex digits)"
    if kind == "file":
        return _file_problem(e)
    if kind in ("char", "block"):
        return None if _int_in(e.get("rdev"), 0, RDEV_MAX) else "its rdev is not a device number"
    if kind in ("fifo", "socket"):
        return None
    why = _byte_name(e.get("target"), TARGET_MAX)
    return f"its target {why}" if why else None


def _file_problem(e: dict) -> str | None:
    if not _int_in(e.get("size"), 0, SIZE_MAX):
        return f"its size {e.get('size')!r:.40} is not a size"
    chunks = e.get("chunks")
    if not isinstance(chunks, list):
        return "its chunks are not a list"
    for c in chunks:
        if not (type(c) is list and len(c) == 2 and type(c[1]) is int and 0 <= c[1] <= CHUNK_MAX
                and _blob_id(c[0])):
            return f"its chunk {c!r:.80} is not [blob id, length]"
    return None


def _is_hex(value: str) -> bool:
    return len(value) % 2 == 0 and set(value) <= _HEX


def commit_problem(c: object) -> str | None:
    """Why a decoded commit's fields are not usable, or None (the same
    reasoning as for entries: a commit is read by every daemon on the bucket)."""
    ok_types = (("repo", str), ("repo_id", str), ("message", str), ("author", dict), ("origin", dict),
                ("parents", list), ("provenance", list))
    for key, kind in ok_types:
        if not isinstance(getattr(c, key), kind):
            return f"its {key} is not a {kind.__name__}"
    if not _blob_id(getattr(c, "tree")) or not all(_blob_id(p) for p in getattr(c, "parents")):
        return "its tree or a parent is not a blob id"
    if not isinstance(getattr(c, "daemon", ""), str):
        return "its daemon is not a string"
    packs = getattr(c, "packs", [])
    if not isinstance(packs, list) or not all(_blob_id(p) for p in packs):
        return "its packs are not a list of pack ids"
    t = getattr(c, "time")
    if type(t) not in (int, float) or not -1e11 < t < 1e11:     # finite, within years -1200..5100
        return f"its time {t!r:.40} is not a time"
    for key in ("size", "files", "dirs"):
        if not _int_in(getattr(c, key), 0, SIZE_MAX):
            return f"its {key} is not a count"
    return None
