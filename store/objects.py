"""The immutable objects of the data model and their on-store encodings.

Trees and commits are canonical JSON (sorted keys, no spaces) named by the
BLAKE3 hash of their bytes.  Every encoding carries a format version ``v``.

A tree lists one directory, its entries sorted by name.  An entry is a dict::

    {"name", "type": "file"|"dir"|"symlink"|"fifo"|"socket"|"char"|"block",
     "mode", "mtime" (ns),
     file:    "size", "chunks": [[chunk id hex, length], ...]
     dir:     "tree": tree id hex, "size": bytes below, "files": files below,
              "dirs": immediate subdirectories (for st_nlink),
              "links": hard-link names below (absent when none)
     symlink: "target"
     char, block: "rdev" (the device number; fifo and socket have none)
     any but dir: "link": the id of its hard-link group (absent when it has one name)}

A hard link is several names whose entries carry the same ``link`` id (and
the same content and metadata: each name's entry is complete, as restic
stores them); a directory's ``links`` counts such names below it, so the
link walker (``store/links.py``) finds every name of a group, and counts
``st_nlink``, reading only the directories that hold any (docs/links.md).

File manifests live inside their directory's tree, so a commit's root tree
is a Merkle tree over every byte of the commit.

Names are bytes (docs/names.md).  In memory a name is a ``str`` as
``os.fsdecode`` makes it (PEP 383: a byte that is not part of valid UTF-8
becomes the lone surrogate U+DC80+byte).  A tree whose names and targets are
all valid UTF-8 is written as format 1, byte for byte as before; a tree that
holds any other name is format 2, the same JSON written in ASCII, where such
a byte is the escape ``\\udcXX``.  Readers take both, so stores written before
names were bytes read unchanged, and a reader that only knows format 1 refuses
a format-2 tree with a clear version error instead of mangling its names.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import time
from dataclasses import asdict, dataclass, field

import orjson

from .codec import blob_id
from .entrycheck import commit_problem, entry_verdict, plain_file
from .errors import IntegrityError, InvalidArgument

log = logging.getLogger(__name__)

TREE_VERSION = 1
TREE_VERSION_BYTES = 2   # 2: names (and symlink targets) that are not valid UTF-8
TREE_VERSION_LINKS = 3   # 3: hard links or FIFOs, sockets and devices (either encoding)
TREE_VERSIONS = (TREE_VERSION, TREE_VERSION_BYTES, TREE_VERSION_LINKS)
COMMIT_VERSION = 1
REF_VERSION = 1
REPO_VERSION = 2     # 2: owner and acl (format 1 records still read)

FILE, DIR, SYMLINK = "file", "dir", "symlink"
FIFO, SOCKET, CHAR, BLOCK = "fifo", "socket", "char", "block"
SPECIAL = (FIFO, SOCKET, CHAR, BLOCK)      # metadata only: the kernel answers their opens
DEVICES = (CHAR, BLOCK)                    # the kinds with an ``rdev``


def canonical(obj: object) -> bytes:
    """Sorted-key JSON as UTF-8; a string UTF-8 cannot carry (a lone surrogate,
    such as a name byte that is not UTF-8) makes the whole object ASCII JSON
    with ``\\uXXXX`` escapes, which reads back to the same strings."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    try:
        return text.encode()
    except UnicodeEncodeError:
        return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def _check_byte_names(entries: list[dict]) -> None:
    """Every name and target must map back to bytes (PEP 383): a lone
    surrogate other than U+DC80..U+DCFF names no bytes at all."""
    for e in entries:
        for key in ("name", "target"):
            value = e.get(key)
            if isinstance(value, str):
                try:
                    os.fsencode(value)
                except UnicodeEncodeError:
                    raise InvalidArgument(f"{key} {value!r} is not a name of bytes (a lone surrogate "
                                          "outside U+DC80..U+DCFF)") from None


def _needs_links_format(entries: list[dict]) -> bool:
    """Whether a tree holds what a reader of formats 1 and 2 would not know:
    a FIFO, socket or device, or a hard-link field."""
    return any(e["type"] in SPECIAL or "link" in e or "links" in e for e in entries)


def encode_tree(entries: list[dict]) -> bytes:
    ordered = sorted(entries, key=lambda e: e["name"])
    version = TREE_VERSION_LINKS if _needs_links_format(ordered) else TREE_VERSION
    text = json.dumps({"v": version, "entries": ordered}, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False)
    try:
        return text.encode()
    except UnicodeEncodeError:
        _check_byte_names(ordered)
        return json.dumps({"v": TREE_VERSION_BYTES if version == TREE_VERSION else version,
                           "entries": ordered}, sort_keys=True, separators=(",", ":")).encode()


