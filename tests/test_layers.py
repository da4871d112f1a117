"""The layers of docs/architecture.md, checked on the source: a module imports
only its own folder and the layers below it (store <- cache <- mountfs,
store <- staging <- mountfs, store <- cache <- pipelines, everything <- daemon; the
client stands alone)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

ALLOWED = {
    "store": {"store"},
    "cache": {"cache", "store"},
    "staging": {"staging", "store"},
    "mountfs": {"mountfs", "cache", "staging", "store"},
    "pipelines": {"pipelines", "cache", "store"},
    "datafs": {"datafs", "client", "cache", "store"},
    "client": {"client"},
    "daemon": {"daemon", "store", "cache", "staging", "mountfs", "pipelines", "client"},
}


def imported_parts(path: Path, root: Path = ROOT) -> set[str]:
    """The trunkfs folders a module imports (absolute or relative imports)."""
    module = ["trunkfs", *path.relative_to(root).with_suffix("").parts]
    if module[-1] == "__init__":
        module.pop()
    package = module if path.name == "__init__.py" else module[:-1]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - node.level + 1]
                names = [".".join(base + ([node.module] if node.module else []))]
            else:
                names = [node.module or ""]
        for name in names:
            parts = name.split(".")
            if parts[0] == "trunkfs" and len(parts) > 1:
                found.add(parts[1])
    return found


def test_every_module_imports_only_its_layer_and_those_below() -> None:
    wrong = []
    checked = 0
    for folder, allowed in ALLOWED.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            checked += 1
            for part in imported_parts(path) - allowed:
                wrong.append(f"{path.relative_to(ROOT)} imports trunkfs.{part}")
    assert checked > 60
    assert not wrong, "\n".join(wrong)


def test_the_checker_sees_relative_imports(workdir: Path) -> None:
    """The check above can fail: a relative import from pipelines/ into daemon/ is caught."""
    found = imported_parts(ROOT / "pipelines" / "scheduler.py")
    assert "store" in found and "pipelines" in found
    (workdir / "pipelines").mkdir()
    probe = workdir / "pipelines" / "probe.py"
    probe.write_text("from ..daemon.commits import CommitPath\nimport trunkfs.mountfs.view\n"
                     "from . import datums\n")
    assert imported_parts(probe, workdir) == {"daemon", "mountfs", "pipelines"}
