"""Admission: free slots, and the oldest waiting sessions first."""
from myservice_operator.admission import free_slots, next_admitted

QUEUE = [
    ("2026-01-01T00:00:03Z", "c"),
    ("2026-01-01T00:00:01Z", "a"),
    ("2026-01-01T00:00:02Z", "b"),
    ("2026-01-01T00:00:00Z", "y"),
    ("2026-01-01T00:00:00Z", "x"),
]


def test_free_slots_count_live_pods_and_pods_being_created():
    assert free_slots(10, live_pods=3, being_created=2) == 5
    assert free_slots(2, live_pods=2, being_created=0) == 0
    assert free_slots(2, live_pods=3, being_created=1) == 0  # capacity lowered under live pods
    assert free_slots(0, live_pods=0, being_created=0) == 0


def test_the_oldest_first_and_same_second_by_name():
    assert next_admitted(QUEUE, 1, ()) == ["x"]
    assert next_admitted(QUEUE, 3, ()) == ["x", "y", "a"]
    assert next_admitted(QUEUE, 10, ()) == ["x", "y", "a", "b", "c"]


def test_no_free_slot_admits_nobody():
    assert next_admitted(QUEUE, 0, ()) == []
    assert next_admitted(QUEUE, -1, ()) == []
    assert next_admitted([], 5, ()) == []


def test_sessions_being_admitted_or_with_a_pod_are_passed_over_not_counted():
    assert next_admitted(QUEUE, 2, {"x", "a"}) == ["y", "b"]
