"""Check 17: the gateway's /metrics (gateway.metricsPort), scraped from one gateway pod
through `kubectl port-forward pod/<gateway> 0:<metricsPort>` while a session is
started and ended through the same pod: logins, calls by method and code, the
session-start histogram and the live-sessions gauge move. With the front (the chart's
default) a Ready session's calls pass HAProxy alone: they are counted by its exporter
(gateway.frontMetricsPort, backend `instances`), the session's first call by Python."""
from __future__ import annotations

import urllib.request

from myservice_gateway.liveness import LIVENESS_PATH

import framework as fw

LOGINS_OK = ("myservice_gateway_logins_total", frozenset({("outcome", "OK")}))
ECHO_OK = ("myservice_gateway_calls_total", frozenset({("method", "MyServiceEcho"), ("code", "OK")}))
SHUTDOWN_OK = ("myservice_gateway_calls_total", frozenset({("method", "MyServiceShutdown"), ("code", "OK")}))
STARTS = ("myservice_gateway_session_start_seconds_count", frozenset({("pod", "cold")}))  # no warm pool here
LIVE = ("myservice_gateway_live_sessions", frozenset())
TO_INSTANCES = ("haproxy_backend_http_requests_total", frozenset({("proxy", "instances")}))


def scrape(address: str) -> dict[tuple[str, frozenset], float]:
    return fw.scrape_metrics(address, "myservice_gateway_")


def test_gateway_metrics_move_as_a_session_starts_and_ends(kube, sessions, installed, t):
    port = int(installed.values.get("gateway", {}).get("metricsPort", 9090))
    deployment = kube.get("deployment", kube.gateway_deploy)
    annotations = deployment["spec"]["template"]["metadata"].get("annotations", {})
    assert (annotations.get("prometheus.io/scrape"), annotations.get("prometheus.io/port"),
            annotations.get("prometheus.io/path")) == ("true", str(port), "/metrics"), annotations
    pod = sorted(p["metadata"]["name"] for p in kube.component_pods("gateway")
                 if not p["metadata"].get("deletionTimestamp"))[0]
    gateway_values = installed.values.get("gateway", {})
    front = gateway_values.get("front", "haproxy") == "haproxy"
    front_port = int(gateway_values.get("frontMetricsPort", 9101)) if front else 0
    with fw.PortForward(kube, f"pod/{pod}", port) as metrics, fw.PortForward(kube, f"pod/{pod}") as grpc_port, \
            fw.PortForward(kube, f"pod/{pod}", front_port or port) as front_metrics, \
            fw.Client(grpc_port.address) as client:
        def figures() -> dict:
            out = scrape(metrics.address)
            if front:
                out.update(fw.scrape_metrics(front_metrics.address, "haproxy_backend_http_requests_total"))
            return out

        before = figures()
        assert LIVE in before, sorted(before)[:10]
        # Beside /metrics, the gateway container's liveness (the chart's probe behind the front).
        with urllib.request.urlopen(f"http://{metrics.address}{LIVENESS_PATH}", timeout=10) as reply:
            assert (reply.status, reply.read()) == (200, b"live\n")

        session, reply = fw.start_session(client, sessions.add, prefix="gwmetrics", timeout=t(90))
        assert reply.pod_name == session.pod
        assert client.echo(session).pod_name == session.pod
        started = figures()
        moved = {key: started.get(key, 0) - before.get(key, 0) for key in (LOGINS_OK, ECHO_OK, STARTS, LIVE,
                                                                           TO_INSTANCES)}
        fw.log(f"gateway metrics after Login and two Echos: {moved}")
        # The first Echo starts the pod (Python); the second is Python's or, once the session's
        # route is in HAProxy's map, HAProxy's alone: counted once either way.
        assert moved[ECHO_OK] >= 1 and moved[ECHO_OK] + moved[TO_INSTANCES] == 2, moved
        assert {k: moved[k] for k in (LOGINS_OK, STARTS, LIVE)} == {LOGINS_OK: 1, STARTS: 1, LIVE: 1}, moved

        assert client.shutdown(session).pod_name == session.pod
        fw.wait_until("the live-sessions gauge back down",
                      lambda: scrape(metrics.address).get(LIVE) == before[LIVE],
                      installed.finished_ttl + t(30), 0.5)
        ended = figures()
        assert (ended.get(SHUTDOWN_OK, 0) - before.get(SHUTDOWN_OK, 0)
                + ended.get(TO_INSTANCES, 0) - started.get(TO_INSTANCES, 0)) == 1
        # the ended session's calls stay counted; no series names a session
        assert ended[ECHO_OK] - before.get(ECHO_OK, 0) == moved[ECHO_OK]
        assert not [k for k in ended if any(session.session_id in v for _, v in k[1])]
