"""Check 15: the operator's /metrics, and what one session's life costs the real API server.

Scraped through `kubectl port-forward deploy/<operator> 0:<operator.metricsPort>`: the
phase gauges and the start histogram move as a session starts and ends, and the
operator's API requests over the session's whole life (Login -> Ready -> Shutdown ->
Completed -> TTL delete) are exactly the 8 writes of the design and no read; while the
session is Ready the operator makes no request at all.
"""
from __future__ import annotations

import time

import framework as fw
from framework import crd



def scrape(address: str) -> dict[tuple[str, frozenset], float]:
    return fw.scrape_metrics(address, "myservice_operator_")


def requests_by(samples: dict, leases: bool = False) -> dict[tuple[str, str, str], float]:
    """The operator's API requests by (verb, resource, code); without the Lease's (the HA
    election's fixed cost, whatever the sessions do: check 16) unless `leases`."""
    return {(d["verb"], d["resource"], d["code"]): v for (name, labels), v in samples.items()
            if name == "myservice_operator_api_requests_total" and (d := dict(labels))
            and (leases or d["resource"] != "leases")}


def delta(after: dict, before: dict) -> dict:
    return {k: v - before.get(k, 0) for k, v in after.items() if v - before.get(k, 0)}


def gauge(samples: dict, phase: str) -> float:
    return samples.get(("myservice_operator_sessions", frozenset({("phase", phase)})), 0.0)


def starts(samples: dict) -> float:
    return samples.get(("myservice_operator_session_start_seconds_count", frozenset({("pod", "cold")})), 0.0)


def test_operator_metrics_and_the_api_cost_of_one_session(client, kube, sessions, installed, t):
    port = int(installed.values["operator"].get("metricsPort", 9091))
    deployment = kube.get("deployment", kube.operator_deploy)
    annotations = deployment["spec"]["template"]["metadata"].get("annotations", {})
    assert (annotations.get("prometheus.io/scrape"), annotations.get("prometheus.io/port"),
            annotations.get("prometheus.io/path")) == ("true", str(port), "/metrics"), annotations
    # the active replica (the one holding the Lease): a standby's counters do not move
    with fw.PortForward(kube, f"pod/{kube.active_operator_pod(t(60))}", port) as forward:
        before = scrape(forward.address)
        assert ("myservice_operator_live_pods", frozenset()) in before, sorted(before)[:10]

        session = sessions.add(client.login(prefix="metrics"))
        assert client.echo(session, timeout=t(90)).pod_name == session.pod
        fw.wait_until("the Ready gauge to count the session",
                      lambda: gauge(scrape(forward.address), crd.Phase.READY) == gauge(before, crd.Phase.READY) + 1,
                      t(10), 0.5)
        ready = scrape(forward.address)
        assert starts(ready) == starts(before) + 1
        assert ready[("myservice_operator_live_pods", frozenset())] >= 1

        # A Ready session costs the API server nothing.
        time.sleep(installed.settle_seconds + 4)
        idle = scrape(forward.address)
        assert delta(requests_by(idle), requests_by(ready)) == {}, "requests while the session sat Ready"

        assert client.shutdown(session).pod_name == session.pod
        fw.wait_until("the session Completed", lambda: kube.mss_status(session.resource).get("phase")
                      == crd.Phase.COMPLETED, t(60), 0.5)
        fw.wait_until(f"the session deleted after its TTL ({installed.finished_ttl}s)",
                      lambda: kube.mss(session.resource) is None, installed.finished_ttl + t(30), 0.5)
        fw.wait_until("the Completed gauge back", lambda: gauge(scrape(forward.address), crd.Phase.COMPLETED)
                      == gauge(before, crd.Phase.COMPLETED), t(10), 0.5)
        after = scrape(forward.address)

    spent = delta(requests_by(after), requests_by(before))
    fw.log(f"operator API requests over one session's life: {spent}")
    assert spent == {
        ("create", "pods", "201"): 1,
        ("patch", "myservicesessions/status", "200"): 3,  # Starting, Ready, Completed
        ("create", "events", "201"): 3,
        ("delete", "myservicesessions", "200"): 1,        # the TTL
    }, spent
    assert gauge(after, crd.Phase.READY) == gauge(before, crd.Phase.READY)
    errors = {k: v for k, v in delta(after, before).items() if k[0] == "myservice_operator_reconcile_errors_total"}
    assert errors == {}, errors
