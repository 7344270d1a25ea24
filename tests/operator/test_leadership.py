"""Lease election (leadership.py): the timing decisions with an injected clock, and the
Elector against a small in-memory Lease API (the e2e check 16 is the proof on a real one)."""
from __future__ import annotations

import datetime

import pytest

from myservice_operator import leadership
from myservice_operator.leadership import Elector, Holding, LeaseTiming, Standby

# The logic tests' timing (figures below); the defaults are checked on their own.
TIMING = LeaseTiming(duration=8, renew_every=4, renew_retry=1, give_up=6, standby_poll=4)
MOMENT = datetime.datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=datetime.timezone.utc)


def lease(holder: str | None, version: str, duration: int | None = 8) -> dict:
    spec = {"holderIdentity": holder} if holder else {}
    if duration is not None and holder:
        spec["leaseDurationSeconds"] = duration
    return {"metadata": {"name": "op", "resourceVersion": version}, "spec": spec}


def test_default_timing_figures():
    # the numbers docs/kubernetes.md states
    default = LeaseTiming()
    assert round(default.idle_requests_per_second(), 2) == 0.73
    assert default.worst_takeover_seconds() == 12
    assert default.duration - default.give_up == 2
    # a renewal that times out (2 s) leaves time for a retry and its answer before giving up
    assert default.renew_every + 2 + default.renew_retry + 1 <= default.give_up


@pytest.mark.parametrize("kwargs", [dict(give_up=9), dict(renew_every=7), dict(give_up=9, duration=8),
                                    dict(standby_poll=0), dict(renew_retry=0)])
def test_timing_refuses_an_unsafe_order(kwargs):
    with pytest.raises(ValueError):
        LeaseTiming(**kwargs)


def test_standby_takes_a_free_lease_at_once():
    assert Standby(TIMING).may_take(lease(None, "1"), now=0, identity="me")
    assert Standby(TIMING).may_take({"metadata": {"resourceVersion": "1"}, "spec": None}, now=0, identity="me")


def test_standby_waits_a_full_duration_without_change_from_when_it_saw_the_version():
    standby = Standby(TIMING)
    held = lease("other", "5")
    assert not standby.may_take(held, now=100, identity="me")  # first sight: the clock starts here
    assert not standby.may_take(held, now=104, identity="me")
    assert not standby.may_take(held, now=107.9, identity="me")
    assert standby.may_take(held, now=108, identity="me")


def test_a_renewal_restarts_the_standbys_wait():
    standby = Standby(TIMING)
    assert not standby.may_take(lease("other", "5"), now=0, identity="me")
    assert not standby.may_take(lease("other", "6"), now=7, identity="me")  # renewed
    assert not standby.may_take(lease("other", "6"), now=14, identity="me")
    assert standby.may_take(lease("other", "6"), now=15, identity="me")


def test_standby_honours_a_longer_duration_the_holder_declared():
    standby = Standby(TIMING)
    assert not standby.may_take(lease("other", "5", duration=20), now=0, identity="me")
    assert not standby.may_take(lease("other", "5", duration=20), now=19, identity="me")
    assert standby.may_take(lease("other", "5", duration=20), now=20, identity="me")
    # a shorter one does not shorten ours
    short = Standby(TIMING)
    assert not short.may_take(lease("other", "1", duration=1), now=0, identity="me")
    assert not short.may_take(lease("other", "1", duration=1), now=7, identity="me")


def test_holder_stops_before_any_standby_may_start():
    # the holder's last confirmed renewal was sent at 10; the standby saw it at 10.3 at the earliest
    holding = Holding(TIMING, acquired_sent_at=10)
    standby = Standby(TIMING)
    assert not standby.may_take(lease("holder", "7"), now=10.3, identity="me")
    stop_at = next(t / 10 for t in range(100, 300) if holding.must_stop(t / 10))
    start_at = next(t / 10 for t in range(103, 300) if standby.may_take(lease("holder", "7"), t / 10, "me"))
    assert (stop_at, start_at) == (16.0, 18.3)
    assert start_at - stop_at >= TIMING.duration - TIMING.give_up


def test_holder_renewal_schedule():
    holding = Holding(TIMING, acquired_sent_at=0)
    assert holding.next_renewal_in(now=0.1, last_failed=False) == pytest.approx(3.9)
    assert holding.next_renewal_in(now=4.2, last_failed=True) == 1.0     # retry soon
    assert holding.next_renewal_in(now=5.5, last_failed=True) == pytest.approx(0.5)  # never past give-up
    assert not holding.must_stop(5.9) and holding.must_stop(6.0)
    holding.renewed(sent_at=4)
    assert not holding.must_stop(9.9) and holding.must_stop(10)
    holding.renewed(sent_at=3)  # an older answer arriving late does not move it back
    assert holding.must_stop(10)


