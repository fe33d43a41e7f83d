"""The linearizability checker of the queue with leases, on hand-made histories.

Each invalid history is one a broken scheduler could produce (the classic anomalies: a stale
read after a complete, one lease handed to two workers, a lost submit); each valid one is a
tricky but legal history, most with indeterminate (info) operations.
"""

from __future__ import annotations

from jepsen.checkers import check_linearizable
from jepsen.checkers.linearizable import job_events
from jepsen.checkers.testing import HistoryBuilder
from jepsen.history import Op
from raftsched.sim.history import EventType

LEASE = {"queue": "q", "worker_id": "w"}


def _verdict(ops: list[Op]) -> bool | None:
    return check_linearizable(ops).valid


def _failing_ops(ops: list[Op]) -> list[int]:
    result = check_linearizable(ops)
    assert result.valid is False, result.message
    failures = result.details["failures"]
    assert failures, result.details
    ops_named: list[int] = failures[0]["ops"]
    return ops_named


# -- valid ------------------------------------------------------------------------------------


def test_sequential_lifecycle_is_linearizable() -> None:
    h = HistoryBuilder()
    h.submit(1, "a")
    h.read(2, "a", "pending", 0, 0)
    h.lease(1, "a", 10)
    h.heartbeat(1, "a", 10)
    h.read(2, "a", "leased", 10, 1)
    h.fail_job(1, "a", 10)
    h.read(2, "a", "scheduled", 10, 1)
    h.read(2, "a", "pending", 10, 1)
    h.lease(1, "a", 14)
    h.complete(1, "a", 14)
    h.complete(3, "a", 14)  # a repeated complete is answered again
    h.final_read("a", "succeeded", 14, 2)
    assert _verdict(h.ops) is True


def test_lease_expiry_between_two_leases_is_legal() -> None:
    h = HistoryBuilder()
    h.submit(1, "a")
    h.lease(1, "a", 10)
    h.lease(2, "a", 12)  # the first lease expired meanwhile: allowed
    h.read(3, "a", "leased", 12, 2)
    h.complete(2, "a", 12)
    assert _verdict(h.ops) is True


def test_indeterminate_submit_may_take_effect_late() -> None:
    h = HistoryBuilder()
    h.invoke(1, "submit", {"job_id": "a", "queue": "q"})
    h.read(2, "a", None)  # not yet
    h.read(2, "a", "pending")  # now it happened
    h.info(1)
    h.final_read("a", "pending")
    assert _verdict(h.ops) is True


def test_indeterminate_lease_token_is_learned_from_a_read() -> None:
    h = HistoryBuilder()
    h.submit(1, "a")
    h.invoke(2, "lease", LEASE)
    h.info(2)
    h.read(3, "a", "leased", 17, 1)  # the lost answer's token
    h.read(3, "a", "pending", 17, 1)  # then it expired
    h.lease(4, "a", 21)
    h.complete(4, "a", 21)
    h.final_read("a", "succeeded", 21, 2)
    assert _verdict(h.ops) is True


def test_indeterminate_complete_either_way() -> None:
    for final_state in ("succeeded", "pending"):
        h = HistoryBuilder()
        h.submit(1, "a")
        h.lease(2, "a", 10)
        h.invoke(2, "complete", {"job_id": "a", "token": 10})
        h.info(2)
        h.final_read("a", final_state, 10, 1)
        assert _verdict(h.ops) is True, final_state


def test_read_concurrent_with_complete_may_see_either_state() -> None:
    for seen in ("leased", "succeeded"):
        h = HistoryBuilder()
        h.submit(1, "a")
        h.lease(2, "a", 10)
        h.invoke(2, "complete", {"job_id": "a", "token": 10})
        h.invoke(3, "read", {"job_id": "a"})
        h.ok(3, {"state": seen, "token": 10, "attempts": 1})
        h.ok(2, {})
        assert _verdict(h.ops) is True, seen


def test_failed_ops_and_no_work_leases_are_left_out() -> None:
    h = HistoryBuilder()
    h.submit(1, "a")
    h.invoke(2, "complete", {"job_id": "a", "token": 99})
    h.fail(2, "409 stale_token")
    h.lease(3, None)  # no work (e.g. a worker at capacity): not a per-job fact
    h.final_read("a", "pending")
    result = check_linearizable(h.ops)
    assert result.valid is True, result.message
    left_out = result.details["left_out"]
    assert left_out == {"failed (certainly did not happen)": 1, "lease answered no work": 1}


