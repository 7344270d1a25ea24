"""The one timer of all sessions: a heap of deadlines, one per session."""
from myservice_operator.deadlines import Deadlines


def test_due_sessions_come_out_oldest_first_once():
    deadlines = Deadlines()
    for name, when in [("b", 20.0), ("a", 10.0), ("c", 30.0)]:
        deadlines.set(name, when)
    assert deadlines.pop_due(9.9) == []
    assert deadlines.pop_due(20.0) == ["a", "b"]
    assert deadlines.pop_due(20.0) == []
    assert (len(deadlines), deadlines.earliest()) == (1, 30.0)


def test_a_session_has_one_deadline_the_last_one_set():
    deadlines = Deadlines()
    deadlines.set("a", 10.0)
    deadlines.set("a", 50.0)  # e.g. Pending -> Starting: the ready timeout starts again
    assert deadlines.get("a") == 50.0
    assert deadlines.pop_due(49.0) == []
    assert deadlines.pop_due(50.0) == ["a"]


def test_dropping_a_deadline_and_setting_it_again():
    deadlines = Deadlines()
    deadlines.set("a", 10.0)
    deadlines.set("a", None)  # Ready: no clock
    assert (len(deadlines), deadlines.earliest(), deadlines.pop_due(100.0)) == (0, None, [])
    deadlines.set("a", 10.0)
    deadlines.set("a", None)
    deadlines.set("a", 10.0)  # a second (10, a) entry in the heap: still due once
    assert deadlines.pop_due(100.0) == ["a"]


def test_set_says_when_the_sleeper_must_wake():
    deadlines = Deadlines()
    assert deadlines.set("a", 10.0) is True   # the first deadline
    assert deadlines.set("b", 20.0) is False  # later than the earliest
    assert deadlines.set("b", 20.0) is False  # unchanged
    assert deadlines.set("c", 5.0) is True    # earlier
    assert deadlines.set("c", None) is False
