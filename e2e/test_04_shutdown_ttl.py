"""Check 4: after MyServiceShutdown the pod ends Succeeded, the resource goes Completed
(calls answer FAILED_PRECONDITION), and both are deleted once the TTL has passed;
calls still answer FAILED_PRECONDITION then, and no second pod appears."""
from __future__ import annotations

import datetime as dt
import time

import grpc

import framework as fw
from framework import contract, crd


def _ts(value: str) -> float:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def test_shutdown_completes_and_ttl_deletes(client, kube, sessions, installed, t):
    session, echo = fw.start_session(client, sessions.add, prefix="ttl")
    pod_uid = kube.get("pod", session.pod)["metadata"]["uid"]

    bye = client.shutdown(session)
    assert bye.pod_name == echo.pod_name == session.pod

    pod = fw.wait_until(f"pod {session.pod} Succeeded",
                        lambda: (p := kube.get("pod", session.pod)) and p["status"]["phase"] == "Succeeded" and p, t(60))
    assert pod["metadata"]["uid"] == pod_uid
    term = pod["status"]["containerStatuses"][0]["state"]["terminated"]
    assert term["exitCode"] == 0, term
    status = kube.wait_mss(session.resource, crd.Phase.COMPLETED, t(60), reason=crd.Reason.INSTANCE_EXITED)
    assert status["podName"] == session.pod and status.get("readyAt") and status.get("finishedAt"), status

    # a call on the ended session: FAILED_PRECONDITION, exact message
    err = fw.rpc_error(lambda: client.echo(session, timeout=20))
    fw.assert_status(err, grpc.StatusCode.FAILED_PRECONDITION, contract.session_ended(session.session_id))

    # gone after the TTL (not before): resource and pod (ownerReference GC)
    ttl = installed.finished_ttl
    finished = _ts(status["finishedAt"])
    assert kube.mss(session.resource) is not None, "the resource was deleted before the TTL"
    fw.wait_until(f"MyServiceSession {session.resource} deleted after its TTL of {ttl}s",
                  lambda: kube.mss(session.resource) is None, ttl + t(30), 0.5)
    gone_after = time.time() - finished
    fw.log(f"resource deleted {gone_after:.1f}s after finishedAt (TTL {ttl}s)")
    assert gone_after >= ttl - 1, f"deleted {gone_after:.1f}s after finishedAt, before the TTL of {ttl}s"
    # at its deadline, not at some later sweep (finishedAt has whole seconds: +1 s)
    assert gone_after <= ttl + t(5), f"deleted {gone_after:.1f}s after finishedAt, {ttl}s TTL: late"
    fw.wait_until(f"pod {session.pod} deleted with its resource", lambda: kube.get("pod", session.pod) is None, t(60))

    # after the TTL the resource is gone, and the session is still over: no second pod
    err = fw.rpc_error(lambda: client.echo(session, timeout=20))
    fw.assert_status(err, grpc.StatusCode.FAILED_PRECONDITION, contract.session_ended(session.session_id))
    assert kube.mss(session.resource) is None and kube.get("pod", session.pod) is None
