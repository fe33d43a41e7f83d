"""raftsched/app: the one apply path of the simulator and the server, on its own."""

from __future__ import annotations

import pytest

from raftsched.app import CHAIN_HASH_START, SchedApp, chain, encode_proposal
from raftsched.raft.types import Entry, EntryKind
from raftsched.sched import Command, JobSpec, Lease, Ok, Refused, SubmitJobs, Tick
from raftsched.wire.errors import WireDecodeError


def _normal(index: int, command: Command, stamp_ms: int, term: int = 1) -> Entry:
    data = encode_proposal(command, stamp_ms=stamp_ms, proposer_id=7)
    return Entry(term, index, EntryKind.NORMAL, data)


def test_answers_are_keyed_by_index_and_term_and_tokens_are_raft_indexes() -> None:
    app = SchedApp()
    submit = SubmitJobs((JobSpec(id="a", queue="q"),), idempotency_key="k")
    assert app.apply(Entry(1, 1, EntryKind.NOOP, b"")) is None  # a no-op answers nobody
    first = app.apply(_normal(2, submit, 5_000))
    lease = app.apply(_normal(3, Lease("q", "w"), 4_000, term=2))  # a lagging stamp
    assert first is not None and first.key == (2, 1) and first.proposer_id == 7
    assert lease is not None and lease.key == (3, 2) and isinstance(lease.result, Ok)
    assert lease.result.value["leases"][0]["token"] == 3  # the granting entry's index
    assert app.state.clock_ms == 5_000 and app.lagging_stamps == 1  # never backwards
    assert app.applied_index == 3


def test_entries_must_come_in_order() -> None:
    app = SchedApp()
    with pytest.raises(AssertionError, match="in order"):
        app.apply(_normal(2, Tick(), 1_000))


def test_an_undecodable_entry_is_refused_deterministically_and_still_chained() -> None:
    app = SchedApp()
    before = app.state_hash()
    answer = app.apply(Entry(1, 1, EntryKind.NORMAL, b"\xc1"))
    assert answer is not None and not answer.decoded and isinstance(answer.result, Refused)
    assert app.state_hash() == before and app.applied_index == 1
    assert app.chain_hash == chain(CHAIN_HASH_START, Entry(1, 1, EntryKind.NORMAL, b"\xc1"))


def test_snapshot_restore_continues_the_same_chain_and_state() -> None:
    app = SchedApp()
    app.apply(_normal(1, SubmitJobs((JobSpec(id="a", queue="q"),)), 5_000))
    copy = SchedApp()
    copy.restore(app.snapshot())
    assert (copy.applied_index, copy.chain_hash) == (app.applied_index, app.chain_hash)
    assert copy.state_hash() == app.state_hash()
    for replica in (app, copy):
        replica.apply(_normal(2, Tick(), 6_000))
    assert copy.chain_hash == app.chain_hash and copy.state_hash() == app.state_hash()
    assert copy.get_job("a") is not None
    copy.restore(b"")  # the empty state at index 0 discards everything
    assert copy.applied_index == 0 and copy.chain_hash == CHAIN_HASH_START
    assert copy.get_job("a") is None


@pytest.mark.parametrize("blob", [b"\xc1", b"\x90", b"\x94\x02\x00\xc4\x00\xc4\x00"])
def test_a_malformed_snapshot_raises_and_leaves_the_app_unchanged(blob: bytes) -> None:
    app = SchedApp()
    app.apply(_normal(1, Tick(), 1_000))
    before = (app.applied_index, app.chain_hash, app.state_hash())
    with pytest.raises(WireDecodeError):
        app.restore(blob)
    assert (app.applied_index, app.chain_hash, app.state_hash()) == before


def test_chain_hash_depends_on_every_field() -> None:
    base = Entry(1, 1, EntryKind.NORMAL, b"x")
    variants = [
        Entry(2, 1, EntryKind.NORMAL, b"x"),
        Entry(1, 2, EntryKind.NORMAL, b"x"),
        Entry(1, 1, EntryKind.NOOP, b"x"),
        Entry(1, 1, EntryKind.NORMAL, b"y"),
    ]
    hashes = {chain(CHAIN_HASH_START, e) for e in [base, *variants]}
    assert len(hashes) == 5
