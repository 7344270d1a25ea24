"""The warm claim as one write on the critical path (issue 17, item 1), on the fake Kube.

The active operator assigns a pool pod by writing the session's status (Ready on it)
and labels the pod after. What must hold, whatever happens between the two writes:
no pod is ever named by two sessions' statuses, a pod named by a status is never
handed out again or deleted as surplus, the labels follow (also after a failover),
and a session that goes before its pod is labelled takes the pod with it.
"""
from __future__ import annotations

import collections
import dataclasses
import random

from myservice_api import crd
from myservice_api.names import pod_name
from myservice_operator import pool
from myservice_operator.settings import Settings

from .fakekube import Harness

SETTINGS = Settings(namespace="ns", max_sessions=40, ready_timeout_seconds=120, finished_ttl_seconds=300,
                    warm_pool_size=10, warm_pool_max_starting=10)
STATUS = ("patch", "myservicesessions/status", 200)
LABEL = ("patch", "pods", 200)


async def filled(settings=SETTINGS) -> Harness:
    """An operator started on an empty namespace, its pool made and Ready."""
    h = Harness(settings)
    await h.reconciler.start_pool()
    await h.reconciler.settle()
    await h.deliver()
    await pool_ready(h)
    return h


async def pool_ready(h: Harness) -> None:
    """kubelet: every pool pod not Ready yet becomes Ready."""
    for name in h.kube.pool_pods():
        if h.kube.pods[name]["status"].get("phase") != "Running":
            h.kube.pod_running(name, ip=f"10.1.{len(name)}.{int(name[-4:], 16) % 250}")
    await h.deliver()


def status(h: Harness, name: str) -> dict:
    return h.kube.sessions[name].get("status", {})


def warm_pods(h: Harness) -> dict[str, list[str]]:
    """pod -> the sessions whose status names it as their warm pod."""
    named = collections.defaultdict(list)
    for name in h.kube.sessions:
        st = status(h, name)
        if st.get("podSource") == "warm":
            named[st["podName"]].append(name)
    return named


def assert_one_pod_per_session(h: Harness) -> None:
    """No pod named by two sessions; once settled, every warm pod that still exists is
    labelled and owned as its session's, and no pool pod is named by a session."""
    named = warm_pods(h)
    assert all(len(sessions) == 1 for sessions in named.values()), named
    for pod, (session,) in named.items():
        if pod not in h.kube.pods:
            continue
        metadata = h.kube.pods[pod]["metadata"]
        assert metadata["labels"].get(crd.LABEL_SESSION) == session, (pod, metadata["labels"])
        assert crd.LABEL_POOL not in metadata["labels"]
        assert [r["uid"] for r in metadata["ownerReferences"]] == [h.kube.sessions[session]["metadata"]["uid"]]
    assert not set(named) & set(h.kube.pool_pods())


async def test_a_claim_is_one_write_before_ready_and_four_requests_in_all():
    h = await filled()
    for i in range(5):  # one at a time: the exact requests of each claim
        before = len(h.kube.requests)
        name = h.kube.create_session(f"one{i}")
        await h.deliver()
        assert h.kube.requests[before:h.kube.ready_after[name]] == [STATUS]  # all Login waits for
        assert h.kube.requests[before:] == [STATUS, ("create", "events", 201), LABEL, ("create", "pods", 201)]
        await pool_ready(h)
    assert h.kube.reads() == [("list", "pods", 200)]  # the pool's one LIST at start, no read per claim
    assert_one_pod_per_session(h)


async def test_a_burst_of_claims_never_gives_one_pod_twice():
    h = await filled()
    members = set(h.kube.pool_pods())
    before = len(h.kube.requests)
    burst = [h.kube.create_session(f"b{i}") for i in range(30)]
    await h.concurrently()  # every Login's event handled at once
    await h.deliver()
    named = warm_pods(h)
    assert set(named) == members  # the ten Ready members went, one each
    assert_one_pod_per_session(h)
    cold = [n for n in burst if status(h, n)["podSource"] == "cold"]
    assert len(cold) == 20 and {status(h, n)["podName"] for n in cold} == {pod_name(n) for n in cold}
    # per warm claim: one status write, one label patch, one Event (and a refill create, capped
    # by warm_pool_max_starting): O(1), no retry, no conflict, no read
    requests = collections.Counter(h.kube.requests[before:])
    assert requests[LABEL] == 10 and not [r for r in requests if r[2] == 409]
    assert sum(1 for r in h.kube.requests[before:] if r[1] == "myservicesessions/status") == 10 + 20
    assert not h.kube.reads()[1:]


