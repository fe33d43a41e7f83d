"""The scheduler state machine replicated through the simulated Raft cluster (SPEC §1).

Many seeds under faults must hold every check; one seed replays exactly; the seeded
`sched-any-token` bug must be caught; the client-side checks fail on hand-made histories.
"""

from __future__ import annotations

import dataclasses

import pytest

from raftsched.raft.types import Entry, EntryKind
from raftsched.sched import (
    ConfigureQueue,
    JobSpec,
    JobTemplate,
    Lease,
    Ok,
    PutSchedule,
    SchedulerState,
    SubmitJobs,
    Tick,
)
from raftsched.sched.errors import StaleToken
from raftsched.sched.result import Refused
from raftsched.sim.app import AppAnswer
from raftsched.sim.bugs import BUGS
from raftsched.sim.cli import main
from raftsched.sim.run import RunResult, SimConfig, run_seed
from raftsched.sim.sched_app import SchedAppKind, SchedRequest, SimSchedApp
from raftsched.sim.sched_checks import SchedChecks
from raftsched.sim.sched_invariants import replica_violations


def _failures(results: list[RunResult]) -> list[str]:
    return [
        f"seed {r.seed} ({r.nodes} nodes): {r.violations[0]}\n  replay: scripts/sim "
        f"--seed {r.seed} --nodes {r.nodes} --workload sched --verbose"
        for r in results
        if not r.ok
    ]


@pytest.mark.parametrize(("nodes", "seeds"), [(3, 24), (5, 12)])
def test_seeds_keep_the_scheduler_promises(nodes: int, seeds: int) -> None:
    results = [
        run_seed(SimConfig(seed=seed, nodes=nodes, workload_kind="sched"))
        for seed in range(1, seeds + 1)
    ]
    assert not _failures(results), "\n".join(_failures(results))
    counters = [r.sched for r in results if r.sched is not None]
    assert len(counters) == seeds and all(r.workload_kind == "sched" for r in results)
    # The runs did real work: jobs flowed, stalled workers came back with stale tokens and
    # were refused, and a skewed leader stamped behind the state-machine clock.
    assert sum(c.jobs_submitted for c in counters) > 20 * seeds
    assert sum(c.jobs_completed for c in counters) > 20 * seeds
    assert sum(c.stale_refused for c in counters) > seeds
    assert sum(c.lagging_stamps for c in counters) > seeds
    assert sum(c.report_batches for c in counters) > 5 * seeds  # as the worker agent reports
    assert sum(r.faults_injected for r in results) > 5 * seeds
    # ...and what it checks was exercised: ReadIndex reads judged against what clients were
    # told, wrong/future tokens and reused idempotency keys refused, the queue reconfigured.
    assert sum(c.reads for c in counters) > 5 * seeds
    assert sum(c.bad_tokens_refused for c in counters) > 0
    assert sum(c.key_reuses_refused for c in counters) > 0
    assert sum(c.queue_configs for c in counters) > seeds
    assert sum(c.cron_fires for c in counters) > seeds and sum(c.backfills for c in counters) > 0


def test_same_seed_same_trace_and_state() -> None:
    lines_a: list[str] = []
    lines_b: list[str] = []
    a = run_seed(SimConfig(seed=77, nodes=5, workload_kind="sched"), trace_sink=lines_a.append)
    b = run_seed(SimConfig(seed=77, nodes=5, workload_kind="sched"), trace_sink=lines_b.append)
    assert a.ok and a.trace_hash == b.trace_hash and lines_a == lines_b
    assert a.sched == b.sched
    assert any("sched client" in line for line in lines_a)
    assert run_seed(SimConfig(seed=78, workload_kind="sched")).trace_hash != a.trace_hash


def test_the_any_token_bug_is_caught() -> None:
    assert BUGS["sched-any-token"].workload == "sched"
    caught = [
        seed
        for seed in range(1, 21)
        if not run_seed(SimConfig(seed=seed, bug="sched-any-token")).ok
    ]
    assert len(caught) >= 10, caught
    # The bug, not the schedule, fails those seeds.
    assert run_seed(SimConfig(seed=caught[0], workload_kind="sched")).ok


def test_stale_reads_are_caught_in_the_sched_workload() -> None:
    """ReadIndex without the heartbeat round (read-without-quorum): a deposed leader serves
    a job document older than what a client was already told."""
    result = next(
        r
        for r in (
            run_seed(SimConfig(seed=s, bug="read-without-quorum", workload_kind="sched"))
            for s in range(1, 41)
        )
        if not r.ok
    )
    assert any("stale read" in v for v in result.violations), result.violations[:3]


def test_the_local_clock_bug_is_caught_by_the_state_hashes() -> None:
    """Replicas that apply the same log into different states: only the whole-state hash
    comparison can see it (the chained log hash is equal)."""
    result = next(
        r
        for r in (run_seed(SimConfig(seed=s, bug="sched-local-clock")) for s in range(1, 21))
        if not r.ok
    )
    assert "sched state divergence" in result.violations[0]
    assert not any("state machine safety" in v for v in result.violations)


def test_a_skewed_leader_never_moves_the_clock_back() -> None:
    """One node runs 8-10 s off: once leadership moves, stamps lag far behind the state
    machine's clock, which must hold (the app's SchedApp asserts it on every apply; the checks
    report a clock that went back) while leases and delays keep working."""
    lagging = 0
    for seed in range(1, 9):
        config = SimConfig(seed=seed, workload_kind="sched")
        config.sched_workload = dataclasses.replace(config.sched_workload, skew_ms=(8_000, 10_000))
        result = run_seed(config)
        assert result.ok, (seed, result.violations[:3])
        assert result.sched is not None
        lagging += result.sched.lagging_stamps
    assert lagging > 0


