"""The Kubernetes routing choice: status of a MyServiceSession -> forward, wait or error."""
import grpc
import pytest

from myservice_api import crd
from myservice_api.names import resource_name
from myservice_gateway.backends import routes
from myservice_gateway.backends.base import SessionKey, SessionOwner

A = SessionKey("alice", "a")


def mss(phase=None, reason=None, ip=None, port=None, pod="p", deleting=False, user="alice"):
    status = {k: v for k, v in dict(phase=phase, reason=reason, podIP=ip, port=port, podName=pod).items() if v}
    meta = {"name": "n", **({"deletionTimestamp": "2026-01-01T00:00:00Z"} if deleting else {})}
    return {"metadata": meta, "spec": {"sessionId": "a", "user": user}, "status": status}


def test_ready_routes_to_pod():
    assert routes.decide(mss("Ready", "PodReady", "10.244.0.7", 50051, "mss-a-pod"), A) == routes.Route(
        address="10.244.0.7:50051", pod_name="mss-a-pod")


@pytest.mark.parametrize("resource", [None, mss(), mss("Pending"), mss("Starting", "PodCreated"),
                                      mss("Ready", "PodReady")])  # Ready without an IP yet: wait
def test_waits(resource):
    assert routes.decide(resource, A) == routes.WAIT


@pytest.mark.parametrize("resource,code,message", [
    (mss("Pending", crd.Reason.CAPACITY), grpc.StatusCode.RESOURCE_EXHAUSTED, "all instances are busy"),
    (mss("Failed", crd.Reason.CAPACITY), grpc.StatusCode.RESOURCE_EXHAUSTED, "no available instances"),
    (mss("Failed", crd.Reason.IMAGE_PULL), grpc.StatusCode.RESOURCE_EXHAUSTED, "no available instances"),
    (mss("Failed", crd.Reason.UNSCHEDULABLE), grpc.StatusCode.RESOURCE_EXHAUSTED, "no available instances"),
    (mss("Failed", crd.Reason.READY_TIMEOUT), grpc.StatusCode.RESOURCE_EXHAUSTED, "no available instances"),
    (mss("Failed", crd.Reason.START_FAILED), grpc.StatusCode.RESOURCE_EXHAUSTED, "no available instances"),
    (mss("Failed", crd.Reason.POD_DELETED), grpc.StatusCode.UNAVAILABLE, "backend service unavailable"),
    (mss("Failed", crd.Reason.POD_FAILED), grpc.StatusCode.UNAVAILABLE, "backend service unavailable"),
    (mss("Failed", crd.Reason.EVICTED), grpc.StatusCode.UNAVAILABLE, "backend service unavailable"),
    (mss("Starting", deleting=True), grpc.StatusCode.UNAVAILABLE, "backend service unavailable"),
    (mss("Completed", crd.Reason.INSTANCE_EXITED), grpc.StatusCode.FAILED_PRECONDITION,
     "session a has ended; log in with a new session_id"),
])
def test_errors(resource, code, message):
    route = routes.decide(resource, A)
    assert (route.error.code, route.error.message, route.address) == (code, message, None)


@pytest.mark.parametrize("resource", [
    mss("Ready", "PodReady", "10.244.0.7", 50051, user="bob"),
    mss("Pending", crd.Reason.CAPACITY, user="bob"),
    mss("Ready", "PodReady", "10.244.0.7", 50051, user=None),
])
def test_a_resource_of_another_user_is_never_routed_to(resource):
    route = routes.decide(resource, A)
    assert (route.error.code, route.error.message, route.address) == (
        grpc.StatusCode.PERMISSION_DENIED, "session belongs to another user", None)


@pytest.mark.parametrize("resource,holds", [
    (None, False), (mss(), True), (mss("Pending", crd.Reason.CAPACITY), True), (mss("Ready", "PodReady"), True),
    (mss("Ready", deleting=True), False), (mss("Completed"), False), (mss("Failed", crd.Reason.POD_FAILED), False),
])
def test_holds_a_slot(resource, holds):
    assert routes.holds_a_slot(resource) is holds


def test_session_resource():
    assert routes.session_resource(SessionOwner("Sess 1", "alice", "admin"), namespace="ns") == {
        "apiVersion": "myservice.io/v1alpha1",
        "kind": "MyServiceSession",
        "metadata": {"name": resource_name("alice", "Sess 1"), "namespace": "ns",
                     "labels": {"app.kubernetes.io/name": "myservice"}},
        "spec": {"sessionId": "Sess 1", "user": "alice", "role": "admin"},
    }


@pytest.mark.parametrize("resource,source", [
    (None, crd.PodSource.COLD), (mss("Ready"), crd.PodSource.COLD),
    ({"status": {"podSource": "warm"}}, crd.PodSource.WARM), ({"status": {"podSource": "cold"}}, crd.PodSource.COLD),
    ({"status": {"podSource": "lukewarm"}}, crd.PodSource.COLD),  # unknown to this gateway: counted cold
])
def test_pod_source(resource, source):
    assert routes.pod_source(resource) is source
