"""Pipeline specs: parsing and validation (TOML or JSON).

A spec names an input (repo, branch, glob), a command, an output repo and
limits.  Everything a user can get wrong is refused here with a message
that says what and where: unknown fields, wrong types, an unsupported glob.
Checks that need the store (the input repo exists, the name is free, no
cycle in the DAG) are in :mod:`trunkfs.pipelines.registry`.
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import asdict, dataclass, field
from typing import TypeVar

from ..store.errors import InvalidArgument
from ..store.names import check_name

T = TypeVar("T")

GLOBS = ("/", "/*", "/*/*", "/**")
DEFAULT_TIMEOUT = 3600.0
_TOP = {"name", "input", "transform", "output", "parallelism", "timeout", "retries", "executor",
        "datums_per_task"}
LOCAL = "local"            # the executor every daemon has: its own subprocesses
MAX_DATUMS_PER_TASK = 10_000
_INPUT = {"repo", "branch", "glob"}
_TRANSFORM = {"cmd", "env", "stdin"}


@dataclass
class PipelineSpec:
    name: str
    input_repo: str
    input_branch: str = "main"
    glob: str = "/"
    cmd: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    stdin: str | None = None
    output: str = ""
    parallelism: int = 1
    timeout: float = DEFAULT_TIMEOUT
    retries: int = 0
    executor: str = LOCAL          # where its datums run (pipelines/executors.py)
    datums_per_task: int = 0       # datums per Dask task; 0: chosen per job

    def to_json(self) -> dict:
        """The spec in the form a user writes it."""
        transform: dict = {"cmd": self.cmd, "env": self.env}
        if self.stdin is not None:
            transform["stdin"] = self.stdin
        out = {"name": self.name,
               "input": {"repo": self.input_repo, "branch": self.input_branch, "glob": self.glob},
               "transform": transform, "output": self.output,
               "parallelism": self.parallelism, "timeout": self.timeout, "retries": self.retries}
        if self.executor != LOCAL:      # specs of the local executor read as they always did
            out["executor"] = self.executor
        if self.datums_per_task:
            out["datums_per_task"] = self.datums_per_task
        return out

    def flat(self) -> dict:
        return asdict(self)


def _unknown(obj: dict, known: set[str], where: str) -> None:
    extra = sorted(set(obj) - known)
    if extra:
        raise InvalidArgument(f"pipeline spec: unknown field{'s' if len(extra) > 1 else ''} "
                              f"{', '.join(repr(e) for e in extra)} in {where}")


def _want(value: object, kind: type[T], what: str) -> T:
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is int):
        raise InvalidArgument(f"pipeline spec: {what} must be {kind.__name__}")
    return value


def _want_number(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidArgument(f"pipeline spec: {what} must be int or float")
    return float(value)


def parse_spec_text(text: str, filename: str = "spec") -> dict:
    """Parse a spec file's text: JSON if it looks like JSON, else TOML."""
    stripped = text.lstrip()
    try:
        if stripped.startswith("{") or filename.endswith(".json"):
            data = json.loads(text)
        else:
            data = tomllib.loads(text)
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        raise InvalidArgument(f"{filename}: not valid JSON or TOML: {exc}") from None
    if not isinstance(data, dict):
        raise InvalidArgument(f"{filename}: a pipeline spec must be an object")
    return data


def validate_spec(data: object) -> PipelineSpec:
    """Turn a spec object into a PipelineSpec, or raise InvalidArgument saying why."""
    if not isinstance(data, dict):
        raise InvalidArgument("pipeline spec must be an object")
    _unknown(data, _TOP, "the spec")
    if "name" not in data:
        raise InvalidArgument("pipeline spec: 'name' is missing")
    name = check_name(_want(data["name"], str, "'name'"), "pipeline")
    inp = _want(data.get("input"), dict, "'input'") if "input" in data else None
    if inp is None:
        raise InvalidArgument("pipeline spec: 'input' is missing")
    _unknown(inp, _INPUT, "'input'")
    if "repo" not in inp:
        raise InvalidArgument("pipeline spec: 'input.repo' is missing")
    repo = check_name(_want(inp["repo"], str, "'input.repo'"), "repo")
    branch = check_name(_want(inp.get("branch", "main"), str, "'input.branch'"), "branch")
    glob = _want(inp.get("glob", "/"), str, "'input.glob'")
    if glob not in GLOBS:
        raise InvalidArgument(f"pipeline spec: glob {glob!r} is not supported; use one of "
                              f"{', '.join(GLOBS)}")
    tr = data.get("transform")
    if tr is None:
        raise InvalidArgument("pipeline spec: 'transform' is missing")
    _want(tr, dict, "'transform'")
    _unknown(tr, _TRANSFORM, "'transform'")
    cmd = _want(tr.get("cmd"), list, "'transform.cmd'") if "cmd" in tr else None
    if not cmd or not all(isinstance(a, str) and a for a in cmd):
        raise InvalidArgument("pipeline spec: 'transform.cmd' must be a non-empty list of non-empty strings")
    env = _want(tr.get("env", {}), dict, "'transform.env'")
    for k, v in env.items():
        if not isinstance(v, str) or not k or "=" in k or "\0" in k or "\0" in v:
            raise InvalidArgument(f"pipeline spec: 'transform.env' entry {k!r} must map a name to a string")
    stdin = tr.get("stdin")
    if stdin is not None:
        _want(stdin, str, "'transform.stdin'")
    output = check_name(_want(data.get("output", name), str, "'output'"), "repo")
    parallelism = _want(data.get("parallelism", 1), int, "'parallelism'")
    if not 1 <= parallelism <= 64:
        raise InvalidArgument("pipeline spec: 'parallelism' must be between 1 and 64")
    timeout = _want_number(data.get("timeout", DEFAULT_TIMEOUT), "'timeout'")
    if not 0 < timeout <= 7 * 86400:
        raise InvalidArgument("pipeline spec: 'timeout' must be between 0 and 604800 seconds")
    retries = _want(data.get("retries", 0), int, "'retries'")
    if not 0 <= retries <= 10:
        raise InvalidArgument("pipeline spec: 'retries' must be between 0 and 10")
    if output == repo:
        raise InvalidArgument(f"pipeline spec: output repo {output!r} is its own input (a cycle)")
    executor = check_name(_want(data.get("executor", LOCAL), str, "'executor'"), "executor")
    per_task = _want(data.get("datums_per_task", 0), int, "'datums_per_task'")
    if not 0 <= per_task <= MAX_DATUMS_PER_TASK:
        raise InvalidArgument(f"pipeline spec: 'datums_per_task' must be between 1 and {MAX_DATUMS_PER_TASK} "
                              "(0 or absent: chosen per job)")
    return PipelineSpec(name=name, input_repo=repo, input_branch=branch, glob=glob, cmd=list(cmd),
                        env=dict(env), stdin=stdin, output=output, parallelism=parallelism,
                        timeout=timeout, retries=retries, executor=executor, datums_per_task=per_task)