def test_unknown_ops_and_malformed_read_answers_are_left_out_and_counted() -> None:
    h = HistoryBuilder()
    h.submit(1, "a")
    h.call(2, "cancel", {"job_id": "a"}, {})
    h.call(3, "read", {"job_id": "a"}, {"oops": True})  # must not read as "not found"
    h.state_hash(1, 5, "x")
    result = check_linearizable(h.ops)
    assert result.valid is True, result.message
    assert result.details["left_out"] == {
        "f=cancel not in the model": 1,
        "read answer without a state field": 1,
    }


def test_retryable_fail_can_end_dead_when_attempts_unknown() -> None:
    h = HistoryBuilder()
    h.submit(1, "a")
    h.lease(2, "a", 10)
    h.fail_job(2, "a", 10)
    h.fail_job(3, "a", 10)  # a repeated fail is acknowledged again
    h.final_read("a", "dead", 10, 1)
    assert _verdict(h.ops) is True


# -- invalid ------------------------------------------------------------------------------------


def test_stale_read_after_complete() -> None:
    h = HistoryBuilder()
    h.submit(1, "a")
    h.lease(2, "a", 10)
    complete = h.complete(2, "a", 10)
    read = h.read(3, "a", "leased", 10, 1)  # the complete is acknowledged: stale read
    assert read.index - 1 in _failing_ops(h.ops)
    assert complete.index - 1 in _failing_ops(h.ops)


def test_one_lease_token_granted_to_two_workers_concurrently() -> None:
    h = HistoryBuilder()
    h.submit(1, "a")
    h.invoke(2, "lease", {"queue": "q", "worker_id": "w2"})
    h.invoke(3, "lease", {"queue": "q", "worker_id": "w3"})
    h.ok(2, {"job_id": "a", "token": 10})
    h.ok(3, {"job_id": "a", "token": 10})
    assert _verdict(h.ops) is False


def test_two_workers_both_complete_with_their_tokens() -> None:
    h = HistoryBuilder()
    h.submit(1, "a")
    h.invoke(2, "lease", {"queue": "q", "worker_id": "w2"})
    h.invoke(3, "lease", {"queue": "q", "worker_id": "w3"})
    h.ok(2, {"job_id": "a", "token": 10})
    h.ok(3, {"job_id": "a", "token": 11})
    h.complete(3, "a", 11)
    h.complete(2, "a", 10)  # the stale holder's complete accepted
    assert _verdict(h.ops) is False


def test_lost_submit() -> None:
    h = HistoryBuilder()
    submit = h.submit(1, "a")
    read = h.read(2, "a", None)
    named = _failing_ops(h.ops)
    assert submit.index - 1 in named and read.index - 1 in named


def test_job_vanishes_after_an_indeterminate_submit_was_seen() -> None:
    h = HistoryBuilder()
    h.invoke(1, "submit", {"job_id": "a", "queue": "q"})
    h.info(1)
    h.read(2, "a", "pending")
    h.read(2, "a", None)
    assert _verdict(h.ops) is False


def test_completed_job_leased_again() -> None:
    h = HistoryBuilder()
    h.submit(1, "a")
    h.lease(2, "a", 10)
    h.complete(2, "a", 10)
    h.lease(3, "a", 12)
    assert _verdict(h.ops) is False


def test_token_going_backwards_for_a_job() -> None:
    h = HistoryBuilder()
    h.submit(1, "a")
    h.lease(2, "a", 10)
    h.fail_job(2, "a", 10)
    h.lease(2, "a", 8)
    assert _verdict(h.ops) is False


def test_attempts_miscounted() -> None:
    h = HistoryBuilder()
    h.submit(1, "a")
    h.lease(2, "a", 10)
    h.read(3, "a", "leased", 10, 2)
    assert _verdict(h.ops) is False


def test_lease_attempt_number_must_count_the_leases() -> None:
    h = HistoryBuilder()
    h.submit(1, "a")
    h.lease(2, "a", 10, attempt=1)
    h.fail_job(2, "a", 10)
    h.lease(2, "a", 12, attempt=2)
    assert _verdict(h.ops) is True
    h.fail_job(2, "a", 12)
    h.lease(2, "a", 14, attempt=2)  # the third lease says it is the second attempt
    assert _verdict(h.ops) is False


def test_heartbeat_accepted_after_completion() -> None:
    h = HistoryBuilder()
    h.submit(1, "a")
    h.lease(2, "a", 10)
    h.complete(2, "a", 10)
    h.heartbeat(2, "a", 10)
    assert _verdict(h.ops) is False


def test_non_retryable_fail_then_pending() -> None:
    h = HistoryBuilder()
    h.submit(1, "a")
    h.lease(2, "a", 10)
    h.fail_job(2, "a", 10, retryable=False)
    h.read(3, "a", "pending", 10, 1)
    assert _verdict(h.ops) is False


