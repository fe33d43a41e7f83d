"""The direct checkers (lost jobs, double completion, single live lease, tokens, terminal,
convergence) and check_all: each passes a good history and fails a bad one, naming the ops."""

from __future__ import annotations

from typing import Any

import pytest

from jepsen.checkers import (
    check_all,
    check_convergence,
    check_no_double_completion,
    check_no_lost_jobs,
    check_queue_order,
    check_single_live_lease,
    check_terminal_after_heal,
    check_tokens_increase,
)
from jepsen.checkers.testing import HistoryBuilder
from jepsen.history import HistoryError, Op


def _good_run() -> HistoryBuilder:
    h = HistoryBuilder()
    h.submit(1, "a")
    h.submit(1, "b")
    h.nemesis("partition", {"kind": "isolate-leader", "nodes": [1]})
    h.lease(2, "a", 10)
    h.heartbeat(2, "a", 10)
    h.complete(2, "a", 10)
    h.lease(3, "b", 12)
    h.fail_job(3, "b", 12)
    h.nemesis("heal", {})
    h.lease(3, "b", 15)
    h.complete(3, "b", 15)
    h.final_read("a", "succeeded", 10, 1)
    h.final_read("b", "succeeded", 15, 2)
    h.state_hash(1, 40, "h40")
    h.state_hash(2, 40, "h40")
    h.state_hash(3, 40, "h40")
    return h


def _ops_named(details: dict[str, Any], key: str = "violations") -> set[int]:
    return {index for item in details[key] for index in item["ops"]}


def test_check_all_passes_a_good_run() -> None:
    report = check_all(_good_run().ops)
    bad = {name: c["message"] for name, c in report["checks"].items() if c["valid"] is not True}
    assert bad == {}
    assert report["valid"] is True and report["verdict"] == "valid"
    assert set(report["checks"]) == {
        "linearizable",
        "no-lost-jobs",
        "no-double-completion",
        "single-live-lease",
        "tokens-increase",
        "queue-order",
        "terminal-after-heal",
        "replicas-converge",
    }


def test_check_all_refuses_a_malformed_history() -> None:
    op = Op(index=0, type="ok", process=1, f="read", value=None, time_ns=0, wall_ms=0)
    with pytest.raises(HistoryError, match="without an invoke"):
        check_all([op])


def test_check_all_is_invalid_when_one_check_fails_and_unknown_does_not_pass() -> None:
    h = _good_run()
    h.complete(9, "a", 15)  # a second, different completion of a
    report = check_all(h.ops)
    assert report["valid"] is False and report["verdict"] == "invalid"
    assert report["checks"]["no-double-completion"]["valid"] is False
    h2 = HistoryBuilder()
    h2.submit(1, "a")  # no final reads: unknown
    report2 = check_all(h2.ops)
    assert report2["verdict"] == "unknown" and report2["valid"] is False


# -- no lost jobs ------------------------------------------------------------------------------


def test_lost_job_is_named() -> None:
    h = HistoryBuilder()
    submit = h.submit(1, "a")
    h.submit(1, "b")
    final = h.final_read("a", None)
    h.final_read("b", "succeeded", 3, 1)
    result = check_no_lost_jobs(h.ops)
    assert result.valid is False
    assert result.details["lost"][0]["job_id"] == "a"
    assert {submit.index, final.index} <= _ops_named(result.details, "lost")


def test_lost_job_seen_by_a_read_during_the_test() -> None:
    h = HistoryBuilder()
    h.submit(1, "a")
    h.read(2, "a", None)
    h.final_read("a", "succeeded", 3, 1)  # even if it comes back later
    assert check_no_lost_jobs(h.ops).valid is False


def test_not_found_for_an_indeterminate_or_concurrent_submit_is_not_lost() -> None:
    h = HistoryBuilder()
    h.invoke(1, "submit", {"job_id": "a", "queue": "q"})
    h.info(1)
    h.invoke(2, "submit", {"job_id": "b", "queue": "q"})
    h.read(3, "b", None)  # concurrent with b's submit
    h.ok(2, {"job_id": "b"})
    h.final_read("a", None)
    h.final_read("b", "pending")
    result = check_no_lost_jobs(h.ops)
    assert result.valid is True, result.message


def test_a_read_answer_without_a_state_is_not_taken_for_not_found() -> None:
    h = HistoryBuilder()
    h.submit(1, "a")
    h.call(2, "read", {"job_id": "a"}, {"oops": True})
    h.call("final", "final-read", {"job_id": "a"}, None)
    assert check_no_lost_jobs(h.ops).valid is None  # unconfirmed, not lost
    assert check_terminal_after_heal(h.ops).valid is None


