"""The reconciler against a fake Kube, its events delivered the way kopf delivers them.

Every test asserts the API requests the operator made: the point of the design is
that a session costs a fixed, small number of writes and no reads at all.
"""
from __future__ import annotations

from myservice_api.names import pod_name
from myservice_operator.settings import Settings

from .fakekube import Harness

SETTINGS = Settings(namespace="ns", max_sessions=2, ready_timeout_seconds=120, finished_ttl_seconds=300)

# The writes of one session's whole life, in order.
LIFECYCLE = [
    ("create", "pods", 201),                          # admitted: its pod
    ("patch", "myservicesessions/status", 200),       # Starting
    ("create", "events", 201),                        #   PodCreated
    ("patch", "myservicesessions/status", 200),       # Ready
    ("create", "events", 201),                        #   PodReady
    ("patch", "myservicesessions/status", 200),       # Completed
    ("create", "events", 201),                        #   InstanceExited
    ("delete", "myservicesessions", 200),             # TTL over
]


async def ready_session(h: Harness, session_id: str) -> str:
    name = h.kube.create_session(session_id)
    await h.deliver()
    h.kube.pod_running(pod_name(name))
    await h.deliver()
    assert h.kube.phase(name) == ("Ready", "PodReady")
    return name


async def test_a_whole_session_life_costs_eight_writes_and_no_read():
    h = Harness(SETTINGS)
    name = h.kube.create_session("s1")
    await h.deliver()
    assert h.kube.phase(name) == ("Starting", "PodCreated")
    h.clock.advance(1.5)
    h.kube.pod_running(pod_name(name))
    await h.deliver()
    status = h.kube.sessions[name]["status"]
    assert (status["phase"], status["podName"], status["podIP"], status["port"]) == (
        "Ready", pod_name(name), "10.0.0.7", 50051)
    h.kube.pod_exited(pod_name(name), 0)
    await h.deliver()
    assert h.kube.phase(name) == ("Completed", "InstanceExited")
    await h.at(299)
    assert name in h.kube.sessions  # not before the TTL
    await h.at(2)
    assert name not in h.kube.sessions and not h.kube.pods
    assert h.kube.requests == LIFECYCLE
    assert h.kube.reads() == []
    assert [(e["reason"], e["type"], e["involvedObject"]["name"]) for e in h.kube.events] == [
        ("PodCreated", "Normal", name), ("PodReady", "Normal", name), ("InstanceExited", "Normal", name)]
    # nothing left in memory for it
    assert len(h.reconciler.deadlines) == 0


async def test_a_ready_session_costs_nothing_while_it_runs():
    h = Harness(SETTINGS)
    name = await ready_session(h, "s1")
    before = list(h.kube.requests)
    assert h.reconciler.deadlines.get(name) is None  # no clock for a Ready session
    await h.at(3600)
    assert h.kube.requests == before


async def test_replayed_events_and_a_restart_are_harmless():
    h = Harness(SETTINGS)
    name = await ready_session(h, "s1")
    before = list(h.kube.requests)
    await h.relist()  # every object delivered again (as after a watch restart)
    h.start()         # a new operator process: fresh indexes from its initial listing
    await h.relist()
    assert h.kube.requests == before
    assert h.kube.phase(name) == ("Ready", "PodReady")
    assert list(h.kube.pods) == [pod_name(name)]


async def test_free_slots_go_to_the_oldest_waiting_session_at_once():
    h = Harness(SETTINGS)
    names = []
    for i in range(4):  # created a second apart, a is the oldest
        names.append(h.kube.create_session(f"{'abcd'[i]}"))
        h.clock.advance(1)
    await h.concurrently()
    await h.deliver()
    a, b, c, d = names
    assert sorted(h.kube.pods) == sorted([pod_name(a), pod_name(b)])
    assert (h.kube.phase(c), h.kube.phase(d)) == (("Pending", "CapacityExceeded"),) * 2
    # a ends: c (older than d) gets the slot from a's pod event, no timer involved
    h.kube.pod_running(pod_name(a))
    await h.deliver()
    h.kube.pod_exited(pod_name(a), 0)
    await h.deliver()
    assert pod_name(c) in h.kube.pods and pod_name(d) not in h.kube.pods
    assert h.kube.phase(c) == ("Starting", "PodCreated")
    assert h.kube.phase(d) == ("Pending", "CapacityExceeded")
    assert [r for r in h.kube.requests if r[1] == "pods"] == [("create", "pods", 201)] * 3
    assert h.kube.reads() == []


