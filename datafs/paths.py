"""``trunkfs://`` paths: ``REPO@REF/path`` (REF a branch, tag or commit id)
or ``REPO/path`` (the branch ``main``); the empty path is the list of repos."""

from __future__ import annotations

from dataclasses import dataclass

PROTOCOL = "trunkfs"
DEFAULT_REF = "main"


@dataclass(frozen=True)
class Location:
    """A place in a repo: the repo, the ref as written (None: ``main``), the
    path inside it ("" for the root, no leading slash)."""
    repo: str
    ref: str | None
    path: str

    @property
    def head(self) -> str:
        """``REPO`` or ``REPO@REF``, as the path was written."""
        return self.repo if self.ref is None else f"{self.repo}@{self.ref}"

    @property
    def ref_or_main(self) -> str:
        return self.ref or DEFAULT_REF

    def child(self, name: str) -> str:
        """The fsspec path of an entry named ``name`` in this directory."""
        return f"{self.head}/{self.path}/{name}" if self.path else f"{self.head}/{name}"

    def full(self) -> str:
        return f"{self.head}/{self.path}" if self.path else self.head

    @property
    def parent(self) -> "Location":
        return Location(self.repo, self.ref, self.path.rpartition("/")[0])

    @property
    def name(self) -> str:
        return self.path.rpartition("/")[2]


def strip_protocol(path: str) -> str:
    """``trunkfs://raw@v3/a/b/`` -> ``raw@v3/a/b``."""
    if path.startswith(f"{PROTOCOL}://"):
        path = path[len(PROTOCOL) + 3:]
    elif path.startswith(f"{PROTOCOL}:"):
        path = path[len(PROTOCOL) + 1:]
    return "/".join(p for p in path.split("/") if p not in ("", "."))


def parse(path: str) -> Location | None:
    """The location a path names; None for the root (the list of repos)."""
    path = strip_protocol(path)
    if not path:
        return None
    head, _, rest = path.partition("/")
    repo, at, ref = head.partition("@")
    if not repo or (at and not ref):
        raise ValueError(f"trunkfs path {path!r}: use REPO[@REF]/PATH")
    if ".." in rest.split("/"):
        raise ValueError(f"trunkfs path {path!r}: '..' is not allowed")
    return Location(repo, ref if at else None, rest)