def test_indeterminate_lease_cannot_explain_a_token_below_the_last() -> None:
    h = HistoryBuilder()
    h.submit(1, "a")
    h.lease(2, "a", 10)
    h.fail_job(2, "a", 10)
    h.invoke(3, "lease", LEASE)
    h.info(3)
    h.read(4, "a", "leased", 9, 2)
    assert _verdict(h.ops) is False


def test_one_bad_job_among_good_ones_is_named() -> None:
    h = HistoryBuilder()
    for job in ("a", "b", "c"):
        h.submit(1, job)
    h.lease(2, "a", 10)
    h.complete(2, "a", 10)
    h.read(3, "b", "succeeded", 0, 0)  # never leased
    result = check_linearizable(h.ops)
    assert result.valid is False
    assert [item["job_id"] for item in result.details["failures"]] == ["b"]
    assert result.details["jobs"] == 3


# -- partitioning and limits ----------------------------------------------------------------------


def test_indeterminate_leases_join_every_job_of_their_queue_only() -> None:
    h = HistoryBuilder()
    h.submit(1, "a", queue="q")
    h.submit(1, "b", queue="q")
    h.submit(1, "c", queue="other")
    h.invoke(2, "lease", {"queue": "q", "worker_id": "w"})
    h.info(2)
    events, _ = job_events(h.ops)
    leases = {job: sum(1 for e in evs if e.f == "lease") for job, evs in events.items()}
    assert leases == {"a": 1, "b": 1, "c": 0}


def test_indeterminate_lease_after_its_job_ended_is_left_out() -> None:
    h = HistoryBuilder()
    h.submit(1, "a")
    h.submit(1, "b")
    h.lease(2, "a", 10)
    h.complete(2, "a", 10)
    h.invoke(3, "lease", LEASE)  # a is certainly succeeded by now: it can only have taken b
    h.info(3)
    h.read(4, "b", "leased", 12, 1)
    events, left_out = job_events(h.ops)
    invokes = {job: [e.f for e in evs if e.type is EventType.INVOKE] for job, evs in events.items()}
    assert invokes == {"a": ["submit", "lease", "complete"], "b": ["submit", "lease", "read"]}
    assert left_out == {"indeterminate lease after its job ended": 1}
    assert check_linearizable(h.ops).valid is True


def test_repeated_fail_marked_not_retryable_does_not_end_the_job() -> None:
    h = HistoryBuilder()
    h.submit(1, "a")
    h.lease(2, "a", 10)
    h.fail_job(2, "a", 10)  # retried: the job goes back to pending
    h.fail_job(3, "a", 10, retryable=False)  # a repeat: acknowledged, nothing changes
    h.invoke(4, "lease", LEASE)
    h.info(4)
    h.read(5, "a", "leased", 12, 2)  # the indeterminate lease took it
    assert check_linearizable(h.ops).valid is True


def test_search_that_runs_out_of_time_is_unknown() -> None:
    """A hard job (60 indeterminate leases and fails, 16 concurrent reads that no order
    explains: about a second of search) with a 20 ms budget: the search gives up."""
    h = HistoryBuilder()
    h.submit(1, "a")
    for process in range(100, 130):
        h.invoke(process, "lease", LEASE)
    for process in range(100, 130):
        h.info(process)
    for process in range(200, 230):
        h.invoke(process, "fail", {"job_id": "a", "token": 1000 + process, "retryable": True})
    for process in range(200, 230):
        h.info(process)
    for process in range(300, 316):
        h.invoke(process, "read", {"job_id": "a"})
    for offset, process in enumerate(range(300, 316)):
        h.ok(process, {"state": "leased", "token": 1500 - offset, "attempts": 20 + offset})
    result = check_linearizable(h.ops, job_time_limit_s=0.02)
    assert result.valid is None, result.message
    assert result.details["unknown_jobs"] == ["a"]
    assert "gave up" in result.details["unknown"][0]["message"]


def test_time_limit_gives_unknown_not_a_wrong_answer() -> None:
    h = HistoryBuilder()
    h.submit(1, "a")
    # Many concurrent reads of a job with many indeterminate leases: real work for the search.
    for process in range(100, 140):
        h.invoke(process, "lease", LEASE)
    for process in range(100, 140):
        h.info(process)
    for process in range(200, 216):
        h.invoke(process, "read", {"job_id": "a"})
    for offset, process in enumerate(range(200, 216)):
        h.ok(process, {"state": "leased", "token": 50 - offset, "attempts": 16 - offset})
    result = check_linearizable(h.ops, time_limit_s=0.0, job_time_limit_s=0.0)
    assert result.valid is None
    assert result.details["unknown_jobs"] == ["a"]