async def test_a_burst_never_takes_more_slots_than_there_are():
    h = Harness(SETTINGS)
    names = [h.kube.create_session(f"burst-{i}") for i in range(6)]
    await h.concurrently()  # six handlers at once, before any pod event
    await h.deliver()
    assert len(h.kube.pods) == 2
    assert [h.kube.phase(n)[0] for n in names].count("Pending") == 4
    # each waiting session's Pending status is written once (with its Event), not per trigger
    pending_writes = [e for e in h.kube.events if e["reason"] == "CapacityExceeded"]
    assert len(pending_writes) == 4


async def test_no_capacity_at_all():
    h = Harness(Settings(namespace="ns", max_sessions=0, ready_timeout_seconds=120))
    name = h.kube.create_session("s1")
    await h.deliver()
    assert h.kube.phase(name) == ("Pending", "CapacityExceeded")
    await h.at(121)
    status = h.kube.sessions[name]["status"]
    assert (status["phase"], status["reason"], status["message"]) == (
        "Failed", "CapacityExceeded", "no instance freed within 120s: all instances are busy")
    assert [r for r in h.kube.requests if r[1] == "pods"] == []  # no pod, none deleted


async def test_a_pod_that_never_gets_ready_times_out_and_frees_its_slot():
    h = Harness(SETTINGS)
    name = h.kube.create_session("slow")
    await h.deliver()
    await h.at(120)
    assert h.kube.phase(name) == ("Starting", "PodCreated")  # not a moment early
    await h.at(1)
    assert h.kube.phase(name) == ("Failed", "ReadyTimeout")
    assert h.kube.pods[pod_name(name)]["metadata"].get("deletionTimestamp")
    assert ("delete", "pods", 200) in h.kube.requests


async def test_a_broken_pod_fails_its_session_and_the_next_one_gets_the_slot():
    h = Harness(Settings(namespace="ns", max_sessions=1))
    first = h.kube.create_session("first")
    h.clock.advance(1)
    second = h.kube.create_session("second")
    await h.deliver()
    h.kube.pod_waiting(pod_name(first), "ErrImageNeverPull", "image not present")
    await h.deliver()
    assert h.kube.phase(first) == ("Failed", "ImagePullFailed")
    assert pod_name(second) not in h.kube.pods  # the broken pod still holds the slot while it terminates
    h.kube.pods_gone()
    await h.deliver()
    assert h.kube.phase(second) == ("Starting", "PodCreated")


async def test_a_rejected_pod_fails_the_session_and_gives_the_slot_back():
    h = Harness(Settings(namespace="ns", max_sessions=1))
    h.kube.reject_pods = "exceeded quota: pods=1"
    name = h.kube.create_session("s1")
    await h.deliver()
    status = h.kube.sessions[name]["status"]
    assert (status["phase"], status["reason"], status["message"]) == (
        "Failed", "StartFailed", "pod rejected: exceeded quota: pods=1")
    h.kube.reject_pods = ""
    other = h.kube.create_session("s2")
    await h.deliver()
    assert h.kube.phase(other) == ("Starting", "PodCreated")


async def test_a_stale_decision_is_dropped_and_made_again_on_the_next_event():
    h = Harness(SETTINGS)
    name = h.kube.create_session("s1")
    await h.deliver()
    h.kube.touch_session(name)  # someone changed the session; the operator has not seen it yet
    h.kube.pod_running(pod_name(name))
    await h.deliver(only="pod")  # Ready decided on the old resourceVersion: refused
    assert h.kube.requests[-1] == ("patch", "myservicesessions/status", 409)
    assert h.kube.phase(name) == ("Starting", "PodCreated")
    await h.deliver()  # the session's event: decided again, on its new version
    assert h.kube.phase(name) == ("Ready", "PodReady")
    ready_writes = [e for e in h.kube.events if e["reason"] == "PodReady"]
    assert len(ready_writes) == 1


async def test_its_own_writes_do_not_make_the_next_decision_stale():
    h = Harness(SETTINGS)
    name = h.kube.create_session("s1")
    await h.deliver(only="session")  # pod created and Starting written; the pod's events wait
    h.kube.pod_running(pod_name(name))
    await h.deliver(only="pod", hold="session")  # Ready before the operator saw its own Starting
    assert h.kube.phase(name) == ("Ready", "PodReady")
    await h.deliver()
    assert not [r for r in h.kube.requests if r[2] == 409]
    assert h.kube.writes() == LIFECYCLE[:5]


async def test_a_session_whose_pod_is_not_indexed_yet_is_not_failed():
    h = Harness(SETTINGS)
    name = h.kube.create_session("s1")
    await h.deliver(hold="pod")  # the session's Starting event comes back before any pod event
    assert h.kube.phase(name) == ("Starting", "PodCreated")
    await h.deliver()
    assert h.kube.phase(name) == ("Starting", "PodCreated")


