"""Check 13: a session with no calls for the idle timeout ends by itself: its instance
exits 0 saying why, the pod ends Succeeded, the MyServiceSession goes Completed with
reason IdleTimeout (shown by `kubectl get mss -o wide`, and in an Event), and a further
call gets FAILED_PRECONDITION. The release runs with a 5 s idle timeout for this check
only (`helm upgrade --reuse-values`), and gets its value back afterwards."""
from __future__ import annotations

import datetime as dt
import time

import grpc
import pytest

import framework as fw
from framework import contract, crd

IDLE_SECONDS = 5
IDLE_ENV = "MYSERVICE_SESSION_IDLE_TIMEOUT_SECONDS"


def _upgrade_idle_timeout(kube: fw.Kube, release, seconds: str, t) -> None:
    """Set session.idleTimeoutSeconds, keeping every other value, and wait for the
    operator Deployment (rolled: the Lease ends with a new pod) to run with it."""
    argv = ["upgrade", release.name, str(fw.CHART), "--reuse-values",
            "--set", f"session.idleTimeoutSeconds={seconds}", "--wait", "--timeout", "240s"]
    fw.log("$ helm -n " + kube.ns + " " + " ".join(argv))
    kube.helm(*argv, timeout=t(300))
    fw.wait_until(f"operator Deployment with {IDLE_ENV}={seconds}",
                  lambda: kube.deployment_env(kube.operator_deploy, "operator").get(IDLE_ENV) == seconds, t(30))
    kube.wait_deployment(kube.operator_deploy, t(240))
    kube.wait_deployment(kube.gateway_deploy, t(240))


@pytest.fixture
def short_idle_timeout(kube, installed, t):
    previous = kube.deployment_env(kube.operator_deploy, "operator").get(IDLE_ENV) or "900"
    _upgrade_idle_timeout(kube, installed, str(IDLE_SECONDS), t)
    try:
        yield IDLE_SECONDS
    finally:
        # later checks run with the release's own value again
        _upgrade_idle_timeout(kube, installed, previous, t)


def _ts(value: str) -> float:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def test_an_idle_session_ends_with_reason_idle_timeout(short_idle_timeout, client, kube, sessions, t):
    session, echo = fw.start_session(client, sessions.add, prefix="idle")
    answered = time.time()
    assert echo.pod_name == session.pod
    pod = kube.get("pod", session.pod)
    env = {e["name"]: e.get("value") for e in pod["spec"]["containers"][0]["env"]}
    assert env[IDLE_ENV] == str(IDLE_SECONDS), env

    # silence: the instance ends itself, its pod Succeeded with the reason in its termination message
    pod = fw.wait_until(f"pod {session.pod} Succeeded",
                        lambda: (p := kube.get("pod", session.pod)) and p["status"]["phase"] == "Succeeded" and p,
                        t(IDLE_SECONDS + 60))
    term = pod["status"]["containerStatuses"][0]["state"]["terminated"]
    assert (term["exitCode"], term.get("message")) == (0, f"IdleTimeout: no call for {IDLE_SECONDS}s"), term
    idle_for = _ts(term["finishedAt"]) - answered
    fw.log(f"instance ended {idle_for:.1f}s after the Echo answer (idle timeout {IDLE_SECONDS}s)")
    # finishedAt has whole seconds: allow 1 s below the timeout
    assert IDLE_SECONDS - 1 <= idle_for < IDLE_SECONDS + t(30), idle_for

    status = kube.wait_mss(session.resource, crd.Phase.COMPLETED, t(60), reason=crd.Reason.IDLE_TIMEOUT)
    assert (status["message"], status["podName"]) == (f"no call for {IDLE_SECONDS}s", session.pod), status
    assert status.get("readyAt") and status.get("finishedAt"), status

    out = kube.kubectl("get", crd.SHORT_NAME, session.resource, "-o", "wide")
    print(out)
    header, row = out.splitlines()[:2]
    assert header.split()[-2:] == ["REASON", "SOURCE"] and row.split()[0] == session.resource, out
    assert "Completed" in row.split() and row.split()[-2:] == [crd.Reason.IDLE_TIMEOUT, "cold"], out

    def idle_event():
        items = kube.json("get", "events", "--field-selector",
                          f"involvedObject.kind={crd.KIND},involvedObject.name={session.resource}")["items"]
        return next((e for e in items if e.get("reason") == crd.Reason.IDLE_TIMEOUT), None)
    event = fw.wait_until(f"an Event {crd.Reason.IDLE_TIMEOUT} on {session.resource}", idle_event, t(30))
    assert (event["type"], event["message"]) == ("Normal", f"no call for {IDLE_SECONDS}s"), event

    err = fw.rpc_error(lambda: client.echo(session, timeout=20))
    fw.assert_status(err, grpc.StatusCode.FAILED_PRECONDITION, contract.session_ended(session.session_id))
    # the session has one instance for its life: no second pod
    assert [p["metadata"]["name"] for p in kube.session_pods(session.resource)] == [session.pod]
