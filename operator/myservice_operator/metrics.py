"""The operator's Prometheus metrics, served on MYSERVICE_OPERATOR_METRICS_PORT (/metrics).

No label names a session, user or pod (cardinality): sessions are counted by
phase, API requests by verb, resource and HTTP code, start latencies by how the
pod was obtained. The phase counts are read from kopf's index when scraped, so
nothing is updated per event for them.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from myservice_api.crd import PHASES

# Created -> Ready: ~1-2 s for a real pod (image present), up to the ready timeout.
START_BUCKETS = (0.1, 0.25, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10, 20, 30, 60, 120)


class _IndexGauges(Collector):
    """Sessions by phase and live pods, counted from the index at scrape time."""

    def __init__(self, sessions_in: Callable[[str], int], live_pods: Callable[[], int],
                 pool_members: Callable[[], list]) -> None:
        self._sessions_in = sessions_in
        self._live_pods = live_pods
        self._pool_members = pool_members

    def collect(self) -> Iterator[GaugeMetricFamily]:
        sessions = GaugeMetricFamily("myservice_operator_sessions",
                                     "MyServiceSessions in the watched namespace, by status.phase.",
                                     labels=["phase"])
        for phase in PHASES:
            sessions.add_metric([str(phase)], self._sessions_in(phase))
        yield sessions
        yield GaugeMetricFamily("myservice_operator_live_pods",
                                "Instance pods holding a slot (not Succeeded or Failed); at most MYSERVICE_MAX_SESSIONS.",
                                value=self._live_pods())
        pool = GaugeMetricFamily("myservice_operator_warm_pool_pods",
                                 "Warm pool pods (no session yet), by state: ready ones can be claimed.",
                                 labels=["state"])
        members = self._pool_members()
        ready = sum(1 for m in members if m.state.kind == "ready" and not m.deleting)
        pool.add_metric(["ready"], ready)
        pool.add_metric(["other"], len(members) - ready)
        yield pool


class OperatorMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.api_requests = Counter("myservice_operator_api_requests",
                                    "Kubernetes API requests made by the operator's reconciler (kopf's own "
                                    "watches not included), by verb, resource and HTTP status code.",
                                    ["verb", "resource", "code"], registry=self.registry)
        self.session_start = Histogram("myservice_operator_session_start_seconds",
                                       "From the MyServiceSession's creation to its Ready status write, by how "
                                       "the pod was obtained (pod: warm, claimed from the pool; cold, created for it).", ["pod"], buckets=START_BUCKETS,
                                       registry=self.registry)
        self.reconcile_errors = Counter("myservice_operator_reconcile_errors",
                                        "Reconciles that raised (retried later), by what triggered them.",
                                        ["trigger"], registry=self.registry)
        self.events_dropped = Counter("myservice_operator_events_dropped",
                                      "Kubernetes Events of status changes not posted because "
                                      "the backlog of Events waiting to be posted was full (best effort).",
                                      registry=self.registry)
        self._requests: dict[tuple[str, str, int], Callable[[], None]] = {}

    def watch_index(self, sessions_in: Callable[[str], int], live_pods: Callable[[], int],
                    pool_members: Callable[[], list] = list) -> None:
        """Report the index's counts at each scrape (called once, when the indexes exist)."""
        self.registry.register(_IndexGauges(sessions_in, live_pods, pool_members))

    def api_request(self, verb: str, resource: str, code: int) -> None:
        key = (verb, resource, code)
        increment = self._requests.get(key)
        if increment is None:
            increment = self._requests[key] = self.api_requests.labels(verb, resource, str(code)).inc
        increment()

    def serve(self, host: str, port: int):
        """Serve /metrics on a thread of its own (prometheus_client's HTTP server)."""
        try:
            httpd, _thread = start_http_server(port, addr=host, registry=self.registry)
        except OSError as e:
            raise OSError(f"cannot serve metrics on {host}:{port}: {e.strerror}") from None
        return httpd
