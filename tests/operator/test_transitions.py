"""Status transitions: a session's next status from its pod's state, the builders, the Events."""
import datetime

import pytest

from myservice_operator import podstate as ps
from myservice_operator import transitions as st
from myservice_operator.podstate import PodState
from myservice_operator.times import parse_timestamp, timestamp

from .podbodies import NOW, POD, T, ended_pod


def test_timestamps_round_trip():
    assert timestamp(NOW) == T
    assert parse_timestamp(T) == NOW
    assert parse_timestamp("2026-01-02T03:04:05.5+00:00") == NOW + datetime.timedelta(seconds=0.5)


STARTING = {"phase": "Starting", "podName": POD, "startedAt": "2026-01-02T03:00:00Z"}
READY_STATUS = {"phase": "Ready", "podName": POD, "podIP": "10.0.0.7", "port": 50051,
                "readyAt": "2026-01-02T03:01:00Z"}


def tr(status, state):
    return st.transition(status, state, port=50051, now=NOW)


def test_starting_to_ready():
    assert tr(STARTING, PodState("ready", name=POD, ip="10.0.0.7")) == {
        "phase": "Ready", "reason": "PodReady", "message": f"pod {POD} ready at 10.0.0.7:50051",
        "podName": POD, "podIP": "10.0.0.7", "port": 50051, "readyAt": T}


def test_pending_with_a_found_ready_pod_goes_ready_and_records_start():
    assert tr({}, PodState("ready", name=POD, ip="10.0.0.7")) == {
        "phase": "Ready", "reason": "PodReady", "message": f"pod {POD} ready at 10.0.0.7:50051",
        "podName": POD, "podIP": "10.0.0.7", "port": 50051, "readyAt": T, "startedAt": T}


def test_pending_with_a_found_pod_goes_starting():
    assert tr({"phase": "Pending"}, PodState("starting", name=POD)) == {
        "phase": "Starting", "reason": "PodCreated", "message": f"pod {POD} created",
        "podName": POD, "podSource": "cold", "startedAt": T}


def test_no_change_when_nothing_moved():
    assert tr(STARTING, PodState("starting", name=POD)) is None
    assert tr(READY_STATUS, PodState("ready", name=POD, ip="10.0.0.7")) is None
    assert tr(READY_STATUS, PodState("starting", name=POD)) is None
    assert tr({"phase": "Pending"}, PodState("missing")) is None


def test_ready_pod_ip_change_is_patched():
    assert tr(READY_STATUS, PodState("ready", name=POD, ip="10.0.0.8")) == {"podIP": "10.0.0.8"}


def test_ready_then_exit_zero_is_completed():
    assert tr(READY_STATUS, PodState("succeeded", name=POD, message="container instance exited with code 0")) == {
        "phase": "Completed", "reason": "InstanceExited",
        "message": "container instance exited with code 0", "finishedAt": T}


@pytest.mark.parametrize("reason", ["PodFailed", "Evicted"])
def test_ready_then_pod_failure_keeps_its_reason(reason):
    assert tr(READY_STATUS, PodState("failed", name=POD, reason=reason, message="m")) == {
        "phase": "Failed", "reason": reason, "message": "m", "finishedAt": T}


def test_ready_then_pod_gone_is_pod_deleted():
    assert tr(READY_STATUS, PodState("missing", message="pod not found")) == {
        "phase": "Failed", "reason": "PodDeleted", "message": f"pod {POD} was deleted", "finishedAt": T}
    assert tr(READY_STATUS, PodState("missing", name=POD, message=f"pod {POD} is being deleted")) == {
        "phase": "Failed", "reason": "PodDeleted", "message": f"pod {POD} is being deleted", "finishedAt": T}



@pytest.mark.parametrize("message,reason,text", [
    ("IdleTimeout: no call for 900s", "IdleTimeout", "no call for 900s"),
    ("LifetimeExceeded: session reached its maximum lifetime of 86400s", "LifetimeExceeded",
     "session reached its maximum lifetime of 86400s"),
])
def test_a_session_ended_by_a_limit_completes_with_its_reason(message, reason, text):
    # observe_pod's part is tests/operator/test_podstate.py's
    assert tr(READY_STATUS, ps.observe_pod(ended_pod(message))) == {
        "phase": "Completed", "reason": reason, "message": text, "finishedAt": T}


@pytest.mark.parametrize("message", [None, "", "goodbye", "IdleTimeoutish", "idletimeout: no call for 900s"])
def test_other_exits_stay_instance_exited(message):
    assert ps.observe_pod(ended_pod(message)) == PodState(
        "succeeded", name=POD, message="container instance exited with code 0 (Completed)")
    assert tr(READY_STATUS, ps.observe_pod(ended_pod(message)))["reason"] == "InstanceExited"