async def test_a_deleted_pod_fails_a_ready_session_and_frees_the_slot():
    h = Harness(Settings(namespace="ns", max_sessions=1))
    name = await ready_session(h, "s1")
    waiting = h.kube.create_session("s2")
    await h.deliver()
    assert h.kube.phase(waiting) == ("Pending", "CapacityExceeded")
    h.kube.someone_deletes_pod(pod_name(name))
    h.kube.pods_gone()
    await h.deliver()
    assert h.kube.phase(name) == ("Failed", "PodDeleted")
    assert h.kube.phase(waiting) == ("Starting", "PodCreated")


async def test_the_instance_ending_at_its_idle_timeout_completes_the_session():
    h = Harness(SETTINGS)
    name = await ready_session(h, "s1")
    h.kube.pod_exited(pod_name(name), 0, message="IdleTimeout: no call for 900s")
    await h.deliver()
    status = h.kube.sessions[name]["status"]
    assert (status["phase"], status["reason"], status["message"]) == ("Completed", "IdleTimeout", "no call for 900s")


async def test_an_api_error_is_counted_and_the_step_runs_again():
    h = Harness(SETTINGS)
    name = h.kube.create_session("s1")
    h.kube.fail.add(("create", "pods"))  # the API answers 500 once
    await h.deliver()
    assert h.metrics.reconcile_errors.labels("session")._value.get() == 1
    assert (h.kube.pods, h.kube.phase(name)) == ({}, (None, None))
    await h.at(4)
    assert h.kube.pods == {}
    await h.at(1.5)  # the retry, 5 s later
    assert h.kube.phase(name) == ("Starting", "PodCreated")
    assert [r for r in h.kube.requests if r[1] == "pods"] == [("create", "pods", 500), ("create", "pods", 201)]


async def test_a_session_deleted_while_it_waits_leaves_nothing_behind():
    h = Harness(Settings(namespace="ns", max_sessions=0))
    name = h.kube.create_session("s1")
    await h.deliver()
    h.kube.gateway_deletes_session(name)
    await h.deliver()
    assert len(h.reconciler.deadlines) == 0
    before = list(h.kube.requests)
    await h.at(1000)
    assert h.kube.requests == before


async def test_a_pod_left_by_a_deleted_namesake_is_not_adopted():
    h = Harness(SETTINGS)
    name = await ready_session(h, "s1")
    old_pod_uid = h.kube.pods[pod_name(name)]["metadata"]["uid"]
    h.kube.gateway_deletes_session(name, collect=False)  # its pod is still terminating
    await h.deliver()
    again = h.kube.create_session("s1")  # the same user and id: the same name, a new uid
    await h.deliver()
    assert again == name
    assert h.kube.pods[pod_name(name)]["metadata"]["uid"] == old_pod_uid  # not adopted, no second pod
    assert h.kube.sessions[name].get("status") is None
    h.kube.pods_gone()
    await h.deliver()
    assert h.kube.phase(name) == ("Starting", "PodCreated")
    assert [r for r in h.kube.requests if r[1] == "pods"] == [("create", "pods", 201)] * 2


async def test_phase_gauges_come_from_the_index_and_start_latency_is_observed_once():
    from prometheus_client import generate_latest

    h = Harness(SETTINGS)
    for sid in ("a", "b", "c"):
        h.kube.create_session(sid)
    await h.deliver()
    first = sorted(h.kube.pods)[0]
    h.clock.advance(2)
    h.kube.pod_running(first)
    await h.deliver()
    await h.relist()
    text = generate_latest(h.metrics.registry).decode()
    assert 'myservice_operator_sessions{phase="Pending"} 1.0' in text
    assert 'myservice_operator_sessions{phase="Starting"} 1.0' in text
    assert 'myservice_operator_sessions{phase="Ready"} 1.0' in text
    assert "myservice_operator_live_pods 2.0" in text
    assert 'myservice_operator_session_start_seconds_count{pod="cold"} 1.0' in text
    assert 'myservice_operator_session_start_seconds_bucket{le="2.0",pod="cold"} 1.0' in text
    assert 'myservice_operator_session_start_seconds_bucket{le="1.5",pod="cold"} 0.0' in text


async def test_events_beyond_the_backlog_are_dropped_and_counted_never_the_status():
    h = Harness(SETTINGS)
    h.reconciler.events.backlog = 0  # a backlog that is always full
    name = await ready_session(h, "s1")
    assert h.kube.events == []
    assert ("create", "events", 201) not in h.kube.requests
    assert [r for r in h.kube.requests if r[0] == "patch"] == [("patch", "myservicesessions/status", 200)] * 2
    assert h.metrics.registry.get_sample_value("myservice_operator_events_dropped_total") == 2.0
    assert h.kube.phase(name) == ("Ready", "PodReady")