def test_lost_check_is_unknown_without_final_reads() -> None:
    h = HistoryBuilder()
    h.submit(1, "a")
    assert check_no_lost_jobs(h.ops).valid is None
    h.invoke("final", "final-read", {"job_id": "a"})
    h.info("final")
    result = check_no_lost_jobs(h.ops)
    assert result.valid is None and result.details["unconfirmed"] == ["a"]


# -- no double completion ----------------------------------------------------------------------


def test_two_completions_with_different_tokens() -> None:
    h = HistoryBuilder()
    h.submit(1, "a")
    first = h.complete(2, "a", 10)
    second = h.complete(3, "a", 11)
    result = check_no_double_completion(h.ops)
    assert result.valid is False
    assert {first.index, second.index} <= _ops_named(result.details)


def test_repeated_complete_with_one_token_is_one_completion() -> None:
    h = HistoryBuilder()
    h.submit(1, "a")
    h.complete(2, "a", 10)
    h.complete(3, "a", 10)
    h.final_read("a", "succeeded", 10, 1)
    assert check_no_double_completion(h.ops).valid is True


def test_completed_and_failed_attempt() -> None:
    h = HistoryBuilder()
    h.complete(2, "a", 10)
    fail = h.fail_job(2, "a", 10)
    result = check_no_double_completion(h.ops)
    assert result.valid is False
    assert result.details["violations"][0]["kind"] == "completed and failed"
    assert fail.index in _ops_named(result.details)


@pytest.mark.parametrize(("state", "token"), [("dead", 10), ("pending", 10), ("succeeded", 12)])
def test_final_state_must_agree_with_the_completion(state: str, token: int) -> None:
    h = HistoryBuilder()
    h.complete(2, "a", 10)
    final = h.final_read("a", state, token, 1)
    result = check_no_double_completion(h.ops)
    assert result.valid is False
    assert final.index in _ops_named(result.details)


# -- single live lease -------------------------------------------------------------------------


def test_older_lease_heartbeat_accepted_after_newer_grant() -> None:
    h = HistoryBuilder()
    h.submit(1, "a")
    h.lease(2, "a", 10)
    h.lease(3, "a", 14)
    beat = h.heartbeat(2, "a", 10)
    result = check_single_live_lease(h.ops)
    assert result.valid is False
    assert beat.index in _ops_named(result.details)


def test_older_lease_use_concurrent_with_newer_grant_is_not_flagged() -> None:
    h = HistoryBuilder()
    h.submit(1, "a")
    h.lease(2, "a", 10)
    h.invoke(2, "complete", {"job_id": "a", "token": 10})
    h.invoke(3, "lease", {"queue": "q", "worker_id": "w3"})
    h.ok(3, {"job_id": "a", "token": 14})  # may have been granted after the complete...
    h.ok(2, {})  # ...which may have been applied first: not certain, not flagged
    assert check_single_live_lease(h.ops).valid is True


def test_one_grant_two_holders() -> None:
    h = HistoryBuilder()
    h.invoke(2, "lease", {"queue": "q", "worker_id": "w2"})
    h.invoke(3, "lease", {"queue": "q", "worker_id": "w3"})
    h.ok(2, {"job_id": "a", "token": 10})
    h.ok(3, {"job_id": "a", "token": 10})
    result = check_single_live_lease(h.ops)
    assert result.valid is False
    assert result.details["violations"][0]["kind"] == "one grant, two holders"


def test_lease_after_expiry_and_stale_refused_is_fine() -> None:
    h = HistoryBuilder()
    h.submit(1, "a")
    h.lease(2, "a", 10)
    h.lease(3, "a", 14)
    h.invoke(2, "complete", {"job_id": "a", "token": 10})
    h.fail(2, "409 stale_token")
    h.complete(3, "a", 14)
    assert check_single_live_lease(h.ops).valid is True


def test_second_grant_while_the_first_lease_cannot_have_expired() -> None:
    h = HistoryBuilder()
    h.submit(1, "a", lease_ms=1000)
    h.invoke(2, "lease", {"queue": "q", "worker_id": "w2"})
    h.invoke(3, "lease", {"queue": "q", "worker_id": "w3"})
    first = h.ok(2, {"job_id": "a", "token": 10})
    second = h.ok(3, {"job_id": "a", "token": 11})
    result = check_single_live_lease(h.ops)
    assert result.valid is False, result.message
    assert result.details["violations"][0]["kind"] == (
        "granted while the older lease was certainly live"
    )
    assert {first.index, second.index} <= _ops_named(result.details)


