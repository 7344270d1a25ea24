"""The warm pool through the reconciler, against the fake Kube, events delivered as kopf does."""
from __future__ import annotations

import dataclasses

from myservice_api import crd
from myservice_api.names import pod_name
from myservice_operator.settings import Settings

from .fakekube import Harness

SETTINGS = Settings(namespace="ns", max_sessions=4, ready_timeout_seconds=120, finished_ttl_seconds=300,
                    warm_pool_size=2)


async def filled(settings=SETTINGS) -> Harness:
    """An operator started on an empty namespace, its pool made and Ready."""
    h = Harness(settings)
    await h.reconciler.start_pool()
    await h.reconciler.settle()
    await h.deliver()
    for name in h.kube.pool_pods():
        h.kube.pod_running(name, ip=f"10.0.1.{name[-2:]}")
    await h.deliver()
    return h


def status(h: Harness, name: str) -> dict:
    return h.kube.sessions[name]["status"]


async def test_the_pool_fills_at_start_from_one_list():
    h = Harness(SETTINGS)
    await h.reconciler.start_pool()
    await h.reconciler.settle()
    await h.deliver()
    assert len(h.kube.pool_pods()) == 2
    assert h.kube.requests == [("list", "pods", 200), ("create", "pods", 201), ("create", "pods", 201)]
    for name in h.kube.pool_pods():
        labels = h.kube.pods[name]["metadata"]["labels"]
        assert crd.LABEL_SESSION not in labels and labels[crd.LABEL_POOL]
        assert h.kube.pods[name]["metadata"]["ownerReferences"] == []


async def test_a_new_session_claims_a_ready_pool_pod_and_is_ready_at_once():
    h = await filled()
    members = h.kube.pool_pods()
    before = len(h.kube.requests)
    name = h.kube.create_session("s1")
    await h.deliver()
    # the critical path: from Login's create to Ready, one write (the status names the pod)
    assert h.kube.requests[before:h.kube.ready_after[name]] == [("patch", "myservicesessions/status", 200)]
    st = status(h, name)
    assert (st["phase"], st["reason"], st["podSource"]) == ("Ready", "PodReady", "warm")
    assert st["podName"] in members and st["podName"] != pod_name(name)
    assert st["podIP"] == h.kube.pods[st["podName"]]["status"]["podIP"]
    assert st["message"] == f"warm pool pod {st['podName']} claimed, ready at {st['podIP']}:50051"
    claimed = h.kube.pods[st["podName"]]["metadata"]
    assert claimed["labels"][crd.LABEL_SESSION] == name and crd.LABEL_POOL not in claimed["labels"]
    assert [ref["uid"] for ref in claimed["ownerReferences"]] == [h.kube.sessions[name]["metadata"]["uid"]]
    assert claimed["annotations"][crd.ANNOTATION_SESSION_ID] == "s1"
    assert h.kube.pods[st["podName"]]["spec"]["activeDeadlineSeconds"] == 0 + 86400 + 60
    # then, off that path: its Event, the pod's labels and owner, and the pool's refill; nothing read
    assert h.kube.requests[before:] == [("patch", "myservicesessions/status", 200), ("create", "events", 201),
                                        ("patch", "pods", 200), ("create", "pods", 201)]
    assert pod_name(name) not in h.kube.pods  # no cold pod was made
    assert len(h.kube.pool_pods()) == 2 and st["podName"] not in h.kube.pool_pods()
    assert h.metrics.registry.get_sample_value("myservice_operator_session_start_seconds_count",
                                               {"pod": "warm"}) == 1


async def test_two_sessions_racing_for_the_last_pool_pod_get_one_each_warm_and_cold():
    h = await filled(dataclasses.replace(SETTINGS, warm_pool_size=1))
    (member,) = h.kube.pool_pods()
    a, b = h.kube.create_session("a"), h.kube.create_session("b")
    await h.concurrently()
    await h.deliver()
    sources = {n: (status(h, n).get("podSource"), status(h, n)["podName"]) for n in (a, b)}
    assert sorted(s for s, _ in sources.values()) == ["cold", "warm"]
    warm = next(n for n, (s, _) in sources.items() if s == "warm")
    cold = next(n for n, (s, _) in sources.items() if s == "cold")
    assert sources[warm][1] == member and sources[cold][1] == pod_name(cold)
    assert [r for r in h.kube.requests if r[:2] == ("patch", "pods")] == [("patch", "pods", 200)]


async def test_a_claimed_pod_never_returns_to_the_pool_even_after_its_session_ends():
    h = await filled()
    first = h.kube.create_session("s1")
    await h.deliver()
    taken = status(h, first)["podName"]
    h.kube.pod_exited(taken, 0)  # MyServiceShutdown
    await h.deliver()
    assert h.kube.phase(first) == ("Completed", "InstanceExited")
    for name in h.kube.pool_pods():
        h.kube.pod_running(name)
    await h.deliver()
    others = [h.kube.create_session(f"s{i}") for i in range(2, 5)]
    await h.deliver()
    assert taken not in {status(h, n)["podName"] for n in others}
    assert taken not in h.kube.pool_pods()
    await h.at(301)  # the TTL: the session goes, its (claimed) pod with it
    assert first not in h.kube.sessions and taken not in h.kube.pods


