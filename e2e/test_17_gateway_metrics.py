"""Check 17: the gateway's /metrics (gateway.metricsPort), scraped from one gateway pod
through `kubectl port-forward pod/<gateway> 0:<metricsPort>` while a session is
started and ended through the same pod: logins, calls by method and code, the
session-start histogram and the live-sessions gauge move."""
from __future__ import annotations


import framework as fw

LOGINS_OK = ("myservice_gateway_logins_total", frozenset({("outcome", "OK")}))
ECHO_OK = ("myservice_gateway_calls_total", frozenset({("method", "MyServiceEcho"), ("code", "OK")}))
SHUTDOWN_OK = ("myservice_gateway_calls_total", frozenset({("method", "MyServiceShutdown"), ("code", "OK")}))
STARTS = ("myservice_gateway_session_start_seconds_count", frozenset({("pod", "cold")}))  # no warm pool here
LIVE = ("myservice_gateway_live_sessions", frozenset())


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
    with fw.PortForward(kube, f"pod/{pod}", port) as metrics, fw.PortForward(kube, f"pod/{pod}") as grpc_port, \
            fw.Client(grpc_port.address) as client:
        before = scrape(metrics.address)
        assert LIVE in before, sorted(before)[:10]

        session, reply = fw.start_session(client, sessions.add, prefix="gwmetrics", timeout=t(90))
        assert reply.pod_name == session.pod
        assert client.echo(session).pod_name == session.pod
        started = scrape(metrics.address)
        moved = {key: started.get(key, 0) - before.get(key, 0) for key in (LOGINS_OK, ECHO_OK, STARTS, LIVE)}
        fw.log(f"gateway metrics after Login and two Echos: {moved}")
        assert moved == {LOGINS_OK: 1, ECHO_OK: 2, STARTS: 1, LIVE: 1}, moved

        assert client.shutdown(session).pod_name == session.pod
        fw.wait_until("the live-sessions gauge back down",
                      lambda: scrape(metrics.address).get(LIVE) == before[LIVE],
                      installed.finished_ttl + t(30), 0.5)
        ended = scrape(metrics.address)
        assert ended.get(SHUTDOWN_OK, 0) - before.get(SHUTDOWN_OK, 0) == 1
        # the ended session's calls stay counted; no series names a session
        assert ended[ECHO_OK] - before.get(ECHO_OK, 0) == 2
        assert not [k for k in ended if any(session.session_id in v for _, v in k[1])]