def test_second_grant_after_the_lease_time_is_fine() -> None:
    h = HistoryBuilder()
    h.submit(1, "a", lease_ms=1000)
    h.lease(2, "a", 10)
    h.advance(800)  # past lease_ms minus the margin (half the lease): may have expired
    h.lease(3, "a", 11)
    assert check_single_live_lease(h.ops).valid is True


def test_a_heartbeat_extends_the_certain_life_of_a_lease() -> None:
    h = HistoryBuilder()
    h.submit(1, "a", lease_ms=1000)
    h.lease(2, "a", 10)
    h.advance(700)
    h.heartbeat(2, "a", 10)
    h.advance(200)  # 900 ms after the lease, 200 ms after the heartbeat
    h.lease(3, "a", 11)
    assert check_single_live_lease(h.ops).valid is False


def test_a_complete_in_flight_may_have_ended_the_older_lease() -> None:
    h = HistoryBuilder()
    h.submit(1, "a", lease_ms=1000)
    h.lease(2, "a", 10)
    h.invoke(2, "fail", {"job_id": "a", "token": 10, "retryable": True})
    h.info(2)  # the fail may have happened
    h.lease(3, "a", 11)
    assert check_single_live_lease(h.ops).valid is True


def test_expiry_rule_is_off_with_a_clock_nemesis_or_without_lease_ms() -> None:
    for clock_fault, lease_ms in ((True, 1000), (False, None)):
        h = HistoryBuilder()
        if clock_fault:
            h.nemesis("clock-skew", {"nodes": [1], "ms": 5000})
        h.submit(1, "a", lease_ms=lease_ms)
        h.lease(2, "a", 10)
        h.lease(3, "a", 11)
        result = check_single_live_lease(h.ops)
        assert result.valid is True, (clock_fault, result.message)
        assert result.details["expiry_rule"].startswith("off" if clock_fault else "on")


# -- tokens ------------------------------------------------------------------------------------


def test_tokens_per_job_must_grow_in_real_time_order() -> None:
    h = HistoryBuilder()
    first = h.lease(2, "a", 10)
    second = h.lease(3, "a", 10)
    result = check_tokens_increase(h.ops)
    assert result.valid is False
    assert {first.index, second.index} <= _ops_named(result.details)
    assert result.details["violations"][0]["kind"] == "per job"


def test_tokens_across_jobs_follow_log_order() -> None:
    h = HistoryBuilder()
    h.lease(2, "a", 10)
    later = h.lease(3, "b", 7)
    result = check_tokens_increase(h.ops)
    assert result.valid is False
    assert result.details["violations"][0]["kind"] == "across jobs (log order)"
    assert later.index in _ops_named(result.details)


def test_concurrent_leases_may_get_tokens_in_any_order() -> None:
    h = HistoryBuilder()
    h.invoke(2, "lease", {"queue": "q", "worker_id": "w2"})
    h.invoke(3, "lease", {"queue": "q", "worker_id": "w3"})
    h.ok(2, {"job_id": "a", "token": 12})
    h.ok(3, {"job_id": "b", "token": 11})
    h.lease(4, "a", 20)
    assert check_tokens_increase(h.ops).valid is True


def test_token_must_be_a_positive_integer() -> None:
    h = HistoryBuilder()
    h.lease(2, "a", 0)
    result = check_tokens_increase(h.ops)
    assert result.valid is False
    assert result.details["violations"][0]["kind"] == "not a positive integer"


# -- queue order ---------------------------------------------------------------------------


def test_younger_job_leased_while_an_older_one_was_pending() -> None:
    h = HistoryBuilder()
    older = h.submit(1, "a")
    h.submit(1, "b")
    lease = h.lease(2, "b", 10)
    result = check_queue_order(h.ops)
    assert result.valid is False, result.message
    violation = result.details["violations"][0]
    assert violation["older_pending"] == ["a"]
    assert {older.index, lease.index} <= _ops_named(result.details)


def test_indeterminate_leases_may_have_taken_the_older_jobs() -> None:
    h = HistoryBuilder()
    h.submit(1, "a")
    h.submit(1, "b")
    h.submit(1, "c")
    h.invoke(3, "lease", {"queue": "q", "worker_id": "w3"})
    h.info(3)  # may have taken a
    h.lease(2, "c", 10)  # but not both a and b
    assert check_queue_order(h.ops).valid is False
    h2 = HistoryBuilder()
    h2.submit(1, "a")
    h2.submit(1, "b")
    h2.invoke(3, "lease", {"queue": "q", "worker_id": "w3"})
    h2.info(3)
    h2.lease(2, "b", 10)
    assert check_queue_order(h2.ops).valid is True


