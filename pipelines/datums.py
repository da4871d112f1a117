"""Cutting an input commit into datums, and moving datum files in and out.

A datum is a set of (path, entry) pairs picked by the pipeline's glob.  Its
hash comes from the Merkle tree (file chunk lists, subtree ids), so deciding
whether a datum changed never reads file data.
"""

from __future__ import annotations

import os
import stat

from ..store.codec import blob_id
from ..store.objects import DIR, FILE, SYMLINK, canonical
from ..store.store import Store
from ..store.treeedit import TreeEditor
from ..store.writer import WriteSession


def _children(store: Store, tree: str | None, prefix: str) -> list[tuple[str, dict]]:
    if not tree:
        return []
    return [(f"{prefix}/{e['name']}", e) for e in store.read_tree(tree)]


def _files_below(store: Store, path: str, entry: dict) -> list[tuple[str, dict]]:
    if entry["type"] != DIR:
        return [(path, entry)]
    out = []
    for p, e in _children(store, entry.get("tree"), path):
        out.extend(_files_below(store, p, e))
    return out


def cut_datums(store: Store, root_tree: str | None, glob: str) -> list[list[tuple[str, dict]]]:
    """The datums of a commit for a glob ('/', '/*', '/*/*', '/**')."""
    top = _children(store, root_tree, "")
    if glob == "/":
        return [top] if top else []
    if glob == "/*":
        return [[pe] for pe in top]
    if glob == "/*/*":
        out = []
        for path, e in top:
            if e["type"] == DIR:
                out.extend([pe] for pe in _children(store, e.get("tree"), path))
        return out
    out = []
    for path, e in top:
        out.extend([pe] for pe in _files_below(store, path, e))
    return out


def datum_hash(datum: list[tuple[str, dict]]) -> str:
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


def datum_paths(datum: list[tuple[str, dict]]) -> list[str]:
    return [p for p, _ in datum]


def materialize(store: Store, datum: list[tuple[str, dict]], root: str) -> None:
    """Write a datum's files under ``root`` at their paths, read-only."""
    def put(path: str, e: dict) -> None:
        target = os.path.join(root, path.lstrip("/"))
        os.makedirs(os.path.dirname(target), mode=0o755, exist_ok=True)
        if e["type"] == DIR:
            os.makedirs(target, mode=0o755, exist_ok=True)
            for p, child in _children(store, e.get("tree"), path):
                put(p, child)
            os.chmod(target, 0o555)
        elif e["type"] == SYMLINK:
            os.symlink(e.get("target", ""), target)
        else:
            with open(target, "wb") as f:
                for data in store.iter_file(e):
                    f.write(data)
            os.chmod(target, 0o444)
    for path, e in datum:
        put(path, e)
    for dirpath, dirnames, _ in os.walk(root):
        os.chmod(dirpath, 0o555)


def ingest_dir(session: WriteSession, root: str) -> dict:
    """Store a directory written by a command; return its root entry (tree id, size, files)."""
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
                editor.put(f"/{rel}/{name}", {"type": FILE, "mode": stat.S_IMODE(st.st_mode),
                                               "mtime": st.st_mtime_ns, "size": size, "chunks": chunks})
    return editor.write(session)


class MergeConflict(Exception):
    pass


def merge_outputs(store: Store, session: WriteSession, trees: list[str]) -> dict:
    """Merge the output trees of every datum into one; a path written twice is an error."""
    editor = TreeEditor(store, None)
    seen: dict[str, int] = {}

    def add(tree: str, prefix: str, who: int) -> None:
        for path, e in _children(store, tree, prefix):
            if e["type"] == DIR:
                editor.mkdir(path, e.get("mode"), e.get("mtime"))
                add(e["tree"], path, who)
            else:
                if path in seen and seen[path] != who:
                    raise MergeConflict(f"two datums wrote the same output path {path}")
                seen[path] = who
                editor.put(path, e)
    for i, tree in enumerate(trees):
        add(tree, "", i)
    return editor.write(session)
