"""In process: the lease objects that give a pipeline's jobs to one daemon
(a real local store; two ``Leases`` as two daemons), the order in which a
pipeline's open jobs run, and which are superseded."""

from __future__ import annotations

import time

import pytest

from trunkfs.pipelines.jobs import Job, JobInput
from trunkfs.pipelines.leases import LeaseLost, Leases
from trunkfs.pipelines.order import input_order, superseded_by
from trunkfs.store.objects import EMPTY_TREE_ID, Commit
from trunkfs.store.refs import Refs
from trunkfs.store.store import Store

TTL = 1.0   # the shortest a lease may name


def test_one_daemon_holds_a_lease_until_it_is_silent_for_its_ttl_on_the_watchers_clock(store: Store) -> None:
    a, b = Leases(store.backend, "a" * 16, TTL), Leases(store.backend, "b" * 16, TTL)
    held = a.claim("pipelines/p")
    assert held is not None and b.claim("pipelines/p") is None
    for _ in range(4):                       # renewed: never expires for B
        time.sleep(TTL / 2)
        a.renew(held)
        assert b.claim("pipelines/p") is None
    assert a.claim("pipelines/p") is None    # a daemon does not take its own live lease twice
    time.sleep(TTL * 1.5)                    # A is silent for longer than its ttl
    taken = b.claim("pipelines/p")
    assert taken is not None and taken.taken_from == "a" * 16
    with pytest.raises(LeaseLost):           # A learns it at its next renewal
        a.renew(held)
    assert not a.holds(held) and b.holds(taken)
    a.release(held)                          # a stale release leaves B's lease alone
    assert b.holds(taken) and a.holder("pipelines/p") == "b" * 16
    b.release(taken)
    assert a.holder("pipelines/p") is None


def test_a_restarted_daemon_takes_its_own_lease_back_at_once(store: Store) -> None:
    before = Leases(store.backend, "a" * 16, 30)
    assert before.claim("pipelines/p") is not None
    after = Leases(store.backend, "a" * 16, 30)     # same id, a new life
    other = Leases(store.backend, "b" * 16, 30)
    assert other.claim("pipelines/p") is None
    assert after.claim("pipelines/p") is not None


def test_an_unreadable_lease_is_taken_only_after_the_longest_silence(store: Store) -> None:
    store.backend.put("leases/pipelines/p", b"\xff not json")
    b = Leases(store.backend, "b" * 16, TTL)
    assert b.claim("pipelines/p") is None
    time.sleep(TTL * 1.5)
    assert b.claim("pipelines/p") is None   # it names no ttl: MAX_TTL applies


def _commit(store: Store, refs: Refs, repo: str, parent: str | None, provenance: list | None = None) -> str:
    info = refs.get_repo(repo)
    cid = store.write_commit(Commit(repo=repo, repo_id=info.id, tree=EMPTY_TREE_ID.hex(),
                                    parents=[parent] if parent else [], message=str(time.time()),
                                    provenance=provenance or []))
    head, version = refs.read_branch(repo, "main")
    refs.move_branch(repo, "main", cid, version)
    return cid


def _job(jid: str, commit: str, created: float) -> Job:
    return Job(id=jid, pipeline="p", version=1, input=JobInput("raw", "main", commit), output="out",
               created=created)


def test_open_jobs_run_in_the_order_of_their_inputs_and_older_inputs_are_superseded(store: Store) -> None:
    refs = Refs(store)
    refs.create_repo("raw")
    refs.create_repo("out")
    c1 = _commit(store, refs, "raw", None)
    c2 = _commit(store, refs, "raw", c1)
    c3 = _commit(store, refs, "raw", c2)
    # records made out of order (the daemon of c1 was slow)
    jobs = [_job("j3", c3, 1.0), _job("j1", c1, 3.0), _job("j2", c2, 2.0)]
    assert [j.id for j in input_order(store, refs, jobs)] == ["j1", "j2", "j3"]
    assert superseded_by(store, refs, jobs[1]) is None          # nothing committed yet
    _commit(store, refs, "out", None, [{"repo": "raw", "branch": "main", "commit": c2}])
    assert superseded_by(store, refs, _job("j1", c1, 3.0)) == c2   # an older input: superseded
    assert superseded_by(store, refs, _job("j2", c2, 2.0)) is None  # the same input (--reprocess)
    assert superseded_by(store, refs, _job("j3", c3, 1.0)) is None  # a later input


@pytest.mark.allow_warnings     # the errors are what it checks
def test_what_another_writer_left_under_jobq_and_jobs_is_skipped_and_logged_once(store: Store, caplog) -> None:
    from trunkfs.pipelines.jobs import JobStore, new_job_id
    records = JobStore(store.backend)
    good = _job(new_job_id(), "c" * 64, time.time())
    assert records.create(good)
    assert not records.create(good)                 # an id taken already is refused
    liar = new_job_id()
    store.backend.put(f"jobs/{liar}", good.encode())  # a record that names another job
    broken = new_job_id()
    store.backend.put(f"jobs/{broken}", b"{not json")
    for key in ("jobq/not-an-id", "jobq/" + "0" * 11, "jobq/ABCDEF012345", f"jobq/{broken}", f"jobq/{liar}"):
        store.backend.put(key, b"")
    for _ in range(3):
        assert sorted(records.open_ids()) == sorted([good.id, broken, liar])
        assert records.load_one(broken) is None and records.load_one(liar) is None
        assert records.load_one(good.id).to_json() == good.to_json()
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 5, errors                 # three keys that are no id, two bad records: once each