def test_the_active_deadline_backstop_is_lifetime_exceeded_not_a_failure():
    pod = ended_pod(None, code=137, phase="Failed", reason="DeadlineExceeded",
                    status_message="Pod was active on the node longer than the specified deadline", deadline=86460)
    state = ps.observe_pod(pod)
    assert state == PodState("limit", name=POD, reason="LifetimeExceeded", message=(
        "pod stopped at its activeDeadlineSeconds (86460s): "
        "Pod was active on the node longer than the specified deadline"))
    patch = tr(READY_STATUS, state)
    assert patch == {"phase": "Completed", "reason": "LifetimeExceeded", "message": state.message,
                     "finishedAt": T}
    assert st.event_type(patch) == "Normal"
    assert st.releases_pod(patch, state) is False


def test_a_limit_reached_before_ready_was_recorded_completes_the_session():
    state = ps.observe_pod(ended_pod("IdleTimeout: no call for 5s"))
    assert tr(STARTING, state) == {"phase": "Completed", "reason": "IdleTimeout", "message": "no call for 5s",
                                   "finishedAt": T}


def test_failures_before_ready_are_start_failures():
    assert tr(STARTING, PodState("missing", message="pod not found")) == {
        "phase": "Failed", "reason": "StartFailed",
        "message": f"before it became ready: pod {POD} was deleted", "finishedAt": T}
    assert tr(STARTING, PodState("failed", name=POD, reason="PodFailed", message="exit 1")) == {
        "phase": "Failed", "reason": "StartFailed", "message": "PodFailed: exit 1", "finishedAt": T}
    assert tr(STARTING, PodState("succeeded", name=POD, message="exit 0")) == {
        "phase": "Failed", "reason": "StartFailed",
        "message": "instance exited before it became ready: exit 0", "finishedAt": T}


@pytest.mark.parametrize("reason", ["Unschedulable", "ImagePullFailed", "StartFailed"])
def test_broken_pod_fails_the_session_with_its_reason(reason):
    assert tr(STARTING, PodState("broken", name=POD, reason=reason, message="why")) == {
        "phase": "Failed", "reason": reason, "message": "why", "finishedAt": T}
    assert tr(READY_STATUS, PodState("broken", name=POD, reason=reason, message="why")) is None


@pytest.mark.parametrize("phase", ["Completed", "Failed"])
@pytest.mark.parametrize("kind", ["missing", "starting", "ready", "succeeded", "failed", "broken", "limit"])
def test_terminal_phases_are_final(phase, kind):
    assert tr({"phase": phase}, PodState(kind, name=POD, ip="1.2.3.4", reason="PodFailed")) is None


def test_unknown_pod_state_is_an_error():
    with pytest.raises(ValueError, match="unknown pod state 'weird'"):
        tr(STARTING, PodState("weird"))



# --- status builders and event types ------------------------------------------

def test_status_builders():
    assert st.pending_status() == {"phase": "Pending", "reason": "CapacityExceeded",
                                   "message": "all instances are busy"}
    assert st.starting_status(POD, NOW) == {"phase": "Starting", "reason": "PodCreated",
                                            "message": f"pod {POD} created", "podName": POD,
                                            "podSource": "cold", "startedAt": T}
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


@pytest.mark.parametrize("kind,expected", [
    ("broken", True), ("starting", True), ("ready", True),
    ("missing", False), ("succeeded", False), ("failed", False),
])
def test_a_failed_session_releases_a_pod_that_never_finished(kind, expected):
    assert st.releases_pod({"phase": "Failed"}, PodState(kind)) is expected


def test_only_failures_release_the_pod():
    assert st.releases_pod({"phase": "Ready"}, PodState("ready")) is False
    assert st.releases_pod({"phase": "Completed"}, PodState("succeeded")) is False
    assert st.releases_pod({"podIP": "1.2.3.4"}, PodState("ready")) is False

def test_a_claimed_pool_pod_makes_the_session_ready_at_once_and_warm():
    ready = PodState("ready", name="mss-pool-ab12", ip="10.0.0.9")
    assert st.claimed_status({}, ready, port=50051, now=NOW) == {
        "phase": "Ready", "reason": "PodReady",
        "message": "warm pool pod mss-pool-ab12 claimed, ready at 10.0.0.9:50051",
        "podName": "mss-pool-ab12", "podIP": "10.0.0.9", "port": 50051, "podSource": "warm",
        "readyAt": T, "startedAt": T}


def test_a_claimed_pool_pod_that_just_stopped_being_ready_starts_warm():
    starting = PodState("starting", name="mss-pool-ab12")
    assert st.claimed_status({"phase": "Pending"}, starting, port=50051, now=NOW) == {
        "phase": "Starting", "reason": "PodCreated", "message": "warm pool pod mss-pool-ab12 claimed",
        "podName": "mss-pool-ab12", "podSource": "warm", "startedAt": T}
