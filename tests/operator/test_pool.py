"""The warm pool's pure parts: a member's manifest, the claim patch, which member, what to make."""
from __future__ import annotations

import dataclasses
import datetime

from myservice_api import crd
from myservice_operator import pool
from myservice_operator.podstate import PodKind, PodState
from myservice_operator.settings import Settings

SETTINGS = Settings(namespace="ns", warm_pool_size=2, session_max_lifetime_seconds=3600)
T0 = datetime.datetime(2026, 1, 2, 3, 0, 0, tzinfo=datetime.timezone.utc)
TEMPLATE = pool.template_hash(SETTINGS)


def member(name: str, kind: str = "ready", *, age: float = 10, template: str = TEMPLATE,
           deleting: bool = False) -> pool.Member:
    return pool.Member(name=name, resource_version=f"rv-{name}", template=template,
                       created_at=T0 - datetime.timedelta(seconds=age), state=PodState(PodKind(kind), name=name),
                       deleting=deleting)


def test_a_member_is_an_instance_pod_without_a_session():
    pod = pool.make_member(SETTINGS, template=TEMPLATE, suffix="ab12cd34ef")
    metadata, spec = pod["metadata"], pod["spec"]
    assert metadata["name"] == "mss-pool-ab12cd34ef"
    assert metadata["labels"] == {
        "app.kubernetes.io/name": "myservice", "app.kubernetes.io/component": "instance",
        "app.kubernetes.io/managed-by": "myservice-operator", crd.LABEL_POOL: TEMPLATE}
    assert "ownerReferences" not in metadata and "annotations" not in metadata
    assert "activeDeadlineSeconds" not in spec  # the lifetime starts at the claim
    instance = spec["containers"][0]
    assert {"name": "MYSERVICE_INSTANCE_WAIT_FOR_CLAIM", "value": "1"} in instance["env"]
    assert instance["readinessProbe"]["grpc"] == {"port": 50051}
    assert spec["restartPolicy"] == "Never" and spec["securityContext"]["runAsNonRoot"] is True
    assert pool.make_member(SETTINGS, template=TEMPLATE)["metadata"]["name"] != metadata["name"]


def test_the_template_hash_follows_what_members_are_made_of():
    assert pool.template_hash(SETTINGS) == TEMPLATE  # stable
    assert len(TEMPLATE) == 12
    for change in (dict(instance_image="other:1"), dict(instance_pod_template={"spec": {"priorityClassName": "x"}}),
                   dict(session_idle_timeout_seconds=60), dict(instance_port=50052)):
        assert pool.template_hash(dataclasses.replace(SETTINGS, **change)) != TEMPLATE, change
    # not the pool's size or the operator's own knobs
    assert pool.template_hash(dataclasses.replace(SETTINGS, warm_pool_size=9, max_sessions=99)) == TEMPLATE


def test_the_claim_patch_hands_the_pod_over_in_one_guarded_write():
    patch = pool.claim_patch(member("mss-pool-1", age=120.4), resource="mss-alice-x", uid="uid-9",
                             session_id="s 1", settings=SETTINGS, now=T0)
    assert patch == {
        "metadata": {
            "resourceVersion": "rv-mss-pool-1",
            "labels": {crd.LABEL_POOL: None, crd.LABEL_SESSION: "mss-alice-x"},
            "annotations": {crd.ANNOTATION_SESSION_ID: "s 1"},
            "ownerReferences": [{"apiVersion": "myservice.io/v1alpha1", "kind": "MyServiceSession",
                                 "name": "mss-alice-x", "uid": "uid-9", "controller": True,
                                 "blockOwnerDeletion": True}],
        },
        # 121 s in the pool + the whole lifetime + the margin
        "spec": {"activeDeadlineSeconds": 121 + 3600 + 60},
    }
    no_lifetime = dataclasses.replace(SETTINGS, session_max_lifetime_seconds=0)
    assert "spec" not in pool.claim_patch(member("p"), resource="r", uid="u", session_id="s",
                                          settings=no_lifetime, now=T0)


