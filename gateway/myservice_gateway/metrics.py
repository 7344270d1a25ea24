"""The gateway's Prometheus metrics, served on MYSERVICE_METRICS_PORT (/metrics), beside
the gateway's liveness (/livez: liveness.py).

No label names a session, user or pod (cardinality): methods are the service's
known methods (anything else counts as "other"), codes are gRPC's. Each series
is bound once, so recording a call is a dict lookup and two increments."""
from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import grpc
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, make_wsgi_app

from myservice import contract
from myservice.v1 import myservice_pb2
from myservice_api.crd import PodSource

from .liveness import LIVENESS_PATH

KNOWN_METHODS = frozenset(f"/{contract.SERVICE}/{m.name}"
                          for m in myservice_pb2.DESCRIPTOR.services_by_name["MyService"].methods)
OTHER_METHOD = "other"

# Proxied calls last from ~1 ms (an Echo) to the stream's life; first calls wait
# from well under 1 ms (a warm pool member's claim) to the ready timeout (a pod start).
CALL_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
START_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 1.5, 2, 3, 5, 10, 20, 30, 60, 120)


def method_label(method: str) -> str:
    """'MyServiceEcho' for a known method, else 'other' (callers choose method names)."""
    return method.rsplit("/", 1)[-1] if method in KNOWN_METHODS else OTHER_METHOD


class GatewayMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.calls = Counter("myservice_gateway_calls", "Proxied calls, by method and gRPC status code.",
                             ["method", "code"], registry=self.registry)
        self.call_seconds = Histogram("myservice_gateway_call_duration_seconds",
                                      "Duration of proxied calls, by method (streams: their whole life).",
                                      ["method"], buckets=CALL_BUCKETS, registry=self.registry)
        self.logins = Counter("myservice_gateway_logins", "Login calls, by outcome (a gRPC code name, or OK).",
                              ["outcome"], registry=self.registry)
        # `pod`: how the instance was had, "warm" (a ready pool member: the wait is
        # the claim) or "cold" (waited for a start); the operator's histogram says the same.
        self.session_start = Histogram("myservice_gateway_session_start_seconds",
                                       "How long a new session's first call waited for its instance (warm: "
                                       "taken from the pool; cold: waited for it to start).",
                                       ["pod"], buckets=START_BUCKETS, registry=self.registry)
        self._session_start_series = {source: self.session_start.labels(source.value) for source in PodSource}
        self.warm_idle = Gauge("myservice_gateway_warm_pool_idle",
                               "Local: idle pool instances, started and ready for a new session.",
                               registry=self.registry)
        self.live_sessions = Gauge("myservice_gateway_live_sessions",
                                   "Sessions holding an instance (local) or a slot (Kubernetes), as this "
                                   "gateway sees them.", registry=self.registry)
        self._call_series: dict[tuple[str, grpc.StatusCode], Callable[[], None]] = {}
        self._seconds_series: dict[str, Histogram] = {}

    def observe_live_sessions(self, count: Callable[[], int]) -> None:
        self.live_sessions.set_function(count)

    def observe_warm_idle(self, count: Callable[[], int]) -> None:
        self.warm_idle.set_function(count)

    def session_started(self, seconds: float, source: PodSource) -> None:
        """A first call waited `seconds` for an instance had from `source` (label pod: warm or cold)."""
        self._session_start_series[source].observe(seconds)

    def call_done(self, method: str, code: grpc.StatusCode, started: float) -> None:
        key = (method, code)
        increment = self._call_series.get(key)
        if increment is None:
            increment = self._call_series[key] = self.calls.labels(method_label(method), code.name).inc
        increment()
        seconds = self._seconds_series.get(method)
        if seconds is None:
            seconds = self._seconds_series[method] = self.call_seconds.labels(method_label(method))
        seconds.observe(time.monotonic() - started)

    def login_done(self, code: grpc.StatusCode) -> None:
        self.logins.labels(code.name).inc()

    def serve(self, host: str, port: int, live: Callable[[], tuple[bool, str]]) -> MetricsServer:
        """Serve /metrics (prometheus_client's WSGI app) and /livez (`live`: liveness.py)
        on a thread of their own: a scrape never waits for the event loop; /livez asks it."""
        app = _with_liveness(make_wsgi_app(self.registry), live)
        try:
            family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]  # IPv4 or IPv6 host
            server_class = type("MetricsHttpServer", (_Server,), {"address_family": family})
            httpd = make_server(host, port, app, server_class=server_class, handler_class=_QuietHandler)
        except OSError as e:
            raise OSError(f"cannot serve metrics on {host}:{port}: {e.strerror}") from None
        thread = threading.Thread(target=httpd.serve_forever, name="metrics", daemon=True)
        thread.start()
        return MetricsServer(httpd, thread)


def _with_liveness(metrics_app, live: Callable[[], tuple[bool, str]]):
    def app(environ, start_response):
        if environ.get("PATH_INFO") != LIVENESS_PATH:
            return metrics_app(environ, start_response)
        ok, text = live()
        start_response("200 OK" if ok else "503 Service Unavailable", [("Content-Type", "text/plain")])
        return [text.encode() + b"\n"]
    return app


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True  # a slow scraper never holds the gateway's exit


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format, *args) -> None:  # a line per scrape and probe is noise
        pass


class MetricsServer:
    def __init__(self, httpd, thread) -> None:
        self._httpd, self._thread = httpd, thread

    @property
    def port(self) -> int:
        return self._httpd.server_address[1]

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