def test_acquired_renewed_released_bodies():
    taken = leadership.acquired(lease("old", "9"), "me", TIMING, MOMENT)
    assert taken["metadata"] == {"name": "op", "resourceVersion": "9"}
    assert taken["spec"] == {"holderIdentity": "me", "leaseDurationSeconds": 8,
                             "acquireTime": "2026-01-02T03:04:05.678901Z",
                             "renewTime": "2026-01-02T03:04:05.678901Z", "leaseTransitions": 1}
    later = MOMENT + datetime.timedelta(seconds=4)
    assert leadership.renewed(taken, later)["spec"]["renewTime"] == "2026-01-02T03:04:09.678901Z"
    assert leadership.released(taken)["spec"]["holderIdentity"] is None
    assert taken["spec"]["holderIdentity"] == "me"  # the inputs are not changed


class FakeLeases:
    """One Lease, with resourceVersion preconditions like the API server."""

    def __init__(self, lease: dict) -> None:
        self.lease, self.version, self.calls = lease, 1, []
        self.lease["metadata"]["resourceVersion"] = "1"
        self.fail = False

    def get_lease(self, name: str) -> dict:
        self.calls.append("get")
        if self.fail:
            raise ConnectionError("apiserver away")
        return {k: dict(v) if isinstance(v, dict) else v for k, v in self.lease.items()}

    def replace_lease(self, lease):
        self.calls.append("update")
        if self.fail:
            raise ConnectionError("apiserver away")
        if lease["metadata"]["resourceVersion"] != self.lease["metadata"]["resourceVersion"]:
            return None
        self.version += 1
        self.lease = {**lease, "metadata": {**lease["metadata"], "resourceVersion": str(self.version)}}
        return self.lease


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_elector_takes_a_free_lease_and_releases_it(monkeypatch):
    monkeypatch.setattr(leadership.time, "sleep", lambda s: pytest.fail("no wait for a free lease"))
    api = FakeLeases(lease(None, "1"))
    elector = Elector(api, "op", "me", timing=TIMING, clock=Clock(), exit_process=pytest.fail)
    elector.wait_until_leader()
    assert api.lease["spec"]["holderIdentity"] == "me" and api.calls == ["get", "update"]
    elector.release()
    assert api.lease["spec"]["holderIdentity"] is None


def test_elector_waits_out_a_dead_holder_on_its_own_clock(monkeypatch):
    clock = Clock()
    sleeps = []

    def sleep(seconds):
        sleeps.append(seconds)
        clock.now += seconds
    monkeypatch.setattr(leadership.time, "sleep", sleep)
    api = FakeLeases(lease("dead", "1"))
    Elector(api, "op", "me", timing=TIMING, clock=clock, exit_process=pytest.fail).wait_until_leader()
    assert sleeps == [4.0, 4.0]  # seen at 0, unchanged at 4, unchanged at 8 = duration: taken
    assert api.lease["spec"]["holderIdentity"] == "me"
    assert api.lease["spec"]["leaseTransitions"] == 1


def test_elector_loses_a_race_to_another_standby(monkeypatch):
    api = FakeLeases(lease(None, "1"))
    rounds = []

    def sleep(seconds):
        rounds.append(seconds)
        if len(rounds) > 1:
            raise StopIteration
    monkeypatch.setattr(leadership.time, "sleep", sleep)
    real_replace = api.replace_lease

    def other_wins(body):
        api.lease = {**api.lease, "spec": {"holderIdentity": "other"},
                     "metadata": {**api.lease["metadata"], "resourceVersion": "2"}}
        return real_replace(body)
    api.replace_lease = other_wins
    with pytest.raises(StopIteration):
        Elector(api, "op", "me", timing=TIMING, clock=Clock(), exit_process=pytest.fail).wait_until_leader()
    assert api.lease["spec"]["holderIdentity"] == "other"


def test_holder_exits_when_it_cannot_renew(monkeypatch):
    clock = Clock()
    api = FakeLeases(lease(None, "1"))
    exits = []
    elector = Elector(api, "op", "me", timing=TIMING, clock=clock, exit_process=exits.append)
    elector.wait_until_leader()
    api.fail = True
    clock.now += 5.9
    assert not elector._holding.must_stop(clock())
    clock.now += 0.1
    assert elector._holding.must_stop(clock())
    elector._lost("test")
    assert exits == [1]


def test_holder_exits_at_once_when_the_lease_changed_under_it(monkeypatch):
    api = FakeLeases(lease(None, "1"))
    exits = []
    elector = Elector(api, "op", "me", timing=TIMING, clock=Clock(), exit_process=exits.append)
    elector.wait_until_leader()
    api.lease = {**api.lease, "metadata": {**api.lease["metadata"], "resourceVersion": "99"}}
    elector._holding.next_renewal_in = lambda now, failed: 0.0
    elector._renew_loop()
    assert exits == [1]
