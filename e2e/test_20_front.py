"""Check 20: the HAProxy front in the gateway pod (the chart's default front; here with
`helm upgrade --reuse-values --set gateway.replicas=2`, back after; issue 18, item 3). HAProxy runs in the
pod's front container, the Python gateway in its gateway container. Through a port-forward to the new
gateway pod: Login works; a session's calls are answered by its own pod; once Ready its
calls pass HAProxy alone (HAProxy's `instances` backend counts them, the Python gateway's
call counter does not move); bad tokens get the same code and text as from the Python
gateway (the contract's, which tests/gateway assert from both), answered by HAProxy itself; Shutdown through the front ends
the pod, and the session's next call is told "has ended" (its route gone with the pod).
The signing key is in no process's arguments or environment and not in the gateway's log.
Two gateway replicas run with the front, each with its own HAProxy and map, both filled
from the watch: the session's calls through the second one, the first included, go straight
to the pod, and after the Shutdown both send the session's calls to Python ("has ended").
Kubelet's gRPC probes pass HAProxy to the Python gateway's health service every few seconds:
the figures asserted exactly are those no probe touches (calls to instances, the Python
gateway's proxied calls)."""
from __future__ import annotations

import base64
import time

import grpc
import pytest

import framework as fw
from framework import contract, crd, pb

FRONT_METRICS_PORT = 9101
ECHO_OK = ("myservice_gateway_calls_total", frozenset({("method", "MyServiceEcho"), ("code", "OK")}))
TO_INSTANCES = ("haproxy_backend_http_requests_total", frozenset({("proxy", "instances")}))
TO_PYTHON = ("haproxy_backend_http_requests_total", frozenset({("proxy", "gateway")}))
AT_FRONT = ("haproxy_frontend_http_requests_total", frozenset({("proxy", "myservice")}))

# Run in the gateway container (python, stdin = the key): every process's command line,
# and whether the key shows in any process's arguments or environment.
PROC_SCRIPT = r"""
import os, sys
key = sys.stdin.read().strip().encode()
for pid in sorted((p for p in os.listdir("/proc") if p.isdigit()), key=int):
    if int(pid) == os.getpid():
        continue
    try:
        argv = open(f"/proc/{pid}/cmdline", "rb").read()
    except OSError:
        continue
    try:
        environ = open(f"/proc/{pid}/environ", "rb").read()
    except OSError:
        environ = None
    leak = any(k in blob for blob in (argv, environ or b"") for k in (key, key.hex().encode()))
    flag = "KEY" if leak else ("-" if environ is not None else "no-environ")
    print(pid, flag, argv.replace(b"\0", b" ").decode(errors="replace").strip())
"""


def _upgrade_front(kube: fw.Kube, release, front: str, replicas: int, t) -> None:
    argv = ["upgrade", release.name, str(fw.CHART), "--reuse-values", "--set", f"gateway.front={front}",
            "--set", f"gateway.frontMetricsPort={FRONT_METRICS_PORT}", "--set", f"gateway.replicas={replicas}",
            "--wait", "--timeout", "180s"]
    fw.log("$ helm -n " + kube.ns + " " + " ".join(argv))
    kube.helm(*argv, timeout=t(240))
    fw.wait_until(f"gateway Deployment with MYSERVICE_FRONT={front}",
                  lambda: kube.deployment_env(kube.gateway_deploy, "gateway").get("MYSERVICE_FRONT") == front, t(30))
    kube.wait_gateway_settled(t(180), replicas=replicas)


def _front_pods(kube: fw.Kube, count: int, timeout: float) -> list[str]:
    """The Ready gateway pods running with the front (old ones may still be terminating)."""
    def probe():
        pods = [p["metadata"]["name"] for p in kube.component_pods("gateway")
                if not p["metadata"].get("deletionTimestamp")
                and any(e.get("name") == "MYSERVICE_FRONT" and e.get("value") == "haproxy"
                        for e in p["spec"]["containers"][0].get("env", []))
                and all(c.get("ready") for c in (p.get("status") or {}).get("containerStatuses") or [{}])]
        return len(pods) == count and sorted(pods)
    return fw.wait_until(f"{count} Ready gateway pods with the front", probe, timeout)


def _refusals(client: fw.Client) -> list[tuple[grpc.StatusCode, str]]:
    """Calls the token and header rules refuse; none starts or names a session."""
    sid = "e2e-front-nosuch"
    cases = [((contract.AUTHORIZATION, "not-a-jwt"), (contract.SESSION_ID, sid)),
             ((contract.AUTHORIZATION, "Bearer a.b.c"), (contract.SESSION_ID, sid)),
             ((contract.AUTHORIZATION, "not-a-jwt"),)]
    out = []
    for metadata in cases:
        err = fw.rpc_error(lambda: client.stub.MyServiceEcho(pb.EchoRequest(value="x"), metadata=metadata, timeout=10))
        out.append((err.code(), err.details()))
    return out


@pytest.fixture
def front(kube, installed, gateway, t):
    """Two gateway replicas with the front; the release's front and replicas again after."""
    replicas = (kube.get("deployment", kube.gateway_deploy) or {}).get("spec", {}).get("replicas", 1)
    t0 = time.monotonic()
    try:
        _upgrade_front(kube, installed, "haproxy", 2, t)
        fw.log(f"2 gateways with the front Available in {time.monotonic() - t0:.1f}s")
        gateway.reset()  # its port-forward was to a replaced pod
        yield _front_pods(kube, 2, t(60))
    finally:
        _upgrade_front(kube, installed, "haproxy", replicas, t)  # later checks see the release as it was
        gateway.reset()


