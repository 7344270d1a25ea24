"""Check 8: restarting the active operator mid-session (a graceful delete: it releases
its Lease, the standby takes over) creates no second pod, and the session keeps working
on the same pod. Check 16 kills the active one instead."""
from __future__ import annotations

import time

import framework as fw
from framework import crd


def test_operator_restart_keeps_the_session(client, kube, sessions, installed, t):
    session, echo = fw.start_session(client, sessions.add, prefix="oprs")
    before = kube.session_pods(session.resource)
    assert [p["metadata"]["name"] for p in before] == [session.pod]
    uid = before[0]["metadata"]["uid"]

    old = [p["metadata"]["name"] for p in kube.component_pods("operator")]
    active = kube.active_operator_pod(t(60))
    assert active in old, (active, old)
    kube.kubectl("delete", "pod", active, "--wait=true", "--timeout=90s", timeout=120)
    fw.log(f"active operator pod {active} deleted (of {old})")
    # it released the Lease on its way out: another replica holds it
    successor = fw.wait_until("another replica holding the Lease",
                              lambda: (h := kube.operator_lease_holder()) not in ("", active) and h, t(30), 0.5)
    fw.log(f"operator pod {successor} took over")
    # routing does not need the operator: the session answers while it is away
    assert client.echo(session).pod_name == session.pod

    def new_operator_ready():
        pods = [p for p in kube.component_pods("operator") if p["metadata"]["name"] not in old]
        return pods and all({c["type"]: c["status"] for c in p["status"].get("conditions", [])}.get("Ready") == "True"
                            for p in pods) and pods
    new = fw.wait_until("a new operator pod Ready", new_operator_ready, t(180))
    assert len(new) == 1, [p["metadata"]["name"] for p in new]  # the replacement of the deleted one
    kube.wait_deployment(kube.operator_deploy, t(60))
    # let the new operator list, index and reconcile everything it finds
    time.sleep(installed.settle_seconds)

    after = kube.session_pods(session.resource)
    assert [(p["metadata"]["name"], p["metadata"]["uid"]) for p in after] == [(session.pod, uid)], \
        [(p["metadata"]["name"], p["metadata"]["uid"]) for p in after]
    status = kube.mss_status(session.resource)
    assert (status["phase"], status["podName"]) == (crd.Phase.READY, session.pod), status
    assert {client.echo(session).pod_name for _ in range(3)} == {session.pod}
    # the new operator does its job: a fresh session gets a pod
    other, reply = fw.start_session(client, sessions.add, prefix="oprs-new")
    assert reply.pod_name == other.pod
    assert [p["metadata"]["name"] for p in kube.session_pods(other.resource)] == [other.pod]
    for s in (session, other):
        client.shutdown(s)
