"""Pod classification: what an instance pod's state means for its session."""
import pytest

from myservice_operator import podstate as ps
from myservice_operator.podstate import PodState

from .podbodies import POD, READY, T, UNSCHEDULABLE, ended_pod, pod, terminated, waiting


@pytest.mark.parametrize("given,expected", [
    (None, PodState("missing", message="pod not found")),
    (pod("Pending"), PodState("starting", name=POD)),
    (pod("Running", ip="10.0.0.7"), PodState("starting", name=POD)),
    (pod("Running", conditions=[READY]), PodState("starting", name=POD)),
    (pod("Running", conditions=[READY], ip="10.0.0.7"), PodState("ready", name=POD, ip="10.0.0.7")),
    (pod("Running", conditions=[READY], ip="10.0.0.7", deleting=True),
     PodState("missing", name=POD, message=f"pod {POD} is being deleted")),
    (pod("Succeeded", containers=[terminated(0, "Completed")]),
     PodState("succeeded", name=POD, message="container instance exited with code 0 (Completed)")),
    (pod("Succeeded", deleting=True), PodState("succeeded", name=POD, message="instance exited")),
    (pod("Failed", containers=[terminated(3, "Error")]),
     PodState("failed", name=POD, reason="PodFailed", message="container instance exited with code 3 (Error)")),
    (pod("Failed", reason="Evicted", message="The node was low on resource: memory."),
     PodState("failed", name=POD, reason="Evicted", message="The node was low on resource: memory.")),
    (pod("Failed", conditions=[{"type": "DisruptionTarget", "status": "True",
                                "reason": "PreemptionByScheduler", "message": "preempted"}]),
     PodState("failed", name=POD, reason="Evicted", message="preempted")),
    (pod("Pending", conditions=[UNSCHEDULABLE]),
     PodState("broken", name=POD, reason="Unschedulable", message="0/1 nodes are available: 1 Insufficient cpu.")),
    (pod("Pending", containers=[waiting("ErrImageNeverPull", "image not present")]),
     PodState("broken", name=POD, reason="ImagePullFailed", message="ErrImageNeverPull: image not present")),
    (pod("Pending", containers=[waiting("ImagePullBackOff")]),
     PodState("broken", name=POD, reason="ImagePullFailed", message="ImagePullBackOff: ImagePullBackOff")),
    (pod("Pending", containers=[waiting("CreateContainerConfigError", "secret missing")]),
     PodState("broken", name=POD, reason="StartFailed", message="CreateContainerConfigError: secret missing")),
    (pod("Pending", containers=[waiting("ContainerCreating")]), PodState("starting", name=POD)),
])
def test_observe_pod(given, expected):
    assert ps.observe_pod(given) == expected


@pytest.mark.parametrize("message,reason,text", [
    ("IdleTimeout: no call for 900s", "IdleTimeout", "no call for 900s"),
    ("LifetimeExceeded: session reached its maximum lifetime of 86400s", "LifetimeExceeded",
     "session reached its maximum lifetime of 86400s"),
])
def test_an_instance_ended_by_a_limit_says_so_in_its_termination_message(message, reason, text):
    assert ps.observe_pod(ended_pod(message)) == PodState("limit", name=POD, reason=reason, message=text)


@pytest.mark.parametrize("message", [None, "", "goodbye", "IdleTimeoutish", "idletimeout: no call for 900s"])
def test_other_exits_stay_instance_exited(message):
    assert ps.observe_pod(ended_pod(message)) == PodState(
        "succeeded", name=POD, message="container instance exited with code 0 (Completed)")


def test_a_limit_message_on_a_failed_pod_is_still_a_failure():
    pod = ended_pod("IdleTimeout: no call for 900s", code=1, phase="Failed")
    assert ps.observe_pod(pod) == PodState(
        "failed", name=POD, reason="PodFailed", message="container instance exited with code 1 (Error)")


def test_the_active_deadline_backstop_is_a_lifetime_limit():
    pod = ended_pod(None, code=137, phase="Failed", reason="DeadlineExceeded",
                    status_message="Pod was active on the node longer than the specified deadline", deadline=86460)
    assert ps.observe_pod(pod) == PodState("limit", name=POD, reason="LifetimeExceeded", message=(
        "pod stopped at its activeDeadlineSeconds (86460s): "
        "Pod was active on the node longer than the specified deadline"))


def test_live_pods_are_the_unfinished_ones():
    pods = [{"status": {"phase": p}} for p in ("Pending", "Running", "Unknown", "Succeeded", "Failed")]
    assert [ps.is_live_pod(p) for p in pods] == [True, True, True, False, False]
    assert ps.is_live_pod({}) is True



def test_the_owner_is_the_session_uid():
    owned = {"metadata": {"ownerReferences": [{"kind": "MyServiceSession", "uid": "u1"}]}}
    assert ps.owner_uid(owned) == "u1"
    assert ps.owner_uid({"metadata": {"ownerReferences": [{"kind": "ReplicaSet", "uid": "u1"}]}}) == ""
    assert ps.owner_uid({"metadata": {}}) == ""
