"""Admission: free slots, and the oldest waiting sessions first."""
from myservice_operator.admission import WaitingQueue, free_slots

ENTRIES = [
    ("2026-01-01T00:00:03Z", "c"),
    ("2026-01-01T00:00:01Z", "a"),
    ("2026-01-01T00:00:02Z", "b"),
    ("2026-01-01T00:00:00Z", "y"),
    ("2026-01-01T00:00:00Z", "x"),
]


def queue(entries=ENTRIES) -> WaitingQueue:
    waiting = WaitingQueue()
    for entry in entries:
        waiting.add(entry)
    return waiting


def test_free_slots_count_live_pods_and_pods_being_created():
    assert free_slots(10, live_pods=3, being_created=2) == 5
    assert free_slots(2, live_pods=2, being_created=0) == 0
    assert free_slots(2, live_pods=3, being_created=1) == 0  # capacity lowered under live pods
    assert free_slots(0, live_pods=0, being_created=0) == 0


def test_the_oldest_first_and_same_second_by_name():
    assert queue().take(1, ()) == ["x"]
    assert queue().take(3, ()) == ["x", "y", "a"]
    assert queue().take(10, ()) == ["x", "y", "a", "b", "c"]


def test_taken_sessions_leave_the_queue_and_the_rest_wait_in_order():
    waiting = queue()
    assert waiting.take(2, ()) == ["x", "y"]
    assert len(waiting) == 3 and "x" not in waiting and "a" in waiting
    assert waiting.take(10, ()) == ["a", "b", "c"]
    assert len(waiting) == 0 and waiting.take(5, ()) == []


def test_no_free_slot_admits_nobody_and_keeps_the_queue():
    waiting = queue()
    assert waiting.take(0, ()) == []
    assert waiting.take(-1, ()) == []
    assert len(waiting) == 5
    assert WaitingQueue().take(5, ()) == []


def test_sessions_no_longer_waiting_are_passed_over_not_counted_and_dropped():
    waiting = queue()
    assert waiting.take(2, {"x", "a"}) == ["y", "b"]
    assert "x" not in waiting and "a" not in waiting  # they left without a slot
    assert waiting.take(5, ()) == ["c"]


def test_a_session_is_queued_once_and_can_come_back_after_it_left():
    waiting = queue()
    waiting.add(("2026-01-01T00:00:00Z", "x"))  # a replayed event
    assert len(waiting) == 5
    assert waiting.take(1, ()) == ["x"]
    waiting.add(("2026-01-01T00:00:00Z", "x"))  # its admission failed: it asks again
    assert waiting.take(2, ()) == ["x", "y"]


def test_discarded_sessions_are_never_taken_even_when_added_again_later():
    waiting = queue()
    waiting.discard("x")
    waiting.discard("nobody")
    assert len(waiting) == 4 and "x" not in waiting
    assert waiting.take(1, ()) == ["y"]
    waiting.add(("2026-01-01T00:00:09Z", "x"))  # back, with its stale entry still in the heap
    assert waiting.take(10, ()) == ["a", "b", "c", "x"]
    assert len(waiting) == 0


def test_ten_thousand_waiting_cost_a_heap_operation_each_not_a_scan():
    waiting = queue([(f"2026-01-01T{i // 3600:02d}:{i // 60 % 60:02d}:{i % 60:02d}Z", f"s{i:05d}") for i in range(10_000)])
    calls = 0

    class Counting:
        def __contains__(self, name):
            nonlocal calls
            calls += 1
            return False

    assert waiting.take(3, Counting()) == ["s00000", "s00001", "s00002"]
    assert calls == 3  # looked at three entries, not ten thousand