def loads_json(raw: bytes) -> dict:
    """JSON through orjson (a tree of 1,000 entries in a fifth of the time);
    what it refuses (names that are not UTF-8 are stored as escaped lone
    surrogates) through the standard module.  orjson reads an integer past
    64 bits as a float: no field may hold one, and an mtime is clamped
    either way (``entrycheck.entry_problem``)."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return json.loads(raw)


def unchecked_entries(raw: bytes, where: str) -> list:
    """A tree's entries as stored, none of them checked yet (``decode_tree``
    checks each; a reader that looks at few of them checks those itself)."""
    try:
        obj = loads_json(raw)
        if obj.get("v") not in TREE_VERSIONS:
            raise IntegrityError(f"tree {where} has unknown format version {obj.get('v')!r}")
        entries = obj["entries"]
        if not isinstance(entries, list):
            raise IntegrityError(f"tree {where}: its entries are not a list")
    except (ValueError, KeyError, AttributeError) as exc:
        raise IntegrityError(f"tree {where} is not a valid tree object: {exc}") from exc
    return entries


def decode_tree(raw: bytes, where: str, dropped: list[str] | None = None) -> list[dict]:
    """A tree's entries; an entry of the wrong shape (:mod:`.entrycheck`) is
    left out, with why appended to ``dropped`` (and logged)."""
    return checked_entries(unchecked_entries(raw, where), where, dropped)[0]


def well_formed(entries: list) -> bool:
    """Whether every entry passes the checks as it is: none would be left
    out, no time clamped (nothing logged, nothing changed: the full checks
    run on a copy)."""
    return all(type(e) is dict and plain_file(e)
               or entry_verdict(dict(e) if type(e) is dict else e) == (None, False) for e in entries)


def checked_entries(entries: list, where: str, dropped: list[str] | None = None) -> tuple[list[dict], bool]:
    """The well-formed entries of a tree (:func:`decode_tree`), and whether
    the tree was well formed as stored: no entry left out, no time clamped."""
    good = []
    clean = True
    for e in entries:
        if type(e) is dict and plain_file(e):   # the common case, inline
            good.append(e)
            continue
        why, clamped = entry_verdict(e)
        if why is None:
            good.append(e)
            clean = clean and not clamped
            continue
        clean = False
        name = e.get("name") if isinstance(e, dict) else None
        text = f"tree {where}: entry {name!r:.80} left out: {why}"
        log.warning("%s", text)
        if dropped is not None:
            dropped.append(text)
    return good, clean


EMPTY_TREE = encode_tree([])
EMPTY_TREE_ID = blob_id(EMPTY_TREE)


def entry_size(entry: dict) -> int:
    return entry.get("size", 0) if entry["type"] in (FILE, DIR) else 0


def entry_files(entry: dict) -> int:
    t = entry["type"]
    return 1 if t == FILE else entry.get("files", 0) if t == DIR else 0


def entry_links(entry: dict) -> int:
    """Hard-link names at or below an entry (a directory's ``links``)."""
    if entry["type"] == DIR:
        return entry.get("links", 0)
    return 1 if "link" in entry else 0


def dir_counts(entries: list[dict]) -> dict:
    """The totals a directory entry carries for its listing: size, files,
    immediate subdirectories and (when any) hard-link names below."""
    out = {"size": sum(entry_size(e) for e in entries), "files": sum(entry_files(e) for e in entries),
           "dirs": sum(e["type"] == DIR for e in entries)}
    links = sum(entry_links(e) for e in entries)
    if links:
        out["links"] = links
    return out


def new_link_id() -> str:
    """A fresh hard-link group id (64 random bits, hex)."""
    return secrets.token_hex(8)


def unprivileged_mode(mode: int, is_dir: bool = False) -> int:
    """``mode`` as a non-root writer may store it: no setuid bit, and no
    setgid bit on a file (the kernel drops both on a write by a non-owner;
    setgid on a directory only makes new entries inherit its group, so it stays)."""
    return mode & ~(0o4000 if is_dir else 0o6000)


def file_content_id(entry: dict) -> str:
    """A hash of a file's content, derived from its chunk list without reading data."""
    return blob_id(canonical(entry["chunks"])).hex()


@dataclass
class Commit:
    repo: str
    repo_id: str
    tree: str
    parents: list[str] = field(default_factory=list)
    message: str = ""
    author: dict = field(default_factory=dict)
    time: float = field(default_factory=time.time)
    origin: dict = field(default_factory=lambda: {"kind": "user"})
    provenance: list[dict] = field(default_factory=list)
    size: int = 0
    files: int = 0
    dirs: int = 0
    # the packs (ids, hex) holding the blobs this commit's write session
    # stored or found stored already: with its ancestors' packs, every blob
    # of its tree; another daemon reading it indexes them (docs/consistency.md)
    packs: list[str] = field(default_factory=list)
    daemon: str = ""     # the id of the daemon that wrote it (store/fleet.py)

    def encode(self) -> bytes:
        obj = asdict(self)
        for key in ("packs", "daemon"):
            if not obj[key]:
                del obj[key]     # a commit without them encodes as before (its id unchanged)
        return canonical({"v": COMMIT_VERSION, **obj})

    def root_entry(self) -> dict:
        """The commit's root directory as a tree entry (the root has no
        entry of its own: its time is the commit's, its mode 0755)."""
        return {"name": "", "type": DIR, "mode": 0o755, "mtime": int(self.time * 1e9),
                "tree": self.tree, "size": self.size, "files": self.files, "dirs": self.dirs}

    @classmethod
    def decode(cls, raw: bytes, where: str) -> "Commit":
        try:
            obj = json.loads(raw)
            if obj.pop("v", None) != COMMIT_VERSION:
                raise IntegrityError(f"commit {where} has an unknown format version")
            known = cls.__dataclass_fields__
            commit = cls(**{k: v for k, v in obj.items() if k in known})
            why = commit_problem(commit)
            if why:
                raise TypeError(why)
            return commit
        except (ValueError, TypeError, AttributeError) as exc:
            raise IntegrityError(f"commit {where} is not a valid commit object: {exc}") from exc


def encode_ref(commit_id: str | None) -> bytes:
    """A ref object pointing at ``commit_id``.  It carries a random write id
    ``w``, so no two writes of a ref have the same bytes (or, on S3, the same
    ETag): a retried compare-and-swap recognises its own landed write by its
    bytes, and a version seen before never comes back when the branch
    returns to an earlier commit (see docs/consistency.md)."""
    return canonical({"v": REF_VERSION, "commit": commit_id, "w": os.urandom(16).hex()})


def decode_ref(raw: bytes, where: str) -> str | None:
    """The commit a ref object points at; the write id (absent in refs
    written before it existed) is ignored."""
    try:
        obj = json.loads(raw)
        if obj.get("v") != REF_VERSION:
            raise IntegrityError(f"ref {where} has an unknown format version")
        return obj["commit"]
    except (ValueError, KeyError, AttributeError) as exc:
        raise IntegrityError(f"ref {where} is not a valid ref object: {exc}") from exc


# Access roles of a repo, weakest first: each implies the ones before it.
ROLES = ("read", "write", "admin")
EVERYONE = "everyone"     # the principal of an access-list entry that names every user
LEGACY_ACL = [{"kind": EVERYONE, "id": None, "role": "read"}]


@dataclass
class RepoInfo:
    """A repo's record (``repos/<name>``): its identity, its ``owner`` (a
    uid; admin of the repo) and its access list, entries
    ``{"kind": "user"|"group"|"everyone", "id": uid, gid or None, "role"}``.

    A record written before repos had owners (format 1, no ``owner`` and
    no ``acl``) reads as owned by root with ``read`` for everyone, so a
    store made by an older trunkfs keeps working as it did for readers."""

    name: str
    id: str
    created: float
    owner: int = 0
    acl: list[dict] = field(default_factory=list)

    def encode(self) -> bytes:
        # "w": a random write id, so that every write of the record has bytes of
        # its own (a lost reply is told from another daemon's identical change;
        # docs/consistency.md)
        return canonical({"v": REPO_VERSION, **asdict(self), "w": secrets.token_hex(16)})

    @classmethod
    def decode(cls, raw: bytes, where: str) -> "RepoInfo":
        try:
            obj = json.loads(raw)
            version = obj.pop("v", None)
            obj.pop("w", None)
            if version not in (1, REPO_VERSION):
                raise IntegrityError(f"repo object {where} has unknown format version {version!r}")
            if "acl" not in obj:   # format 1: before owners and access lists
                obj["owner"], obj["acl"] = 0, [dict(e) for e in LEGACY_ACL]
            info = cls(**obj)
            if not isinstance(info.owner, int) or not isinstance(info.acl, list):
                raise TypeError("owner must be a uid and acl a list")
            return info
        except (ValueError, TypeError) as exc:
            raise IntegrityError(f"repo object {where} is not valid: {exc}") from exc