def test_order_is_not_judged_when_it_is_not_certain() -> None:
    h = HistoryBuilder()
    h.invoke(1, "submit", {"job_id": "a", "queue": "q"})
    h.invoke(4, "submit", {"job_id": "b", "queue": "q"})
    h.ok(1, {"job_id": "a"})
    h.ok(4, {"job_id": "b"})  # concurrent submits: either may be older
    h.lease(2, "b", 10)
    h.call(5, "submit", {"job_id": "c", "queue": "q", "priority": 5}, {"job_id": "c"})
    h.lease(2, "c", 11)  # a priority job: not judged
    h.submit(1, "d", queue="other")
    h.lease(2, "a", 12)
    h.invoke(6, "lease", {"queue": "other", "worker_id": "w6"})
    h.ok(6, {"job_id": "d", "token": 13})
    assert check_queue_order(h.ops).valid is True


def test_an_older_job_leased_concurrently_is_not_pending_for_sure() -> None:
    h = HistoryBuilder()
    h.submit(1, "a")
    h.submit(1, "b")
    h.invoke(2, "lease", {"queue": "q", "worker_id": "w2"})
    h.invoke(3, "lease", {"queue": "q", "worker_id": "w3"})
    h.ok(3, {"job_id": "b", "token": 11})
    h.ok(2, {"job_id": "a", "token": 10})
    assert check_queue_order(h.ops).valid is True


# -- terminal after heal -----------------------------------------------------------------------


def test_pending_job_after_heal_is_named() -> None:
    h = HistoryBuilder()
    h.submit(1, "a")
    h.submit(1, "b")
    h.final_read("a", "succeeded", 3, 1)
    stuck = h.final_read("b", "leased", 5, 1)
    result = check_terminal_after_heal(h.ops)
    assert result.valid is False
    assert result.details["not_terminal"][0]["job_id"] == "b"
    assert stuck.index in _ops_named(result.details, "not_terminal")


def test_polling_final_reads_use_the_last_one() -> None:
    h = HistoryBuilder()
    h.submit(1, "a")
    h.final_read("a", "pending")
    h.final_read("a", "dead", 5, 3)
    assert check_terminal_after_heal(h.ops).valid is True


def test_indeterminate_submit_that_never_happened_needs_no_terminal_state() -> None:
    h = HistoryBuilder()
    h.invoke(1, "submit", {"job_id": "a", "queue": "q"})
    h.info(1)
    h.final_read("a", None)
    assert check_terminal_after_heal(h.ops).valid is True
    h.final_read("b", "pending")  # but one that exists must end
    assert check_terminal_after_heal(h.ops).valid is False


# -- convergence -------------------------------------------------------------------------------


def test_diverged_replicas_are_named() -> None:
    h = HistoryBuilder()
    h.state_hash(1, 40, "x")
    h.state_hash(2, 40, "x")
    odd = h.state_hash(3, 40, "y")
    result = check_convergence(h.ops)
    assert result.valid is False
    assert result.details["diverged"][0]["hashes"] == {"x": [1, 2], "y": [3]}
    assert odd.index in _ops_named(result.details, "diverged")


def test_diverged_logs_are_named_by_their_chain_hash() -> None:
    h = HistoryBuilder()
    for node, chain in ((1, "c1"), (2, "c1"), (3, "c2")):
        value = {"node": node, "applied_index": 9, "state_hash": "same", "chain_hash": chain}
        h.call("final", "state-hash", {"node": node}, value)
    result = check_convergence(h.ops)
    assert result.valid is False
    assert result.details["diverged"][0]["what"] == "log (chain hash)"
    assert result.details["diverged"][0]["hashes"] == {"c1": [1, 2], "c2": [3]}


def test_replicas_that_never_meet_at_one_index_did_not_converge() -> None:
    h = HistoryBuilder()
    h.state_hash(1, 40, "x")
    h.state_hash(2, 38, "w")
    assert check_convergence(h.ops).valid is False
    h.state_hash(2, 40, "x")  # it caught up
    assert check_convergence(h.ops).valid is True


def test_convergence_unknown_without_reports() -> None:
    assert check_convergence(HistoryBuilder().ops).valid is None