def test_pick_the_oldest_ready_member_of_the_current_template():
    members = [member("young", age=5), member("old", age=50), member("starting", "starting", age=99),
               member("stale", age=99, template="0ld"), member("going", age=99, deleting=True),
               member("claimed", age=98)]
    assert pool.pick(members, template=TEMPLATE, taken={"claimed"}).name == "old"
    assert pool.pick(members, template=TEMPLATE, taken={"claimed", "old"}).name == "young"
    assert pool.pick(members, template=TEMPLATE, taken={"claimed", "old", "young"}) is None
    assert pool.pick([], template=TEMPLATE, taken=()) is None


def plan(members, *, size=2, creating=0, taken=()):
    return pool.plan(members, size=size, template=TEMPLATE, creating=creating, taken=taken, now=T0,
                     start_timeout_seconds=120)


def test_plan_fills_up_to_size_counting_members_on_their_way():
    assert plan([]) == pool.Plan(create=2, delete=())
    assert plan([member("a")]) == pool.Plan(create=1, delete=())
    assert plan([member("a", "starting")], creating=1) == pool.Plan(create=0, delete=())
    assert plan([member("a"), member("b")]) == pool.Plan(create=0, delete=())
    assert plan([], size=0) == pool.Plan(create=0, delete=())


def test_plan_replaces_ended_broken_hung_and_old_members():
    members = [member("done", "succeeded"), member("crashed", "failed"), member("no-image", "broken"),
               member("hung", "starting", age=121), member("old", template="0ld"), member("fine")]
    decided = plan(members)
    assert sorted(decided.delete) == ["crashed", "done", "hung", "no-image", "old"]
    assert decided.create == 1


def test_plan_trims_the_newest_not_ready_first_and_leaves_claimed_and_deleting_alone():
    members = [member("r1", age=30), member("r2", age=20), member("s1", "starting", age=5),
               member("claimed", age=40), member("going", "succeeded", deleting=True)]
    decided = plan(members, size=2, taken={"claimed"})
    assert decided == pool.Plan(create=0, delete=("s1",))
    assert plan(members, size=1, taken={"claimed"}).delete == ("r2", "s1")


def test_next_check_is_when_the_oldest_starting_member_would_be_hung():
    members = [member("a", "starting", age=30), member("b", "starting", age=60), member("r")]
    assert pool.next_check(members, start_timeout_seconds=120) == T0 + datetime.timedelta(seconds=60.1)
    assert pool.next_check([member("r")], start_timeout_seconds=120) is None


def test_plan_paces_the_refill_to_max_starting_members_at_once():
    assert pool.plan([], size=10, template=TEMPLATE, creating=0, taken=(), now=T0, start_timeout_seconds=120,
                     max_starting=2).create == 2
    starting = [member("s1", "starting"), member("r1")]
    assert pool.plan(starting, size=10, template=TEMPLATE, creating=1, taken=(), now=T0, start_timeout_seconds=120,
                     max_starting=2).create == 0  # one creating + one starting: wait
    assert pool.plan([member("r1")], size=10, template=TEMPLATE, creating=0, taken=(), now=T0,
                     start_timeout_seconds=120, max_starting=3).create == 3


def test_free_ready_counts_what_a_claim_could_have():
    members = [member("a"), member("b", "starting"), member("c"), dataclasses.replace(member("d"), deleting=True),
               member("e", template="old"), member("f")]
    assert pool.free_ready(members, template=TEMPLATE, taken={"f"}) == 2


def test_refill_waits_only_during_a_burst_of_claims_while_the_pool_is_well_stocked():
    burst = pool.BURST_CLAIMS
    # a burst, 1,050 members, 600 still free: claims first
    assert pool.refill_held(recent_claims=burst, free=600, size=1050, max_starting=100)
    # not a burst: a steady trickle of claims refills as it goes
    assert not pool.refill_held(recent_claims=burst - 1, free=600, size=1050, max_starting=100)
    # a burst, but the pool is down to a quarter: refill at once
    assert not pool.refill_held(recent_claims=burst, free=262, size=1050, max_starting=100)
    assert pool.refill_held(recent_claims=burst, free=263, size=1050, max_starting=100)
    # a small pool is never held (a quarter of it, or max_starting, is all it has)
    assert not pool.refill_held(recent_claims=50, free=2, size=3, max_starting=2)
    assert not pool.refill_held(recent_claims=50, free=10, size=10, max_starting=10)
