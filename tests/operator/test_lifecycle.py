"""Where time matters: what a session's reconcile does now, and its next deadline."""
import datetime

import pytest

from myservice_operator.lifecycle import next_deadline, plan
from myservice_operator.settings import Settings
from myservice_operator.times import timestamp

from .podbodies import NOW, T
SETTINGS = Settings(namespace="ns", ready_timeout_seconds=120, finished_ttl_seconds=300)
CREATED = NOW - datetime.timedelta(seconds=60)


def ago(seconds):
    return timestamp(NOW - datetime.timedelta(seconds=seconds))


@pytest.mark.parametrize("status,created,expected", [
    ({}, CREATED, "admit"),
    ({"phase": "Pending"}, NOW - datetime.timedelta(seconds=119), "admit"),
    ({"phase": "Pending"}, NOW - datetime.timedelta(seconds=120), "expire"),
    ({"phase": "Starting", "startedAt": ago(119)}, NOW - datetime.timedelta(seconds=500), "observe"),
    ({"phase": "Starting", "startedAt": ago(120)}, CREATED, "timeout"),
    ({"phase": "Starting"}, NOW - datetime.timedelta(seconds=120), "timeout"),
    ({"phase": "Ready", "startedAt": ago(1000)}, CREATED, "observe"),
    ({"phase": "Completed", "finishedAt": ago(299)}, CREATED, "wait"),
    ({"phase": "Completed", "finishedAt": ago(300)}, CREATED, "delete"),
    ({"phase": "Failed", "finishedAt": ago(10)}, CREATED, "wait"),
    ({"phase": "Failed"}, NOW - datetime.timedelta(seconds=301), "delete"),
])
def test_plan(status, created, expected):
    assert plan(status, created_at=created, now=NOW, settings=SETTINGS) == expected


def test_plan_with_zero_ttl_deletes_at_once():
    settings = Settings(namespace="ns", finished_ttl_seconds=0)
    assert plan({"phase": "Completed", "finishedAt": T}, created_at=CREATED, now=NOW,
                settings=settings) == "delete"


SECOND = datetime.timedelta(seconds=1)


@pytest.mark.parametrize("status,expected", [
    ({}, CREATED + datetime.timedelta(seconds=120) + SECOND),
    ({"phase": "Pending", "reason": "CapacityExceeded"}, CREATED + datetime.timedelta(seconds=120) + SECOND),
    ({"phase": "Starting", "startedAt": T}, NOW + datetime.timedelta(seconds=120) + SECOND),
    ({"phase": "Starting"}, CREATED + datetime.timedelta(seconds=120) + SECOND),
    ({"phase": "Ready", "startedAt": T, "readyAt": T}, None),
    ({"phase": "Completed", "finishedAt": T}, NOW + datetime.timedelta(seconds=300) + SECOND),
    ({"phase": "Failed", "finishedAt": T}, NOW + datetime.timedelta(seconds=300) + SECOND),
])
def test_next_deadline_only_where_time_matters(status, expected):
    assert next_deadline(status, created_at=CREATED, settings=SETTINGS) == expected


@pytest.mark.parametrize("status", [{}, {"phase": "Starting", "startedAt": T}, {"phase": "Completed", "finishedAt": T}])
def test_at_its_deadline_the_plan_has_changed_and_a_moment_before_it_has_not(status):
    deadline = next_deadline(status, created_at=CREATED, settings=SETTINGS)
    before = plan(status, created_at=CREATED, now=deadline - 2 * SECOND, settings=SETTINGS)
    at = plan(status, created_at=CREATED, now=deadline, settings=SETTINGS)
    assert (before, at) in {("admit", "expire"), ("observe", "timeout"), ("wait", "delete")}


def test_a_deadline_is_never_early_for_a_stamp_cut_to_the_second():
    # finished at 03:04:05.900, written "03:04:05Z": the TTL ends at 03:09:05.900 at the earliest
    deadline = next_deadline({"phase": "Completed", "finishedAt": T}, created_at=CREATED, settings=SETTINGS)
    assert deadline >= NOW + datetime.timedelta(seconds=300.9)