async def test_bursts_with_refills_and_ends_in_random_order_never_give_one_pod_twice():
    rng = random.Random(17)
    h = await filled()
    sessions: list[str] = []
    for round_ in range(12):
        sessions += [h.kube.create_session(f"r{round_}-{i}") for i in range(rng.randint(1, 8))]
        if rng.random() < 0.5:
            await h.concurrently()
        else:
            await h.deliver(hold="pod")  # sessions first, pod events (labels, refills) later
        for name in rng.sample(sessions, k=min(3, len(sessions))):  # some end, some go
            st = status(h, name) if name in h.kube.sessions else {}
            if st.get("phase") == "Ready" and rng.random() < 0.5:
                h.kube.pod_exited(st["podName"], 0)
            elif name in h.kube.sessions and rng.random() < 0.3:
                h.kube.gateway_deletes_session(name, collect=False)
        assert all(len(s) == 1 for s in warm_pods(h).values())
        await h.deliver()
        h.kube.pods_gone()
        await pool_ready(h)
        for name in h.kube.sessions:
            if status(h, name).get("phase") == "Starting":
                h.kube.pod_running(status(h, name)["podName"])
        await h.deliver()
        assert_one_pod_per_session(h)
    assert sum(len(v) for v in warm_pods(h).values()) > 10  # the pool was used and refilled


async def test_a_failover_between_the_two_writes_keeps_the_pod_and_finishes_the_labels():
    h = await filled()
    h.kube.down.add(("patch", "pods"))  # the label patch never lands: the old leader dies here
    first = h.kube.create_session("first")
    await h.deliver()
    st = status(h, first)
    assert (st["phase"], st["podSource"]) == ("Ready", "warm")
    pod = st["podName"]
    assert crd.LABEL_POOL in h.kube.pods[pod]["metadata"]["labels"]  # still a pool pod by its labels
    # a new leader with a new image (a rollout: every old-template member is deleted) starts,
    # with sessions logging in meanwhile; nothing of the old leader's memory survives
    burst = [h.kube.create_session(f"after{i}") for i in range(12)]
    h.settings = dataclasses.replace(SETTINGS, instance_image="myservice-service:v2")
    h.kube.down.clear()
    h.start()
    before = len(h.kube.requests)
    await h.reconciler.start_pool()  # its LIST: creates only, deletes nothing yet
    await h.reconciler.settle()
    assert [r for r in h.kube.requests[before:] if r[0] == "delete"] == []
    await h.relist()
    await h.deliver()
    assert pod in h.kube.pods and not h.kube.pods[pod]["metadata"].get("deletionTimestamp")
    assert status(h, first)["podName"] == pod and h.kube.phase(first) == ("Ready", "PodReady")
    assert all(status(h, n)["podName"] != pod for n in burst)
    labels = h.kube.pods[pod]["metadata"]["labels"]
    assert labels[crd.LABEL_SESSION] == first and crd.LABEL_POOL not in labels
    assert_one_pod_per_session(h)
    # the other old members went (the rollout), none of the new sessions got one of them twice
    h.kube.pods_gone()
    await pool_ready(h)
    for name in burst:
        if status(h, name).get("phase") == "Starting":
            h.kube.pod_running(status(h, name)["podName"])
    await h.deliver()
    assert all(h.kube.phase(n) == ("Ready", "PodReady") for n in [first, *burst])
    assert_one_pod_per_session(h)


async def test_a_failover_between_the_writes_while_the_pod_exits_ends_the_session_and_owns_the_pod():
    h = await filled()
    h.kube.down.add(("patch", "pods"))
    name = h.kube.create_session("s1")
    await h.deliver()
    pod = status(h, name)["podName"]
    h.kube.pod_exited(pod, 0)  # its first call was MyServiceShutdown, before any label
    h.kube.down.clear()
    h.start()
    await h.relist()
    await h.deliver()
    assert h.kube.phase(name) == ("Completed", "InstanceExited")
    assert h.kube.pods[pod]["metadata"]["labels"][crd.LABEL_SESSION] == name  # owned: goes with it
    assert pod not in h.kube.pool_pods()
    await h.at(301)  # the TTL: the session goes, its pod with it
    assert name not in h.kube.sessions and pod not in h.kube.pods


async def test_a_session_deleted_between_the_writes_takes_its_pod_and_the_pool_refills():
    h = await filled()
    h.kube.down.add(("patch", "pods"))  # the label patch fails: the session has no pod by labels
    name = h.kube.create_session("s1")
    await h.deliver(hold="pod")
    pod = status(h, name)["podName"]
    assert crd.LABEL_SESSION not in h.kube.pods[pod]["metadata"]["labels"]
    before = len(h.kube.requests)
    h.kube.gateway_deletes_session(name)  # no owner on the pod: garbage collection takes nothing
    await h.deliver(only="session")
    # its instance may have bound to that session (its first call): deleted, never handed out
    assert h.kube.requests[before:] == [("delete", "pods", 200)]
    h.kube.down.clear()
    nxt = h.kube.create_session("s2")
    await h.deliver()
    assert status(h, nxt)["podName"] != pod
    h.kube.pods_gone()
    await pool_ready(h)
    assert pod not in h.kube.pods and len(h.kube.pool_pods()) == SETTINGS.warm_pool_size
    assert_one_pod_per_session(h)
    assert h.reconciler.assignments.pod_of(name) is None and len(h.reconciler.assignments) == 0
    assert h.reconciler.admission.holds_slot(name) is False