def test_cli_runs_the_sched_workload(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--workload", "sched", "--seeds", "2"]) == 0
    out = capsys.readouterr().out
    assert "violations 0" in out and "stale tokens refused" in out
    assert main(["--bug", "sched-any-token", "--seeds", "20"]) == 1
    out = capsys.readouterr().out
    assert "--workload sched --bug sched-any-token" in out


# -- the app on its own ---------------------------------------------------------------------


def _entry(kind: SchedAppKind, index: int, command: object, stamp_ms: int) -> Entry:
    data = kind.encode_proposal(SchedRequest(command), stamp_ms, 1)  # type: ignore[arg-type]
    return Entry(1, index, EntryKind.NORMAL, data)


def test_app_applies_envelopes_with_raft_indexes_and_restores_from_snapshots() -> None:
    kind = SchedAppKind()
    app = kind.restore(b"", 0)
    assert isinstance(app, SimSchedApp)
    submit = SubmitJobs((JobSpec(id="a", queue="q"),), idempotency_key="k")
    answers = [
        app.apply_entry(_entry(kind, 1, submit, 5_000)),
        app.apply_entry(_entry(kind, 2, Lease("q", "w"), 4_000)),
    ]  # a lagging stamp
    assert all(isinstance(a, AppAnswer) and a.ok for a in answers)
    lease = answers[1]
    assert lease is not None and isinstance(lease.value, Ok)
    assert lease.value.value["leases"][0]["token"] == 2  # the granting entry's index
    assert app.state.clock_ms == 5_000 and app.lagging_stamps == 1
    copy = kind.restore(app.snapshot(), 2)
    assert copy.state_hash() == app.state_hash() and copy.chain_hash == app.chain_hash
    for replica in (app, copy):
        replica.apply_entry(_entry(kind, 3, Tick(), 6_000))
    assert copy.state_hash() == app.state_hash()
    garbage = app.apply_entry(Entry(1, 4, EntryKind.NORMAL, b"\xc1"))
    assert garbage is not None and not garbage.ok  # skipped deterministically, not raised


# -- the client-side checks fail on bad histories ----------------------------------------------


def _checks() -> tuple[SchedChecks, list[str]]:
    seen: list[str] = []
    checks = SchedChecks()
    checks.bind(seen.append)
    return checks, seen


def test_checks_catch_a_stale_token_accepted() -> None:
    checks, seen = _checks()
    checks.granted("j", 10, 10)
    checks.granted("j", 20, 20)
    checks.token_op("complete", "j", 10, index=25, result=Ok({}), stale_attempt=True)
    assert any("stale token accepted" in v for v in seen)


def test_checks_catch_two_completions_and_bad_tokens() -> None:
    checks, seen = _checks()
    # The same token completed twice is a retry answered again, not a second completion.
    checks.token_op("complete", "j", 10, index=12, result=Ok({}), stale_attempt=False)
    checks.token_op("complete", "j", 10, index=13, result=Ok({}), stale_attempt=False)
    assert not seen
    checks.token_op("complete", "j", 20, index=22, result=Ok({}), stale_attempt=False)
    assert any("two completions" in v for v in seen)
    checks.granted("k", 7, 8)
    assert any("fencing" in v for v in seen)


def test_checks_count_refused_stale_tokens_without_violation() -> None:
    checks, seen = _checks()
    checks.granted("j", 10, 10)
    checks.granted("j", 20, 20)
    refusal = Refused(StaleToken("stale", {}))
    checks.token_op("complete", "j", 10, index=25, result=refusal, stale_attempt=True)
    checks.token_op("complete", "j", 20, index=26, result=Ok({}), stale_attempt=False)
    assert not seen
    assert checks.counters.stale_refused == 1 and checks.counters.jobs_completed == 1


# -- the replica-side scheduler rules fail on bad states ----------------------------------------


def _state_with_two_pending() -> SchedulerState:
    state = SchedulerState()
    jobs = (JobSpec(id="low", queue="q", priority=0), JobSpec(id="high", queue="q", priority=5))
    assert isinstance(state.apply(SubmitJobs(jobs), 1, 1_000), Ok)
    return state


def test_lease_order_violation_is_reported() -> None:
    state = _state_with_two_pending()
    wrong = Ok({"leases": [{"job_id": "low", "token": 2}]})
    texts = list(replica_violations(state, Lease("q", "w"), wrong))
    assert any("lease order: job high" in t for t in texts), texts


def test_a_grant_from_a_paused_queue_is_reported() -> None:
    state = _state_with_two_pending()
    assert isinstance(state.apply(ConfigureQueue("q", paused=True), 2, 1_000), Ok)
    texts = list(replica_violations(state, Lease("q", "w"), Ok({"leases": [{"job_id": "high"}]})))
    assert any("paused queue" in t for t in texts), texts


def _cron_state(policy: str) -> SchedulerState:
    state = SchedulerState()
    put = PutSchedule("c", "*/5 * * * * *", JobTemplate(queue="q"), misfire=policy)
    assert isinstance(state.apply(put, 1, 1_000), Ok)
    assert isinstance(state.apply(Tick(), 2, 12_000), Ok)  # fire times 5 s and 10 s are due
    return state


def test_cron_fire_all_missing_a_fire_is_reported() -> None:
    state = _cron_state("fire_all")
    assert {"c@5000", "c@10000"} <= set(state.jobs)
    checks, seen = _checks()
    checks.cron_policy = "fire_all"
    checks.on_sched_apply_put_for_test(created_ms=1_000, index=1)
    checks.check_cron(state)
    assert seen == []
    del state.jobs["c@5000"]  # as if the catch-up had skipped it
    checks.check_cron(state)
    assert any("fire_all missed fire times [5000]" in s for s in seen), seen
