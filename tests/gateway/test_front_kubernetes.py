"""The front on the Kubernetes backend (the chart's gateway.front=haproxy): the map is
keyed by the session table's key there (the resource name), an entry is added when the
gateway's watch sees the session Ready (or a call finds it so), and it goes when the
resource is Completed, Failed or deleted, as the watch sees it, a relist included. No API
server: the watch's index is fed by hand."""
from __future__ import annotations

from myservice_api import crd
from myservice_api.names import resource_name
from myservice_gateway.backends.base import SessionKey
from myservice_gateway.backends.kubernetes import KubernetesBackend
from myservice_gateway.backends.sessionindex import SessionIndex
from myservice_gateway.front import front as fronts

KEY = SessionKey(username="alice", session_id="s1")
NAME = resource_name("alice", "s1")


def resource(phase: str | None, ip: str = "10.1.2.3") -> dict:
    status = {"phase": phase, "podIP": ip, "port": 50051, "podName": f"{NAME}-pod"} if phase else {}
    return {"metadata": {"name": NAME}, "spec": {"user": "alice", "sessionId": "s1"}, "status": status}


def kube_front():
    backend = KubernetesBackend(namespace="ns", ready_timeout=10)
    index = SessionIndex(backend.sessions, on_finished=backend._forget, on_ready=backend._ready_seen)
    front = fronts.Front(haproxy="/usr/sbin/haproxy", host="127.0.0.1", port=0, jwt_key=b"k", issuer="i",
                         audience="a")
    front.observe(backend)
    return backend, index, front


def close(front: fronts.Front) -> None:
    front.haproxy.listener.close()
    fronts.shutil.rmtree(front.directory, ignore_errors=True)


def test_the_table_key_on_kubernetes_is_the_resource_name():
    assert KubernetesBackend.table_key(KEY) == NAME


def test_a_ready_sessions_entry_goes_when_its_resource_completes():
    backend, index, front = kube_front()
    try:
        index.upsert(NAME, resource(crd.Phase.READY.value))
        front._session_ready(KEY, "10.1.2.3:50051")  # a call found it Ready
        assert front.map.keeper.entries == {"alice/s1": "10.1.2.3:50051"}
        assert front.map.keeper._keys == {NAME: "alice/s1"}
        index.upsert(NAME, resource(crd.Phase.COMPLETED.value))  # Shutdown answered: the pod exits
        assert front.map.keeper.entries == {}
        assert NAME not in backend.sessions.ended  # the resource stays until its TTL: "has ended" from it
    finally:
        close(front)


def test_entries_go_when_the_pod_fails_or_the_resource_is_deleted():
    for end in ("failed", "deleted"):
        _, index, front = kube_front()
        try:
            index.upsert(NAME, resource(crd.Phase.READY.value))
            front._session_ready(KEY, "10.1.2.3:50051")
            if end == "failed":
                index.upsert(NAME, resource(crd.Phase.FAILED.value))
            else:
                index.delete(NAME)
            assert front.map.keeper.entries == {}, end
        finally:
            close(front)


def test_a_call_that_resumes_after_the_deletion_adds_no_entry():
    backend, index, front = kube_front()
    try:
        index.upsert(NAME, resource(crd.Phase.READY.value))
        index.delete(NAME)
        assert NAME in backend.sessions.ended
        front._session_ready(KEY, "10.1.2.3:50051")
        assert front.map.keeper.entries == {}
    finally:
        close(front)


def test_the_watch_adds_a_ready_sessions_entry_before_any_call():
    _, index, front = kube_front()
    try:
        index.upsert(NAME, resource(crd.Phase.STARTING.value))
        assert front.map.keeper.entries == {}
        index.upsert(NAME, resource(crd.Phase.READY.value))  # another replica's call, or the operator
        assert front.map.keeper.entries == {"alice/s1": "10.1.2.3:50051"}
    finally:
        close(front)


def test_a_relist_adds_the_ready_and_removes_the_ended():
    """A gateway (re)started, or its watch back after an expiry: the listing is the truth."""
    other = resource_name("alice", "s2")
    _, index, front = kube_front()
    try:
        index.upsert(NAME, resource(crd.Phase.READY.value))
        completed = resource(crd.Phase.COMPLETED.value)  # ended while the watch was away
        ready = {"metadata": {"name": other}, "spec": {"user": "alice", "sessionId": "s2"},
                 "status": {"phase": crd.Phase.READY.value, "podIP": "10.1.2.4", "port": 50051}}
        index.replace({NAME: completed, other: ready})
        assert front.map.keeper.entries == {"alice/s2": "10.1.2.4:50051"}
        index.replace({})  # both deleted while away
        assert front.map.keeper.entries == {}
    finally:
        close(front)


def test_a_removed_users_ready_session_gets_no_entry_from_the_watch():
    _, index, front = kube_front()
    try:
        front.user_exists = lambda username: username != "alice"
        index.upsert(NAME, resource(crd.Phase.READY.value))
        assert front.map.keeper.entries == {}
    finally:
        close(front)


async def test_an_ended_session_leaves_the_channel_of_the_pod_that_has_its_address_now():
    """A pod IP comes back for another session's pod while the ended session's resource stays
    (its TTL): the ended one's events (a relist tells them all again) must not close the
    channel the new session's calls use."""
    backend = KubernetesBackend(namespace="ns", ready_timeout=10)
    try:
        channel = backend._channel("10.1.2.3:50051", resource_name("bob", "s9"))  # bob's pod got alice's old address
        backend._forget(resource(crd.Phase.COMPLETED.value))  # alice's ended session, same address
        assert backend._channels.get("10.1.2.3:50051") is channel
        bobs = {"metadata": {"name": resource_name("bob", "s9")}, "spec": {"user": "bob", "sessionId": "s9"},
                "status": {"phase": crd.Phase.COMPLETED.value, "podIP": "10.1.2.3", "port": 50051}}
        backend._forget(bobs)  # bob's own end closes it
        assert "10.1.2.3:50051" not in backend._channels
    finally:
        await backend.close()
