"""The pipeline registry: pipeline objects in the store, and the DAG checks.

A pipeline lives at ``pipelines/<name>`` in the store (so the store alone
still holds everything); each update bumps its version, which the jobs it
runs record in their output commits' provenance.  The registered owner (the
caller's uid and gid, from SO_PEERCRED) is who its commands run as.

Every version is also kept, immutable, at
``pipeline-versions/<id>/<version>`` (``versions``: what a pipeline was and
when it changed, for ``pipeline.versions`` and the console); they go with
the pipeline when it is deleted.

Each pipeline has an ``id``: random, made at create, kept by every update.
Reused datum outputs are keyed by it, not by the name, so a pipeline
deleted and created again under the same name (perhaps by someone else) is
another pipeline and never reuses the first one's outputs.  A record
written before pipelines had ids reads with one derived from its name,
creation time and owner, the same at every read.
"""

from __future__ import annotations

import builtins
import hashlib
import json
import logging
import re
import secrets
import time
from collections.abc import Callable

from ..store.errors import (AlreadyExists, Conflict, IntegrityError, InvalidArgument, NotFound, ObjectMissing,
                            TrunkError)
from ..store.names import check_name
from ..store.refs import Refs
from .spec import PipelineSpec, validate_spec

log = logging.getLogger(__name__)

PIPELINE_VERSION = 1
HEX_ID = re.compile(r"[0-9a-f]{8,64}\Z")   # a pipeline id, as ``new_pipeline_id`` makes them

# Checks the caller's rights on a new spec (and the pipeline it replaces, if
# any) before the registry writes anything; raises to refuse.
Authorize = Callable[[PipelineSpec, "Pipeline | None"], None]


def new_pipeline_id() -> str:
    return secrets.token_hex(16)


def legacy_pipeline_id(name: str, created: float, owner: dict) -> str:
    """The id of a record written before pipelines had one."""
    seed = json.dumps(["legacy", name, repr(float(created)), owner.get("uid")]).encode()
    return hashlib.blake2b(seed, digest_size=16).hexdigest()


class Pipeline:
    def __init__(self, spec: PipelineSpec, version: int, owner: dict, created: float,
                 updated: float, id: str | None = None) -> None:
        self.id = id or legacy_pipeline_id(spec.name, created, owner)
        self.spec = spec
        self.version = version
        self.owner = owner
        self.created = created
        self.updated = updated

    @property
    def name(self) -> str:
        return self.spec.name

    def encode(self) -> bytes:
        return json.dumps({"v": PIPELINE_VERSION, "id": self.id, "name": self.name, "version": self.version,
                           "spec": self.spec.to_json(), "owner": self.owner,
                           "created": self.created, "updated": self.updated},
                          sort_keys=True).encode()

    @classmethod
    def decode(cls, raw: bytes, where: str) -> "Pipeline":
        try:
            obj = json.loads(raw)
            if obj.get("v") != PIPELINE_VERSION:
                raise IntegrityError(f"pipeline object {where} has an unknown format version")
            ident = obj.get("id")
            if ident is not None and (not isinstance(ident, str) or not ident):
                raise IntegrityError(f"pipeline object {where} has an invalid id")
            return cls(validate_spec(obj["spec"]), int(obj["version"]), dict(obj["owner"]),
                       float(obj["created"]), float(obj["updated"]), ident)
        except (ValueError, KeyError, TypeError, InvalidArgument) as exc:
            raise IntegrityError(f"pipeline object {where} is not valid: {exc}") from exc

    def to_json(self) -> dict:
        return {"name": self.name, "id": self.id, "version": self.version, "owner": self.owner,
                "created": self.created, "updated": self.updated, "spec": self.spec.to_json()}


