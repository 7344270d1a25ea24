"""The reconciler's admission bookkeeping: who holds a slot before the index can count it."""
from myservice_operator.slots import Admission


def nobody(name: str) -> bool:
    return False


def test_slots_go_to_the_oldest_waiting_sessions_and_count_while_being_created():
    slots = Admission(max_sessions=3)
    slots.wait("b", "2026-01-01T00:00:02Z")
    slots.wait("a", "2026-01-01T00:00:01Z")
    slots.wait("c", "2026-01-01T00:00:03Z")
    assert slots.grant(live_pods=1, passed_over=nobody) == ["a", "b"]
    assert slots.is_granted("a") and slots.holds_slot("b") and not slots.holds_slot("c")
    # granted slots count as being created: none is free until one is given back
    assert slots.grant(live_pods=1, passed_over=nobody) == []
    assert slots.release("b") is True
    assert slots.grant(live_pods=1, passed_over=nobody) == ["c"]


def test_a_created_pod_holds_its_slot_until_it_is_indexed():
    slots = Admission(max_sessions=1)
    slots.wait("a", "t1")
    slots.wait("b", "t2")
    assert slots.grant(live_pods=0, passed_over=nobody) == ["a"]
    slots.created("a", indexed=False)
    assert (slots.is_granted("a"), slots.is_unindexed("a")) == (False, True)
    assert slots.grant(live_pods=0, passed_over=nobody) == []  # a's pod, not in the index yet
    slots.pod_indexed("a")  # from now on the index counts it
    assert slots.grant(live_pods=1, passed_over=nobody) == []
    assert slots.grant(live_pods=0, passed_over=nobody) == ["b"]  # a's pod ended


def test_a_pod_indexed_before_the_create_answered_counts_for_itself():
    slots = Admission(max_sessions=1)
    slots.wait("a", "t1")
    slots.grant(live_pods=0, passed_over=nobody)
    slots.created("a", indexed=True)
    assert not slots.holds_slot("a")


def test_sessions_passed_over_leave_the_queue_without_a_slot():
    slots = Admission(max_sessions=1)
    slots.wait("has-a-pod", "t1")
    slots.wait("waits", "t2")
    assert slots.grant(live_pods=0, passed_over=lambda name: name == "has-a-pod") == ["waits"]
    slots.release("waits")
    assert slots.grant(live_pods=0, passed_over=nobody) == []  # has-a-pod was dropped from the queue


def test_a_forgotten_session_leaves_the_queue_and_gives_back_its_slot():
    slots = Admission(max_sessions=1)
    slots.wait("a", "t1")
    slots.wait("b", "t2")
    assert slots.forget("b") is False  # only queued: no slot freed
    assert slots.grant(live_pods=0, passed_over=nobody) == ["a"]
    assert slots.forget("a") is True
    slots.wait("c", "t3")
    assert slots.grant(live_pods=0, passed_over=nobody) == ["c"]
