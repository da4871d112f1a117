"""Datums: cutting an input commit into them, their identity, and the
outputs they write (stored, then merged into one tree).

A datum is a list of (path, entry) pairs picked by the pipeline's glob.  Its
hash comes from the Merkle tree (file chunk lists, subtree ids), so deciding
whether a datum changed never reads file data.  Committed trees are read
through the one tree walker, :mod:`trunkfs.store.walk`.
"""

from __future__ import annotations

import os
import stat

from ..store import walk
from ..store.codec import blob_id
from ..store.objects import DIR, FILE, SYMLINK, canonical, unprivileged_mode
from ..store.store import Store
from ..store.treeedit import TreeEditor
from ..store.writer import WriteSession

Datum = list[tuple[str, dict]]


class MergeConflict(Exception):
    """Two datums wrote the same output path."""


def _root(tree: str | None) -> dict:
    return {"type": DIR, "tree": tree}


def cut_datums(store: Store, root_tree: str | None, glob: str) -> list[Datum]:
    """The datums of a commit's tree for a glob: '/' (the whole commit, one
    datum), '/*' (each top-level entry), '/*/*' (each entry one level down)
    or '/**' (each file, symlink or other non-directory at any depth)."""
    root = _root(root_tree)
    if glob == "/":
        top = list(walk.children(store, root))
        return [top] if top else []
    if glob == "/*":
        return [[pe] for pe in walk.children(store, root)]
    if glob == "/*/*":
        return [[pe] for path, e in walk.children(store, root) if walk.is_dir(e)
                for pe in walk.children(store, e, path)]
    return [[pe] for pe in walk.files_below(store, root)]


def datum_hash(datum: Datum) -> str:
    """Identity of a datum's content: paths and their content ids, no data read."""
    items = []
    for path, e in sorted(datum, key=lambda pe: pe[0]):
        if e["type"] == DIR:
            ident = e.get("tree")
        elif e["type"] == FILE:
            ident = e.get("chunks")
        else:
            ident = e.get("target")
        items.append([path, e["type"], e.get("mode"), ident])
    return blob_id(canonical(items)).hex()


def datum_paths(datum: Datum) -> list[str]:
    return [p for p, _ in datum]


def ingest_dir(session: WriteSession, root: str, privileged: bool = False) -> dict:
    """Store a directory written by a command; return its root entry (tree
    id, size, files).  Files keep setuid and setgid only when ``privileged``
    (the command ran as root)."""
    editor = TreeEditor(session.store, None)
    for dirpath, dirnames, filenames in os.walk(root):
        rel = os.path.relpath(dirpath, root)
        rel = "" if rel == "." else rel
        for name in dirnames:
            p = os.path.join(dirpath, name)
            if os.path.islink(p):
                editor.put(f"/{rel}/{name}", {"type": SYMLINK, "mode": 0o777, "mtime": 0,
                                               "target": os.readlink(p)})
            else:
                editor.mkdir(f"/{rel}/{name}")
        for name in filenames:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            if stat.S_ISLNK(st.st_mode):
                editor.put(f"/{rel}/{name}", {"type": SYMLINK, "mode": 0o777, "mtime": st.st_mtime_ns,
                                               "target": os.readlink(p)})
            elif stat.S_ISREG(st.st_mode):
                ingest = session.ingest()
                with open(p, "rb") as f:
                    while data := f.read(4 << 20):
                        ingest.write(data)
                chunks, size = ingest.finish()
                mode = stat.S_IMODE(st.st_mode)
                editor.put(f"/{rel}/{name}", {"type": FILE, "mode": mode if privileged else unprivileged_mode(mode),
                                               "mtime": st.st_mtime_ns, "size": size, "chunks": chunks})
    return editor.write(session)


def merge_outputs(store: Store, session: WriteSession, trees: list[str]) -> dict:
    """Merge the output trees of every datum into one root entry; a path
    written by two datums is a :class:`MergeConflict`."""
    editor = TreeEditor(store, None)
    seen: dict[str, int] = {}
    for who, tree in enumerate(trees):
        for path, e in walk.walk(store, _root(tree)):   # each directory before what it holds
            if walk.is_dir(e):
                editor.mkdir(path, e.get("mode"), e.get("mtime"))
                continue
            if seen.setdefault(path, who) != who:
                raise MergeConflict(f"two datums wrote the same output path {path}")
            editor.put(path, e)
    return editor.write(session)


def store_output(store: Store, directory: str, owner_uid: int | None = None) -> str:
    """Store what a datum wrote in ``directory`` (its own write session,
    flushed); return the tree id.  ``owner_uid`` is the uid the datum ran
    as; by default the owner of ``directory`` (the runner chowns it to that
    uid, and a non-root process cannot give it to root).  Only a datum run
    as root keeps setuid and setgid bits of its files."""
    if owner_uid is None:
        owner_uid = os.lstat(directory).st_uid
    session = store.session()
    try:
        root = ingest_dir(session, directory, privileged=owner_uid == 0)
        session.flush()
    except BaseException:
        session.abort()
        raise
    return str(root["tree"])


def store_merged(store: Store, trees: list[str]) -> dict:
    """Merge datum output trees in a write session of their own (flushed);
    return the merged root entry."""
    session = store.session()
    try:
        root = merge_outputs(store, session, trees)
        session.flush()
    except BaseException:
        session.abort()
        raise
    return root
