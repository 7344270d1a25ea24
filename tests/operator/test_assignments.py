"""Pool pods given to sessions and not labelled yet (assignments.py): one pod per session,
one session per pod, and what is still to send."""
from myservice_operator.assignments import Assignments


def test_a_pod_is_one_sessions_and_a_session_has_one_pod():
    a = Assignments()
    a.assign("p1", "s1")
    assert (a.session_of("p1"), a.pod_of("s1"), len(a)) == ("s1", "p1", 1)
    a.assign("p2", "s1")  # a new pod for s1 (its first one not usable): the old entry goes
    assert (a.session_of("p1"), a.pod_of("s1"), len(a)) == (None, "p2", 1)


def test_the_label_is_needed_until_sent_and_not_again_at_a_version_that_met_a_newer_pod():
    a = Assignments()
    assert a.needs_label("p1") is False  # not assigned: nothing to label
    a.assign("p1", "s1")
    assert a.needs_label("p1", "7") is True
    a.stale("p1", "7")
    assert a.needs_label("p1", "7") is False and a.needs_label("p1", "8") is True
    a.labelled("p1")
    assert a.needs_label("p1") is False and a.session_of("p1") == "s1"  # held until its event


def test_drop_forgets_both_sides_and_says_whose_it_was():
    a = Assignments()
    a.assign("p1", "s1")
    a.labelled("p1")
    assert a.drop("p1") == "s1" and a.drop("p1") is None
    assert (a.pod_of("s1"), len(a)) == (None, 0)
    a.assign("p1", "s2")
    assert a.needs_label("p1") is True  # a new assignment starts afresh