class PipelineRegistry:
    def __init__(self, refs: Refs) -> None:
        self.refs = refs
        self.backend = refs.backend

    def _key(self, name: str) -> str:
        return f"pipelines/{check_name(name, 'pipeline')}"

    def get(self, name: str) -> tuple[Pipeline, str]:
        key = self._key(name)
        found = self.backend.get_versioned(key)
        if found is None:
            raise NotFound(f"pipeline {name!r} does not exist")
        return Pipeline.decode(found[0], key), found[1]

    def list(self) -> list[Pipeline]:
        out = []
        for key in sorted(self.backend.list("pipelines/")):
            found = self.backend.get_versioned(key)
            if found is not None:
                out.append(Pipeline.decode(found[0], key))
        return out

    @staticmethod
    def _version_key(pipeline_id: str, version: int) -> str:
        return f"pipeline-versions/{pipeline_id}/{version:010d}"

    def _keep_version(self, pipeline: Pipeline) -> None:
        """Record a version of ``pipeline`` (after its record is written: a
        failure here loses the history line, never the pipeline)."""
        if not HEX_ID.match(pipeline.id):      # a record from a damaged store: no key from it
            return
        try:
            self.backend.put(self._version_key(pipeline.id, pipeline.version), pipeline.encode())
        except (OSError, TrunkError) as exc:
            log.warning("pipeline %s: version %d not recorded in its history: %s",
                        pipeline.name, pipeline.version, exc)

    def versions(self, name: str) -> "builtins.list[Pipeline]":
        """Every recorded version of a pipeline, newest first (the current
        one always; older ones as far as their history goes)."""
        current, _ = self.get(name)
        found = {current.version: current}
        if not HEX_ID.match(current.id):
            return [current]
        for key in self.backend.list(f"pipeline-versions/{current.id}/"):
            try:
                data = self.backend.get(key)
            except ObjectMissing:      # deleted meanwhile
                continue
            try:
                old = Pipeline.decode(data, key)
            except IntegrityError as exc:
                log.warning("pipeline %s: skipping a damaged version record: %s", name, exc)
                continue
            if old.id == current.id:
                found.setdefault(old.version, old)
        return [found[v] for v in sorted(found, reverse=True)]

    def _check_graph(self, spec: PipelineSpec) -> None:
        """The input repo exists, the output is nobody else's, and no cycle forms."""
        self.refs.get_repo(spec.input_repo)
        others = [p for p in self.list() if p.name != spec.name]
        for p in others:
            if p.spec.output == spec.output:
                raise InvalidArgument(f"repo {spec.output!r} is already the output of pipeline {p.name!r}")
        edges: dict[str, set[str]] = {}
        for s in [p.spec for p in others] + [spec]:
            edges.setdefault(s.input_repo, set()).add(s.output)
        # a cycle through the new edge: can the output reach the input again?
        seen: set[str] = set()
        stack = [spec.output]
        while stack:
            repo = stack.pop()
            if repo == spec.input_repo:
                raise InvalidArgument(f"pipeline {spec.name!r} would make a cycle: "
                                      f"{spec.output!r} flows back into {spec.input_repo!r}")
            if repo not in seen:
                seen.add(repo)
                stack.extend(edges.get(repo, ()))

    def create(self, data: object, owner: dict, authorize: Authorize | None = None) -> Pipeline:
        """Register a new pipeline run as ``owner`` (``{"uid", "gid"}``); its
        output repo is created, owned by ``owner["uid"]``, if missing.
        ``authorize(spec, None)`` raises when the caller may not (it sees
        the graph already checked, before anything is written)."""
        spec = validate_spec(data)
        try:
            self.get(spec.name)
        except NotFound:
            pass
        else:
            raise AlreadyExists(f"pipeline {spec.name!r} already exists; use `trunkfs pipeline update`")
        self._check_graph(spec)
        if authorize is not None:
            authorize(spec, None)
        self._ensure_output(spec, int(owner.get("uid", 0)))
        now = time.time()
        pipeline = Pipeline(spec, 1, owner, now, now, new_pipeline_id())
        try:
            self.backend.put_if(self._key(spec.name), pipeline.encode(), None)
        except Conflict:
            raise AlreadyExists(f"pipeline {spec.name!r} already exists") from None
        self._keep_version(pipeline)
        log.info("created pipeline %s (%s@%s %s -> %s)", spec.name, spec.input_repo,
                 spec.input_branch, spec.glob, spec.output)
        return pipeline

    def update(self, data: object, authorize: Authorize | None = None) -> Pipeline:
        """A new version of a pipeline.  Its owner (whom it runs as) never
        changes; ``authorize(spec, old pipeline)`` raises when the caller
        may not update it."""
        spec = validate_spec(data)
        old, version = self.get(spec.name)
        self._check_graph(spec)
        if authorize is not None:
            authorize(spec, old)
        self._ensure_output(spec, int(old.owner.get("uid", 0)))
        pipeline = Pipeline(spec, old.version + 1, old.owner, old.created, time.time(), old.id)
        try:
            self.backend.put_if(self._key(spec.name), pipeline.encode(), version)
        except Conflict:
            raise Conflict(f"pipeline {spec.name!r} changed meanwhile; try again") from None
        self._keep_version(pipeline)
        log.info("updated pipeline %s to version %d", spec.name, pipeline.version)
        return pipeline

    def delete(self, name: str, authorize: Callable[[Pipeline], None] | None = None) -> None:
        old, version = self.get(name)
        if authorize is not None:
            authorize(old)
        self.backend.delete_if(self._key(name), version)
        if HEX_ID.match(old.id):
            for key in self.backend.list(f"pipeline-versions/{old.id}/"):   # its history goes with it
                self.backend.delete(key)
        log.info("deleted pipeline %s", name)

    def _ensure_output(self, spec: PipelineSpec, owner_uid: int) -> None:
        try:
            self.refs.get_repo(spec.output)
        except NotFound:
            try:
                self.refs.create_repo(spec.output, owner_uid)
            except AlreadyExists:  # made meanwhile by someone else: not the pipeline's to write
                raise Conflict(f"repo {spec.output!r} was created meanwhile; try again") from None
