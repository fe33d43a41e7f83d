"""GET /metrics: Prometheus text built at scrape time from three sources.

- The API's own series: HTTP requests by route template, method and status, and request
  latency by route (route templates, never raw paths, so the label set stays bounded).
- The runtime's `metrics_snapshot()` (api_runtime.RuntimeMetrics): Raft term, role,
  commit/applied/snapshot index, proposals by outcome and in flight, the fsync latency
  histogram, per-peer send queue bytes, drops and connection state, lease expirations, refused
  stamps, clock skew per peer.
- This replica's state: jobs by queue and state, active leases by queue, registered workers,
  schedules.
One registry per app (not prometheus_client's global one), so several nodes in one test
process never collide.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from .api_runtime import RuntimeLike, RuntimeMetrics

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
ROLES = ("leader", "follower", "candidate", "pre_candidate", "learner")
LATENCY_BUCKETS_S = (
    0.0005,
    0.001,
    0.002,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    10.0,
    60.0,
)


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=value)


def runtime_families(m: RuntimeMetrics) -> Iterator[Metric]:
    yield _gauge("raftsched_raft_term", "Current Raft term", m.term)
    role = GaugeMetricFamily(
        "raftsched_raft_role", "1 for this node's current role", labels=["role"]
    )
    current = m.role.lower().rsplit(".", 1)[-1]  # "leader", or an enum's "Role.LEADER"
    for name in ROLES:
        role.add_metric([name], 1.0 if current == name else 0.0)
    yield role
    yield _gauge("raftsched_raft_commit_index", "Highest log index known committed", m.commit_index)
    yield _gauge("raftsched_raft_applied_index", "Highest log index applied here", m.applied_index)
    yield _gauge("raftsched_raft_snapshot_index", "Index of the latest snapshot", m.snapshot_index)
    proposals = CounterMetricFamily(
        "raftsched_proposals", "Proposals by outcome", labels=["outcome"]
    )
    for outcome, count in sorted(m.proposals_total.items()):
        proposals.add_metric([outcome], count)
    yield proposals
    yield _gauge(
        "raftsched_proposals_in_flight",
        "Proposals waiting for commit and apply",
        m.proposals_in_flight,
    )
    h = m.fsync_seconds
    yield HistogramMetricFamily(
        "raftsched_fsync_seconds",
        "Latency of one WAL fsync (one group commit)",
        buckets=[*((str(le), float(n)) for le, n in h.buckets), ("+Inf", float(h.count))],
        sum_value=h.sum,
    )
    queue = GaugeMetricFamily(
        "raftsched_peer_queue_bytes", "Bytes queued to send per peer", labels=["peer"]
    )
    dropped = CounterMetricFamily(
        "raftsched_peer_dropped", "Messages dropped (queue full)", labels=["peer"]
    )
    connected = GaugeMetricFamily(
        "raftsched_peer_connected", "1 when connected to the peer", labels=["peer"]
    )
    skew = GaugeMetricFamily(
        "raftsched_clock_skew_ms", "Peer clock minus ours, estimated", labels=["peer"]
    )
    for peer, n in sorted(m.peer_queue_bytes.items()):
        queue.add_metric([str(peer)], n)
    for peer, n in sorted(m.peer_dropped_total.items()):
        dropped.add_metric([str(peer)], n)
    for peer, up in sorted(m.peer_connected.items()):
        connected.add_metric([str(peer)], 1.0 if up else 0.0)
    for peer, ms in sorted(m.clock_skew_ms.items()):
        skew.add_metric([str(peer)], ms)
    yield from (queue, dropped, connected, skew)
    yield CounterMetricFamily(
        "raftsched_lease_expirations",
        "Leases released by expiry (their own or their worker's)",
        value=m.lease_expirations_total,
    )
    yield CounterMetricFamily(
        "raftsched_stamps_refused",
        "Leader stamps the state machine refused",
        value=m.stamps_refused_total,
    )


class _NodeCollector(Collector):
    def __init__(self, runtime: RuntimeLike) -> None:
        self.runtime = runtime

    def collect(self) -> Iterator[Metric]:
        yield from runtime_families(self.runtime.metrics_snapshot())
        state = self.runtime.state
        jobs = GaugeMetricFamily(
            "raftsched_jobs", "Jobs on this replica by queue and state", labels=["queue", "state"]
        )
        leases = GaugeMetricFamily(
            "raftsched_leases", "Jobs leased now, by queue", labels=["queue"]
        )
        for name, counts in state.queue_counts().items():
            for job_state, count in sorted(counts.items()):
                jobs.add_metric([name, job_state], count)
            leases.add_metric([name], counts.get("leased", 0))
        yield from (jobs, leases)
        yield _gauge("raftsched_workers", "Registered workers", len(state.workers))
        yield _gauge("raftsched_schedules", "Cron schedules", len(state.schedules))


class ApiMetrics:
    def __init__(self, runtime: RuntimeLike) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.requests = Counter(
            "raftsched_http_requests",
            "HTTP requests by route and status",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "raftsched_http_request_seconds",
            "HTTP request latency",
            ["route"],
            registry=self.registry,
            buckets=LATENCY_BUCKETS_S,
        )
        self.registry.register(_NodeCollector(runtime))

        # The labelled children, looked up once each: `labels()` costs a lock and a few
        # dict operations per request. Bounded like the labels themselves (route templates
        # and methods of the route table, HTTP statuses).
        self._counters: dict[tuple[str, str, int], Counter] = {}
        self._histograms: dict[str, Histogram] = {}

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        key = (route, method, status)
        counter = self._counters.get(key)
        if counter is None:
            counter = self._counters[key] = self.requests.labels(route, method, str(status))
        counter.inc()
        histogram = self._histograms.get(route)
        if histogram is None:
            histogram = self._histograms[route] = self.latency.labels(route)
        histogram.observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
