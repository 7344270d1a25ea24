"""Check 7: deleting a session's pod mid-session: the resource goes Failed/PodDeleted
and the client gets UNAVAILABLE "backend service unavailable"; no second pod is made."""
from __future__ import annotations

import time

import grpc

import framework as fw
from framework import contract, crd


def test_pod_deleted_mid_session(client, kube, sessions, installed, t):
    session, echo = fw.start_session(client, sessions.add, prefix="del")
    uid = kube.get("pod", session.pod)["metadata"]["uid"]
    kube.kubectl("delete", "pod", session.pod, "--wait=false")

    status = kube.wait_mss(session.resource, crd.Phase.FAILED, t(60), reason=crd.Reason.POD_DELETED)
    assert status.get("readyAt"), f"readyAt missing: {status}"
    assert not crd.is_start_failure(status["reason"])

    def failed_call():
        try:
            client.echo(session, timeout=20)
            return None  # the gateway's cache may lag the API by a moment
        except grpc.RpcError as e:
            return e
    err = fw.wait_until("the session's call to fail", failed_call, t(10), interval=0.5)
    fw.assert_status(err, grpc.StatusCode.UNAVAILABLE, contract.BACKEND_UNAVAILABLE)

    # the session stays Failed and never gets another pod
    fw.wait_until(f"pod {session.pod} gone", lambda: all(p["metadata"]["uid"] != uid for p in kube.session_pods(session.resource)) , t(60))
    time.sleep(installed.settle_seconds)
    assert kube.session_pods(session.resource) == [], "a replacement pod was created for a Failed session"
    assert kube.mss_status(session.resource)["phase"] == crd.Phase.FAILED
    fw.assert_status(fw.rpc_error(lambda: client.echo(session, timeout=20)),
                     grpc.StatusCode.UNAVAILABLE, contract.BACKEND_UNAVAILABLE)