# The Python gateway's answers to _refusals' calls: the contract's (tests/gateway assert
# the same code and text from HAProxy and from Python for every token and header rule).
CONTRACT_REFUSALS = [(grpc.StatusCode.UNAUTHENTICATED, contract.INVALID_TOKEN)] * 2 + [
    (grpc.StatusCode.UNAUTHENTICATED, contract.MISSING_SESSION_ID)]


def _moved(before: dict, after: dict, *keys) -> dict:
    return {k: after.get(k, 0) - before.get(k, 0) for k in keys}


def _python_calls(figures: dict) -> float:
    """Every call the Python gateway proxied, whatever its method and code."""
    return sum(v for (name, _), v in figures.items() if name == "myservice_gateway_calls_total")


def test_the_haproxy_front_in_the_gateway_pod(front, kube, sessions, installed, t):
    pod, other = front
    with fw.PortForward(kube, f"pod/{pod}") as grpc_a, fw.PortForward(kube, f"pod/{pod}", 9090) as gw_a, \
            fw.PortForward(kube, f"pod/{pod}", FRONT_METRICS_PORT) as front_a, \
            fw.PortForward(kube, f"pod/{other}") as grpc_b, fw.PortForward(kube, f"pod/{other}", 9090) as gw_b, \
            fw.PortForward(kube, f"pod/{other}", FRONT_METRICS_PORT) as front_b, \
            fw.Client(grpc_a.address) as client, fw.Client(grpc_b.address) as client_b:
        def figures(gw=gw_a, haproxy=front_a) -> dict:
            return {**fw.scrape_metrics(gw.address, "myservice_gateway_calls_total"),
                    **fw.scrape_metrics(haproxy.address, "haproxy_")}

        # Login (Python, behind HAProxy) and the first call, which starts the pod (Python too)
        session, first = fw.start_session(client, sessions.add, prefix="front", timeout=t(90))
        assert (first.pod_name, first.server_session_id) == (session.pod, session.session_id)
        assert kube.mss_status(session.resource)["podName"] == session.pod
        time.sleep(1)  # the map entry is written over the runtime API as the first call resolves

        # Ready: HAProxy sends the calls straight to the pod; the Python gateway sees none
        before, before_b = figures(), figures(gw_b, front_b)
        replies = [client.echo(session, value=f"fast-{i}") for i in range(5)]
        assert {(r.pod_name, r.server_session_id) for r in replies} == {(session.pod, session.session_id)}
        after = figures()
        moved = _moved(before, after, TO_INSTANCES, ECHO_OK, AT_FRONT, TO_PYTHON)
        fw.log(f"5 Echos of a Ready session through the front of {pod}: {moved} (probes reach Python too)")
        assert (moved[TO_INSTANCES], moved[ECHO_OK], _python_calls(after) - _python_calls(before)) == (5, 0, 0), moved
        assert moved[AT_FRONT] >= 5

        # The token rules at the front: the Python gateway's codes and texts, answered by HAProxy
        before = after
        assert _refusals(client) == CONTRACT_REFUSALS
        after = figures()
        moved = _moved(before, after, TO_INSTANCES, AT_FRONT)
        assert (moved[TO_INSTANCES], _python_calls(after) - _python_calls(before)) == (0, 0), moved
        assert moved[AT_FRONT] >= 3, moved

        # The other replica: its own HAProxy and map, filled by its own watch, which saw the session
        # Ready: its calls, the first included, go straight to the pod.
        replies = [client_b.echo(session, value=f"b-{i}") for i in range(4)]
        assert {(r.pod_name, r.server_session_id) for r in replies} == {(session.pod, session.session_id)}
        after_b = figures(gw_b, front_b)
        moved_b = _moved(before_b, after_b, TO_INSTANCES, ECHO_OK)
        fw.log(f"4 Echos through {other}: {moved_b}")
        assert moved_b == {TO_INSTANCES: 4, ECHO_OK: 0}, moved_b
        assert _moved(after, figures(), TO_INSTANCES)[TO_INSTANCES] == 0  # none of them through the first

        # The key: in no process's arguments or environment of either container, not in their logs;
        # HAProxy runs in the front container
        secret = next(v["secret"]["secretName"] for v in kube.get("pod", pod)["spec"]["volumes"] if v["name"] == "jwt")
        key = base64.b64decode(kube.get("secret", secret)["data"]["key"]).decode()
        for container in ("gateway", "front"):
            processes = kube.kubectl("exec", "-i", pod, "-c", container, "--", "python", "-c", PROC_SCRIPT,
                                     input=key, timeout=t(30))
            fw.log(f"{container} container's processes:\n" + processes)
            assert any("haproxy" in line for line in processes.splitlines()) == (container == "front"), processes
            assert not [line for line in processes.splitlines() if " KEY " in f"{line} "], processes
            log = kube.kubectl("logs", pod, "-c", container, timeout=t(30))
            assert key not in log and key.encode().hex() not in log
        assert "front: haproxy" in kube.kubectl("logs", pod, "-c", "gateway", timeout=t(30))

        # Shutdown through the front ends the pod; the routes go with it on both replicas:
        # the session's next call is Python's "has ended" through either
        assert client.shutdown(session).pod_name == session.pod
        kube.wait_mss(session.resource, crd.Phase.COMPLETED, t(60))
        fw.wait_until(f"pod {session.pod} Succeeded",
                      lambda: (p := kube.get("pod", session.pod)) and p["status"]["phase"] == "Succeeded", t(60))
        for c in (client, client_b):
            def ended(c=c):
                err = fw.rpc_error(lambda: c.echo(session, timeout=10))
                return err.code() == grpc.StatusCode.FAILED_PRECONDITION and err
            err = fw.wait_until(f"the ended session's call through {c.address} told it has ended", ended, t(15))
            assert "has ended" in err.details(), err.details()
