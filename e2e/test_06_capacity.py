"""Check 6: at operator.maxSessions live pods a further session's call gets
RESOURCE_EXHAUSTED "all instances are busy" (resource Pending/CapacityExceeded, no pod),
and succeeds once a Shutdown frees a slot."""
from __future__ import annotations

import time

import grpc

import framework as fw
from framework import contract, crd
from conftest import wait_no_live_session_pods


def test_capacity_limit(client, kube, sessions, installed, t):
    cap = installed.max_sessions
    assert cap <= 4, f"maxSessions={cap}: the e2e values should keep capacity small"
    wait_no_live_session_pods(kube, t(90))
    full = [fw.start_session(client, sessions.add, prefix=f"cap{i}")[0] for i in range(cap)]
    live = [p for p in kube.session_pods() if p["status"]["phase"] not in ("Succeeded", "Failed")]
    assert len(live) == cap, [p["metadata"]["name"] for p in live]

    extra = sessions.add(client.login(prefix="cap-extra"))
    err = fw.rpc_error(lambda: client.echo(extra, timeout=t(60)))
    fw.assert_status(err, grpc.StatusCode.RESOURCE_EXHAUSTED, contract.ALL_INSTANCES_BUSY)
    status = kube.mss_status(extra.resource)
    assert (status.get("phase"), status.get("reason")) == (crd.Phase.PENDING, crd.Reason.CAPACITY), status
    assert kube.session_pods(extra.resource) == [], "a pod was created beyond the capacity"
    # still busy a moment later: it waits, it does not fail
    time.sleep(installed.settle_seconds)
    fw.assert_status(fw.rpc_error(lambda: client.echo(extra, timeout=20)),
                     grpc.StatusCode.RESOURCE_EXHAUSTED, contract.ALL_INSTANCES_BUSY)

    # free a slot: the waiting session gets it
    assert client.shutdown(full[0]).pod_name == full[0].pod
    t0 = time.monotonic()

    def call_succeeds():
        try:
            return client.echo(extra, timeout=t(60))  # waits while the pod starts
        except grpc.RpcError as e:
            if (e.code(), e.details()) == (grpc.StatusCode.RESOURCE_EXHAUSTED, contract.ALL_INSTANCES_BUSY):
                return None  # not yet: retry
            raise AssertionError(f"unexpected {e.code().name} {e.details()!r} while waiting for the freed slot")
    reply = fw.wait_until("the waiting session's call to succeed after a Shutdown freed a slot", call_succeeds,
                          t(120), interval=1)
    fw.log(f"waiting session served {time.monotonic() - t0:.1f}s after the slot was freed")
    assert reply.pod_name == extra.pod
    assert kube.mss_status(extra.resource)["phase"] == crd.Phase.READY
    live = [p for p in kube.session_pods() if p["status"]["phase"] not in ("Succeeded", "Failed")]
    assert len(live) <= cap, [p["metadata"]["name"] for p in live]
