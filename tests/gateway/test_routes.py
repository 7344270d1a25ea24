"""The Kubernetes routing choice: status of a MyServiceSession -> forward, wait or error."""
import grpc
import pytest

from myservice import crd
from myservice_gateway import routes


def mss(phase=None, reason=None, ip=None, port=None, pod="p", deleting=False):
    status = {k: v for k, v in dict(phase=phase, reason=reason, podIP=ip, port=port, podName=pod).items() if v}
    meta = {"name": "n", **({"deletionTimestamp": "2026-01-01T00:00:00Z"} if deleting else {})}
    return {"metadata": meta, "status": status}


def test_ready_routes_to_pod():
    assert routes.decide(mss("Ready", "PodReady", "10.244.0.7", 50051, "mss-a-pod"), "a") == routes.Route(
        address="10.244.0.7:50051", pod_name="mss-a-pod")


@pytest.mark.parametrize("resource", [None, mss(), mss("Pending"), mss("Starting", "PodCreated"),
                                      mss("Ready", "PodReady")])  # Ready without an IP yet: wait
def test_waits(resource):
    assert routes.decide(resource, "a").wait


@pytest.mark.parametrize("resource,code,message", [
    (mss("Pending", crd.REASON_CAPACITY), grpc.StatusCode.RESOURCE_EXHAUSTED, "all instances are busy"),
    (mss("Failed", crd.REASON_CAPACITY), grpc.StatusCode.RESOURCE_EXHAUSTED, "no available instances"),
    (mss("Failed", crd.REASON_IMAGE_PULL), grpc.StatusCode.RESOURCE_EXHAUSTED, "no available instances"),
    (mss("Failed", crd.REASON_UNSCHEDULABLE), grpc.StatusCode.RESOURCE_EXHAUSTED, "no available instances"),
    (mss("Failed", crd.REASON_READY_TIMEOUT), grpc.StatusCode.RESOURCE_EXHAUSTED, "no available instances"),
    (mss("Failed", crd.REASON_START_FAILED), grpc.StatusCode.RESOURCE_EXHAUSTED, "no available instances"),
    (mss("Failed", crd.REASON_POD_DELETED), grpc.StatusCode.UNAVAILABLE, "backend service unavailable"),
    (mss("Failed", crd.REASON_POD_FAILED), grpc.StatusCode.UNAVAILABLE, "backend service unavailable"),
    (mss("Failed", crd.REASON_EVICTED), grpc.StatusCode.UNAVAILABLE, "backend service unavailable"),
    (mss("Starting", deleting=True), grpc.StatusCode.UNAVAILABLE, "backend service unavailable"),
    (mss("Completed", crd.REASON_INSTANCE_EXITED), grpc.StatusCode.FAILED_PRECONDITION,
     "session a has ended; log in with a new session_id"),
])
def test_errors(resource, code, message):
    route = routes.decide(resource, "a")
    assert (route.error.code, route.error.message, route.address) == (code, message, None)


def test_session_resource():
    assert routes.session_resource(session_id="Sess 1", username="alice", role="admin", namespace="ns") == {
        "apiVersion": "myservice.io/v1alpha1",
        "kind": "MyServiceSession",
        "metadata": {"name": crd.resource_name("Sess 1"), "namespace": "ns",
                     "labels": {"app.kubernetes.io/name": "myservice"}},
        "spec": {"sessionId": "Sess 1", "user": "alice", "role": "admin"},
    }
