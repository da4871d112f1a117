"""What in-process tests of the commit path share: the daemon's commit parts
over one real store, and a change that writes files straight into the head
(as ``trunkfs put`` does) or removes paths."""

from __future__ import annotations

from trunkfs.daemon.commits import CommitPath
from trunkfs.daemon.events import EventBus
from trunkfs.daemon.heads import BranchHeads
from trunkfs.daemon.workers import Workers
from trunkfs.store.refs import Refs
from trunkfs.store.store import Store
from trunkfs.store.treeedit import TreeEditor
from trunkfs.store.writer import WriteSession


class CommitParts:
    """Refs, workers, branch heads, events and the commit path over ``store``."""

    def __init__(self, store: Store, workers: int = 4) -> None:
        self.store = store
        self.refs = Refs(store)
        self.workers = Workers(workers)
        self.heads = BranchHeads(self.refs, self.workers)
        self.events = EventBus()
        self.commits = CommitPath(store, self.refs, self.heads, self.events, self.workers)


class PutFiles:
    """A commit change putting files (bytes) and removing paths (None) over the head."""

    def __init__(self, store: Store, files: dict[str, bytes | None]) -> None:
        self.store, self.files = store, files
        self.entries: dict[str, dict | None] = {}

    async def prepare(self, session: WriteSession) -> None:
        for path, data in self.files.items():
            if data is None:
                self.entries[path] = None
                continue
            ingest = session.ingest()
            ingest.write(data)
            chunks, size = ingest.finish()
            self.entries[path] = {"type": "file", "mode": 0o644, "mtime": 1, "size": size,
                                  "chunks": chunks}

    def build(self, base: dict | None, session: WriteSession) -> dict:
        editor = TreeEditor(self.store, base["tree"] if base else None)
        for path, entry in self.entries.items():
            if entry is None:
                editor.remove(path)
            else:
                editor.put(path, entry)
        return editor.write(session)
