"""The operator's writes (clients.Kube) on a real API server: the resourceVersion
preconditions it relies on hold (409 on a stale write), 404 and 409 mean what the
reconciler takes them to mean, and each request is counted with its code."""
from __future__ import annotations

import pytest

from myservice_api import crd
from myservice_operator import clients

from .helpers import create_session


@pytest.fixture
def counted() -> list[tuple[str, str, int]]:
    return []


@pytest.fixture
def kube_client(api_client, namespace, counted) -> clients.Kube:
    return clients.Kube(namespace, count=lambda *request: counted.append(request), api_client=api_client)


def test_a_status_patch_at_the_read_version_is_written(custom, namespace, kube_client, counted):
    session = create_session(custom, namespace, "alice", "s1")
    name, version = session["metadata"]["name"], session["metadata"]["resourceVersion"]
    written = kube_client.patch_session_status(name, version, {"phase": crd.Phase.STARTING.value,
                                                               "podName": "p"})
    assert written["status"] == {"phase": "Starting", "podName": "p"}
    assert written["metadata"]["resourceVersion"] != version
    assert written["spec"] == session["spec"]  # status only: spec untouched
    assert counted == [("patch", f"{crd.PLURAL}/status", 200)]


def test_a_status_patch_at_a_stale_version_conflicts(custom, namespace, kube_client, counted):
    session = create_session(custom, namespace, "alice", "s1")
    name, stale = session["metadata"]["name"], session["metadata"]["resourceVersion"]
    kube_client.patch_session_status(name, stale, {"phase": crd.Phase.STARTING.value})
    with pytest.raises(clients.Conflict):
        kube_client.patch_session_status(name, stale, {"phase": crd.Phase.READY.value})
    assert counted[-1] == ("patch", f"{crd.PLURAL}/status", 409)
    current = custom.get_namespaced_custom_object(crd.GROUP, crd.VERSION, namespace, crd.PLURAL, name)
    assert current["status"]["phase"] == "Starting"  # the stale write did not land


def test_a_status_patch_of_a_gone_session_conflicts(kube_client, counted):
    with pytest.raises(clients.Conflict):
        kube_client.patch_session_status("nobody", "1", {"phase": crd.Phase.READY.value})
    assert counted == [("patch", f"{crd.PLURAL}/status", 404)]


def test_list_and_delete_sessions(custom, namespace, kube_client):
    name = create_session(custom, namespace, "alice", "s1")["metadata"]["name"]
    assert [s["metadata"]["name"] for s in kube_client.list_sessions()] == [name]
    kube_client.delete_session(name)
    kube_client.delete_session(name)  # gone already: fine
    assert kube_client.list_sessions() == []


POD = {"apiVersion": "v1", "kind": "Pod",
       "metadata": {"name": "p1", "labels": {crd.LABEL_MANAGED_BY: crd.MANAGED_BY,
                                             crd.LABEL_COMPONENT: crd.COMPONENT_INSTANCE}},
       "spec": {"containers": [{"name": "instance", "image": "example.invalid/instance:1"}]}}


def test_a_pod_made_twice_is_made_once_and_a_stale_claim_conflicts(kube_client, counted):
    assert kube_client.create_pod(POD) is True
    assert kube_client.create_pod(POD) is False  # a replay: 409 is success
    pod = kube_client.list_instance_pods()[0]
    stale = pod["metadata"]["resourceVersion"]
    claimed = kube_client.claim_pod("p1", {"metadata": {"resourceVersion": stale, "labels": {"claimed": "a"}}})
    assert claimed["metadata"]["labels"]["claimed"] == "a"
    with pytest.raises(clients.Conflict):
        kube_client.claim_pod("p1", {"metadata": {"resourceVersion": stale, "labels": {"claimed": "b"}}})
    kube_client.delete_pod("p1")
    kube_client.delete_pod("p1")  # gone already: fine
    assert [c for _, _, c in counted] == [201, 409, 200, 200, 409, 200, 404]


def test_a_pod_the_api_refuses_is_rejected(kube_client):
    bad = {**POD, "metadata": {"name": "Not_A_Name"}}
    with pytest.raises(clients.PodRejected, match="Not_A_Name"):
        kube_client.create_pod(bad)
