"""Status decisions: pod classification, transitions, admission, the periodic plan."""
import datetime

import pytest

from myservice_operator import statuses as st
from myservice_operator.settings import Settings

NOW = datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc)
T = "2026-01-02T03:04:05Z"
POD = "mss-a-0123456789-pod"


def pod(phase="Pending", conditions=(), containers=(), ip="", reason="", message="", deleting=False):
    status = {"phase": phase, "conditions": list(conditions), "containerStatuses": list(containers)}
    if ip:
        status["podIP"] = ip
    if reason:
        status["reason"] = reason
    if message:
        status["message"] = message
    metadata = {"name": POD}
    if deleting:
        metadata["deletionTimestamp"] = T
    return {"metadata": metadata, "status": status}


def waiting(reason, message=""):
    return {"name": "instance", "state": {"waiting": {"reason": reason, "message": message}}}


def terminated(code, reason=""):
    return {"name": "instance", "state": {"terminated": {"exitCode": code, "reason": reason}}}


READY = {"type": "Ready", "status": "True"}
UNSCHEDULABLE = {"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                 "message": "0/1 nodes are available: 1 Insufficient cpu."}


# --- timestamps ---------------------------------------------------------------

def test_timestamps_round_trip():
    assert st.timestamp(NOW) == T
    assert st.parse_timestamp(T) == NOW
    assert st.parse_timestamp("2026-01-02T03:04:05.5+00:00") == NOW + datetime.timedelta(seconds=0.5)


# --- observe_pod --------------------------------------------------------------

@pytest.mark.parametrize("given,expected", [
    (None, st.PodState("missing", message="pod not found")),
    (pod("Pending"), st.PodState("starting", name=POD)),
    (pod("Running", ip="10.0.0.7"), st.PodState("starting", name=POD)),
    (pod("Running", conditions=[READY]), st.PodState("starting", name=POD)),
    (pod("Running", conditions=[READY], ip="10.0.0.7"), st.PodState("ready", name=POD, ip="10.0.0.7")),
    (pod("Running", conditions=[READY], ip="10.0.0.7", deleting=True),
     st.PodState("missing", name=POD, message=f"pod {POD} is being deleted")),
    (pod("Succeeded", containers=[terminated(0, "Completed")]),
     st.PodState("succeeded", name=POD, message="container instance exited with code 0 (Completed)")),
    (pod("Succeeded", deleting=True), st.PodState("succeeded", name=POD, message="instance exited")),
    (pod("Failed", containers=[terminated(3, "Error")]),
     st.PodState("failed", name=POD, reason="PodFailed", message="container instance exited with code 3 (Error)")),
    (pod("Failed", reason="Evicted", message="The node was low on resource: memory."),
     st.PodState("failed", name=POD, reason="Evicted", message="The node was low on resource: memory.")),
    (pod("Failed", conditions=[{"type": "DisruptionTarget", "status": "True",
                                "reason": "PreemptionByScheduler", "message": "preempted"}]),
     st.PodState("failed", name=POD, reason="Evicted", message="preempted")),
    (pod("Pending", conditions=[UNSCHEDULABLE]),
     st.PodState("broken", name=POD, reason="Unschedulable", message="0/1 nodes are available: 1 Insufficient cpu.")),
    (pod("Pending", containers=[waiting("ErrImageNeverPull", "image not present")]),
     st.PodState("broken", name=POD, reason="ImagePullFailed", message="ErrImageNeverPull: image not present")),
    (pod("Pending", containers=[waiting("ImagePullBackOff")]),
     st.PodState("broken", name=POD, reason="ImagePullFailed", message="ImagePullBackOff: ImagePullBackOff")),
    (pod("Pending", containers=[waiting("CreateContainerConfigError", "secret missing")]),
     st.PodState("broken", name=POD, reason="StartFailed", message="CreateContainerConfigError: secret missing")),
    (pod("Pending", containers=[waiting("ContainerCreating")]), st.PodState("starting", name=POD)),
])
def test_observe_pod(given, expected):
    assert st.observe_pod(given) == expected


# --- transition ---------------------------------------------------------------

STARTING = {"phase": "Starting", "podName": POD, "startedAt": "2026-01-02T03:00:00Z"}
READY_STATUS = {"phase": "Ready", "podName": POD, "podIP": "10.0.0.7", "port": 50051,
                "readyAt": "2026-01-02T03:01:00Z"}


def tr(status, state):
    return st.transition(status, state, port=50051, now=NOW)


def test_starting_to_ready():
    assert tr(STARTING, st.PodState("ready", name=POD, ip="10.0.0.7")) == {
        "phase": "Ready", "reason": "PodReady", "message": f"pod {POD} ready at 10.0.0.7:50051",
        "podName": POD, "podIP": "10.0.0.7", "port": 50051, "readyAt": T}


def test_pending_with_a_found_ready_pod_goes_ready_and_records_start():
    assert tr({}, st.PodState("ready", name=POD, ip="10.0.0.7")) == {
        "phase": "Ready", "reason": "PodReady", "message": f"pod {POD} ready at 10.0.0.7:50051",
        "podName": POD, "podIP": "10.0.0.7", "port": 50051, "readyAt": T, "startedAt": T}


def test_pending_with_a_found_pod_goes_starting():
    assert tr({"phase": "Pending"}, st.PodState("starting", name=POD)) == {
        "phase": "Starting", "reason": "PodCreated", "message": f"pod {POD} created",
        "podName": POD, "startedAt": T}


def test_no_change_when_nothing_moved():
    assert tr(STARTING, st.PodState("starting", name=POD)) is None
    assert tr(READY_STATUS, st.PodState("ready", name=POD, ip="10.0.0.7")) is None
    assert tr(READY_STATUS, st.PodState("starting", name=POD)) is None
    assert tr({"phase": "Pending"}, st.PodState("missing")) is None


def test_ready_pod_ip_change_is_patched():
    assert tr(READY_STATUS, st.PodState("ready", name=POD, ip="10.0.0.8")) == {"podIP": "10.0.0.8"}


def test_ready_then_exit_zero_is_completed():
    assert tr(READY_STATUS, st.PodState("succeeded", name=POD, message="container instance exited with code 0")) == {
        "phase": "Completed", "reason": "InstanceExited",
        "message": "container instance exited with code 0", "finishedAt": T}


@pytest.mark.parametrize("reason", ["PodFailed", "Evicted"])
def test_ready_then_pod_failure_keeps_its_reason(reason):
    assert tr(READY_STATUS, st.PodState("failed", name=POD, reason=reason, message="m")) == {
        "phase": "Failed", "reason": reason, "message": "m", "finishedAt": T}


def test_ready_then_pod_gone_is_pod_deleted():
    assert tr(READY_STATUS, st.PodState("missing", message="pod not found")) == {
        "phase": "Failed", "reason": "PodDeleted", "message": f"pod {POD} was deleted", "finishedAt": T}
    assert tr(READY_STATUS, st.PodState("missing", name=POD, message=f"pod {POD} is being deleted")) == {
        "phase": "Failed", "reason": "PodDeleted", "message": f"pod {POD} is being deleted", "finishedAt": T}


# --- idle timeout and maximum lifetime ------------------------------------------

def ended_pod(message, code=0, phase="Succeeded", reason="", status_message="", deadline=None):
    """A finished instance pod as the API returns it (kubelet's fields included)."""
    container = {"name": "instance", "ready": False, "restartCount": 0, "image": "myservice-service:dev",
                 "state": {"terminated": {"exitCode": code, "reason": "Completed" if code == 0 else "Error",
                                          "startedAt": "2026-01-02T03:00:00Z", "finishedAt": T,
                                          "containerID": "containerd://abc"}}}
    if message is not None:
        container["state"]["terminated"]["message"] = message
    status = {"phase": phase, "podIP": "10.0.0.7", "startTime": "2026-01-02T02:59:59Z",
              "conditions": [{"type": "Ready", "status": "False", "reason": "PodCompleted"}],
              "containerStatuses": [container]}
    if reason:
        status["reason"] = reason
    if status_message:
        status["message"] = status_message
    spec = {"restartPolicy": "Never"}
    if deadline is not None:
        spec["activeDeadlineSeconds"] = deadline
    return {"metadata": {"name": POD, "uid": "pod-uid"}, "spec": spec, "status": status}


@pytest.mark.parametrize("message,reason,text", [
    ("IdleTimeout: no call for 900s", "IdleTimeout", "no call for 900s"),
    ("LifetimeExceeded: session reached its maximum lifetime of 86400s", "LifetimeExceeded",
     "session reached its maximum lifetime of 86400s"),
])
def test_an_instance_ended_by_a_limit_says_so_in_its_termination_message(message, reason, text):
    assert st.observe_pod(ended_pod(message)) == st.PodState("limit", name=POD, reason=reason, message=text)
    assert tr(READY_STATUS, st.observe_pod(ended_pod(message))) == {
        "phase": "Completed", "reason": reason, "message": text, "finishedAt": T}


@pytest.mark.parametrize("message", [None, "", "goodbye", "IdleTimeoutish", "idletimeout: no call for 900s"])
def test_other_exits_stay_instance_exited(message):
    assert st.observe_pod(ended_pod(message)) == st.PodState(
        "succeeded", name=POD, message="container instance exited with code 0 (Completed)")
    assert tr(READY_STATUS, st.observe_pod(ended_pod(message)))["reason"] == "InstanceExited"


def test_a_limit_message_on_a_failed_pod_is_still_a_failure():
    pod = ended_pod("IdleTimeout: no call for 900s", code=1, phase="Failed")
    assert st.observe_pod(pod) == st.PodState(
        "failed", name=POD, reason="PodFailed", message="container instance exited with code 1 (Error)")


def test_the_active_deadline_backstop_is_lifetime_exceeded_not_a_failure():
    pod = ended_pod(None, code=137, phase="Failed", reason="DeadlineExceeded",
                    status_message="Pod was active on the node longer than the specified deadline", deadline=86460)
    state = st.observe_pod(pod)
    assert state == st.PodState("limit", name=POD, reason="LifetimeExceeded", message=(
        "pod stopped at its activeDeadlineSeconds (86460s): "
        "Pod was active on the node longer than the specified deadline"))
    patch = tr(READY_STATUS, state)
    assert patch == {"phase": "Completed", "reason": "LifetimeExceeded", "message": state.message,
                     "finishedAt": T}
    assert st.event_type(patch) == "Normal"
    assert st.releases_pod(patch, state) is False


def test_a_limit_reached_before_ready_was_recorded_completes_the_session():
    state = st.observe_pod(ended_pod("IdleTimeout: no call for 5s"))
    assert tr(STARTING, state) == {"phase": "Completed", "reason": "IdleTimeout", "message": "no call for 5s",
                                   "finishedAt": T}


def test_failures_before_ready_are_start_failures():
    assert tr(STARTING, st.PodState("missing", message="pod not found")) == {
        "phase": "Failed", "reason": "StartFailed",
        "message": f"before it became ready: pod {POD} was deleted", "finishedAt": T}
    assert tr(STARTING, st.PodState("failed", name=POD, reason="PodFailed", message="exit 1")) == {
        "phase": "Failed", "reason": "StartFailed", "message": "PodFailed: exit 1", "finishedAt": T}
    assert tr(STARTING, st.PodState("succeeded", name=POD, message="exit 0")) == {
        "phase": "Failed", "reason": "StartFailed",
        "message": "instance exited before it became ready: exit 0", "finishedAt": T}


@pytest.mark.parametrize("reason", ["Unschedulable", "ImagePullFailed", "StartFailed"])
def test_broken_pod_fails_the_session_with_its_reason(reason):
    assert tr(STARTING, st.PodState("broken", name=POD, reason=reason, message="why")) == {
        "phase": "Failed", "reason": reason, "message": "why", "finishedAt": T}
    assert tr(READY_STATUS, st.PodState("broken", name=POD, reason=reason, message="why")) is None


@pytest.mark.parametrize("phase", ["Completed", "Failed"])
@pytest.mark.parametrize("kind", ["missing", "starting", "ready", "succeeded", "failed", "broken", "limit"])
def test_terminal_phases_are_final(phase, kind):
    assert tr({"phase": phase}, st.PodState(kind, name=POD, ip="1.2.3.4", reason="PodFailed")) is None


def test_unknown_pod_state_is_an_error():
    with pytest.raises(ValueError, match="unknown pod state 'weird'"):
        tr(STARTING, st.PodState("weird"))


# --- status builders and event types ------------------------------------------

def test_status_builders():
    assert st.pending_status() == {"phase": "Pending", "reason": "CapacityExceeded",
                                   "message": "all instances are busy"}
    assert st.starting_status(POD, NOW) == {"phase": "Starting", "reason": "PodCreated",
                                            "message": f"pod {POD} created", "podName": POD, "startedAt": T}
    assert st.rejected_status("exceeded quota", NOW) == {
        "phase": "Failed", "reason": "StartFailed", "message": "pod rejected: exceeded quota", "finishedAt": T}
    assert st.expired_status(120, NOW) == {
        "phase": "Failed", "reason": "CapacityExceeded",
        "message": "no instance freed within 120s: all instances are busy", "finishedAt": T}
    assert st.timed_out_status(POD, 120, NOW) == {
        "phase": "Failed", "reason": "ReadyTimeout", "message": f"pod {POD} not ready within 120s",
        "finishedAt": T}


def test_event_types():
    assert st.event_type({"phase": "Failed"}) == "Warning"
    assert st.event_type({"phase": "Ready"}) == "Normal"
    assert st.event_type({"phase": "Completed"}) == "Normal"


# --- capacity -----------------------------------------------------------------

def test_live_pods_are_the_unfinished_ones():
    pods = [{"status": {"phase": p}} for p in ("Pending", "Running", "Unknown", "Succeeded", "Failed")]
    assert [st.is_live_pod(p) for p in pods] == [True, True, True, False, False]
    assert st.is_live_pod({}) is True


def session(name, created, phase=None, deleting=False):
    metadata = {"name": name, "creationTimestamp": created}
    if deleting:
        metadata["deletionTimestamp"] = T
    return {"metadata": metadata, "status": {"phase": phase} if phase else {}}


QUEUE = [
    session("c", "2026-01-01T00:00:03Z"),
    session("a", "2026-01-01T00:00:01Z", "Pending"),
    session("r", "2026-01-01T00:00:00Z", "Ready"),
    session("b", "2026-01-01T00:00:02Z", "Pending"),
    session("z", "2026-01-01T00:00:00Z", "Pending", deleting=True),
]


def test_no_slot_when_all_live():
    assert st.admissible("a", QUEUE, live_pods=2, max_sessions=2) is False
    assert st.admissible("a", QUEUE, live_pods=3, max_sessions=2) is False
    assert st.admissible("a", QUEUE, live_pods=0, max_sessions=0) is False


def test_free_slots_go_to_the_oldest_waiting_sessions_first():
    assert [st.admissible(n, QUEUE, live_pods=1, max_sessions=2) for n in "abc"] == [True, False, False]
    assert [st.admissible(n, QUEUE, live_pods=1, max_sessions=3) for n in "abc"] == [True, True, False]
    assert [st.admissible(n, QUEUE, live_pods=0, max_sessions=3) for n in "abc"] == [True, True, True]


def test_same_creation_time_orders_by_name():
    queue = [session("y", "2026-01-01T00:00:00Z"), session("x", "2026-01-01T00:00:00Z")]
    assert [st.admissible(n, queue, live_pods=0, max_sessions=1) for n in "xy"] == [True, False]


def test_a_session_missing_from_the_list_queues_last():
    assert st.admissible("new", QUEUE, live_pods=0, max_sessions=3) is False
    assert st.admissible("new", QUEUE, live_pods=0, max_sessions=4) is True


# --- plan ---------------------------------------------------------------------

SETTINGS = Settings(namespace="ns", ready_timeout_seconds=120, finished_ttl_seconds=300)
CREATED = NOW - datetime.timedelta(seconds=60)


def ago(seconds):
    return st.timestamp(NOW - datetime.timedelta(seconds=seconds))


@pytest.mark.parametrize("status,created,expected", [
    ({}, CREATED, "admit"),
    ({"phase": "Pending"}, NOW - datetime.timedelta(seconds=119), "admit"),
    ({"phase": "Pending"}, NOW - datetime.timedelta(seconds=120), "expire"),
    ({"phase": "Starting", "startedAt": ago(119)}, NOW - datetime.timedelta(seconds=500), "observe"),
    ({"phase": "Starting", "startedAt": ago(120)}, CREATED, "timeout"),
    ({"phase": "Starting"}, NOW - datetime.timedelta(seconds=120), "timeout"),
    ({"phase": "Ready", "startedAt": ago(1000)}, CREATED, "observe"),
    ({"phase": "Completed", "finishedAt": ago(299)}, CREATED, "wait"),
    ({"phase": "Completed", "finishedAt": ago(300)}, CREATED, "delete"),
    ({"phase": "Failed", "finishedAt": ago(10)}, CREATED, "wait"),
    ({"phase": "Failed"}, NOW - datetime.timedelta(seconds=301), "delete"),
])
def test_plan(status, created, expected):
    assert st.plan(status, created_at=created, now=NOW, settings=SETTINGS) == expected


def test_plan_with_zero_ttl_deletes_at_once():
    settings = Settings(namespace="ns", finished_ttl_seconds=0)
    assert st.plan({"phase": "Completed", "finishedAt": T}, created_at=CREATED, now=NOW,
                   settings=settings) == "delete"


def test_is_owned_by_the_session_uid():
    owned = {"metadata": {"ownerReferences": [{"kind": "MyServiceSession", "uid": "u1"}]}}
    assert st.is_owned_by(owned, "u1") is True
    assert st.is_owned_by(owned, "u2") is False
    assert st.is_owned_by({"metadata": {"ownerReferences": [{"kind": "ReplicaSet", "uid": "u1"}]}}, "u1") is False
    assert st.is_owned_by({"metadata": {}}, "u1") is False


@pytest.mark.parametrize("kind,expected", [
    ("broken", True), ("starting", True), ("ready", True),
    ("missing", False), ("succeeded", False), ("failed", False),
])
def test_a_failed_session_releases_a_pod_that_never_finished(kind, expected):
    assert st.releases_pod({"phase": "Failed"}, st.PodState(kind)) is expected


def test_only_failures_release_the_pod():
    assert st.releases_pod({"phase": "Ready"}, st.PodState("ready")) is False
    assert st.releases_pod({"phase": "Completed"}, st.PodState("succeeded")) is False
    assert st.releases_pod({"podIP": "1.2.3.4"}, st.PodState("ready")) is False