async def test_a_status_write_that_conflicts_frees_the_pod_and_the_next_event_claims_again():
    h = await filled(dataclasses.replace(SETTINGS, warm_pool_size=1))
    (member,) = h.kube.pool_pods()
    name = h.kube.create_session("s1")
    h.kube.touch_session(name)  # someone changed it behind the index: the status write is a 409
    await h.deliver(only="session")
    assert status(h, name).get("podSource") == "warm" and status(h, name)["podName"] == member
    assert ("patch", "myservicesessions/status", 409) in h.kube.requests
    assert_one_pod_per_session(h)


async def test_a_lost_answer_to_the_status_write_keeps_the_pod_for_that_session():
    h = await filled(dataclasses.replace(SETTINGS, warm_pool_size=2))
    name = h.kube.create_session("s1")
    real = h.kube.patch_session_status

    def lost_answer(*args):
        real(*args)  # written, but the operator sees an error (a timeout)
        raise TimeoutError("read timed out")
    h.kube.patch_session_status = lost_answer
    await h.deliver(where=lambda kind, type, body: type == "ADDED")  # its Login, not its Ready yet
    h.kube.patch_session_status = real
    pod = status(h, name)["podName"]
    assert status(h, name)["phase"] == "Ready" and crd.LABEL_POOL in h.kube.pods[pod]["metadata"]["labels"]
    h.kube.pod_running(pod, ip=h.kube.pods[pod]["status"]["podIP"])  # kubelet: the pod's own event first
    other = h.kube.create_session("s2")  # the index has not seen the landed write: still not s2's
    await h.deliver(where=lambda kind, type, body: body["metadata"]["name"] != name)
    assert status(h, other)["podSource"] == "warm" and status(h, other)["podName"] != pod
    await h.deliver()  # s1's Ready arrives: its pod is labelled
    await h.at(5)
    assert status(h, name)["podName"] == pod
    assert h.kube.phase(name) == ("Ready", "PodReady")
    assert_one_pod_per_session(h)


async def test_a_pod_deleted_before_its_labels_fails_its_session_and_frees_the_slot():
    h = await filled(dataclasses.replace(SETTINGS, max_sessions=1))
    h.kube.down.add(("patch", "pods"))
    name = h.kube.create_session("s1")
    await h.deliver()
    pod = status(h, name)["podName"]
    h.kube.someone_deletes_pod(pod)
    h.kube.pods_gone()
    await h.deliver()
    assert h.kube.phase(name) == ("Failed", "PodDeleted")
    assert not h.reconciler.admission.holds_slot(name)
    nxt = h.kube.create_session("s2")  # the one slot is free again
    await h.deliver()
    assert status(h, nxt)["phase"] == "Ready" and status(h, nxt)["podSource"] == "warm"


async def test_a_burst_of_claims_is_refilled_after_it_not_during_it():
    """Creates wait while claims come at a burst's rate (pool.refill_held) and the pool is
    well stocked; a second after the last claim the pool's deadline refills it."""
    h = await filled(dataclasses.replace(SETTINGS, warm_pool_size=40, warm_pool_max_starting=10))
    while len(h.kube.pool_pods()) < 40:  # 10 starting at once
        await pool_ready(h)
    await pool_ready(h)
    before = len(h.kube.requests)
    burst = [h.kube.create_session(f"burst{i}") for i in range(20)]
    await h.concurrently()
    await h.deliver()
    assert all(status(h, n)["podSource"] == "warm" for n in burst)
    # all 20 taken at once (their Logins' events handled together), then their writes: each
    # refill after a write sees 20 claims in the last second and 20 members free of 40
    assert not [r for r in h.kube.requests[before:] if r == ("create", "pods", 201)]
    assert_one_pod_per_session(h)
    await h.at(pool.BURST_WINDOW_SECONDS + 0.1)  # the burst is over: the rest is made now
    assert len([r for r in h.kube.requests[before:] if r == ("create", "pods", 201)]) == 10  # max_starting
    while len(h.kube.pool_pods()) < 40:
        await pool_ready(h)
    assert len([r for r in h.kube.requests[before:] if r == ("create", "pods", 201)]) == 20