async def test_a_label_patch_that_meets_a_newer_pod_is_sent_again_at_its_event():
    h = await filled(dataclasses.replace(SETTINGS, warm_pool_size=1))
    (member,) = h.kube.pool_pods()
    h.kube.pod_running(member, ip=h.kube.pods[member]["status"]["podIP"])  # kubelet: a new version, not seen yet
    name = h.kube.create_session("s1")
    before = len(h.kube.requests)
    await h.deliver(only="session")
    # Ready on the member at once; the labels met the newer version (409) and wait for its event
    assert (status(h, name)["podSource"], status(h, name)["podName"]) == ("warm", member)
    assert h.kube.requests[before:] == [("patch", "myservicesessions/status", 200), ("create", "events", 201),
                                        ("patch", "pods", 409), ("create", "pods", 201)]
    assert h.kube.pods[member]["metadata"]["labels"].get(crd.LABEL_SESSION) is None
    await h.deliver()  # the member's event: labelled with the version it carries
    assert h.kube.pods[member]["metadata"]["labels"][crd.LABEL_SESSION] == name
    assert ("patch", "pods", 200) in h.kube.requests[before:]
    assert pod_name(name) not in h.kube.pods  # never a cold start
    assert h.kube.phase(name) == ("Ready", "PodReady")


async def test_a_deleted_or_failed_pool_pod_is_replaced():
    h = await filled()
    gone, crashed = h.kube.pool_pods()
    h.kube.someone_deletes_pod(gone)
    h.kube.pods_gone()
    h.kube.pod_exited(crashed, 1)
    await h.deliver()
    assert crashed not in h.kube.pool_pods()  # deleted by the operator
    h.kube.pods_gone()
    await h.deliver()
    pool = h.kube.pool_pods()
    assert len(pool) == 2 and not {gone, crashed} & set(pool)


async def test_a_pool_pod_never_ready_is_replaced_after_the_ready_timeout():
    h = Harness(SETTINGS)
    await h.reconciler.start_pool()
    await h.reconciler.settle()
    await h.deliver()
    hung, fine = h.kube.pool_pods()
    h.kube.pod_running(fine)
    await h.deliver()
    await h.at(119)
    assert hung in h.kube.pool_pods()
    await h.at(2)  # the pool's own deadline: no event needed
    assert hung not in h.kube.pool_pods() and len(h.kube.pool_pods()) == 2


async def test_a_new_template_rolls_the_pool():
    h = await filled()
    old = set(h.kube.pool_pods())
    h.settings = dataclasses.replace(SETTINGS, instance_image="myservice-service:v2")
    h.start()  # the operator restarted with the new image (a Deployment rollout)
    await h.reconciler.start_pool()
    await h.reconciler.settle()
    await h.relist()
    await h.deliver()
    h.kube.pods_gone()
    await h.deliver()
    new = set(h.kube.pool_pods())
    assert len(new) == 2 and not old & new
    assert {h.kube.pods[n]["spec"]["containers"][0]["image"] for n in new} == {"myservice-service:v2"}


async def test_an_empty_pool_means_a_cold_start_and_pool_pods_are_not_sessions():
    h = await filled(dataclasses.replace(SETTINGS, max_sessions=1))
    a = h.kube.create_session("a")
    await h.deliver()
    assert status(h, a)["podSource"] == "warm"
    b = h.kube.create_session("b")  # the one slot is a's, though pool pods are there
    await h.deliver()
    assert h.kube.phase(b) == ("Pending", "CapacityExceeded")
    assert len(h.kube.pool_pods()) == 2  # refilled: pool pods are extra to max_sessions


async def test_no_pool_no_list_and_no_pool_requests():
    h = Harness(dataclasses.replace(SETTINGS, warm_pool_size=0))
    await h.reconciler.start_pool()
    name = h.kube.create_session("s1")
    await h.deliver()
    assert h.kube.requests[0] == ("create", "pods", 201)
    assert status(h, name)["podSource"] == "cold"


async def test_turning_the_pool_off_deletes_its_pods():
    h = await filled()
    members = h.kube.pool_pods()
    h.settings = dataclasses.replace(SETTINGS, warm_pool_size=0)
    h.start()
    await h.reconciler.start_pool()  # no list without a pool: the initial listing's events decide
    await h.relist()
    await h.deliver()
    assert h.kube.pool_pods() == [] and all(h.kube.pods[m]["metadata"].get("deletionTimestamp") for m in members)
    assert ("list", "pods", 200) not in h.kube.requests[-4:]
