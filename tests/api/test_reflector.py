"""The reflector's decisions (pure), and its loop against a fake list call:
backoff while the API fails, synced once a listing is in, a clean stop.
Against a real API server: tests/kube/test_sessioncache.py."""
from __future__ import annotations

import json
import threading

import pytest

from myservice_api import kubeclient
from myservice_api.reflector import Backoff, Next, Outcome, Reflector, after_list, after_watch

B = Backoff(initial=1.0, cap=8.0)


@pytest.mark.parametrize("failures, rand, delay", [
    (0, 0.5, 0.0),
    (1, 0.0, 0.5), (1, 0.999, 0.9995),
    (2, 0.0, 1.0), (3, 0.0, 2.0), (4, 0.0, 4.0),
    (5, 0.0, 4.0), (50, 0.999, 7.996),  # capped: 8 s at most, jittered over 4..8
])
def test_backoff_doubles_up_to_the_cap_jittered_over_the_upper_half(failures, rand, delay):
    assert B.delay(failures, rand) == pytest.approx(delay)


def test_the_default_backoff_is_client_gos():
    assert Backoff() == Backoff(initial=0.8, cap=30.0)


def test_a_listing_leads_to_a_watch_at_once_and_keeps_the_failure_count():
    assert after_list(True, failures=3, backoff=B, rand=0.0) == Next(relist=False, delay=0.0, failures=3)


def test_a_failed_listing_is_retried_after_a_growing_wait():
    assert after_list(False, failures=0, backoff=B, rand=0.0) == Next(relist=True, delay=0.5, failures=1)
    assert after_list(False, failures=2, backoff=B, rand=0.0) == Next(relist=True, delay=2.0, failures=3)


def test_a_watch_the_server_ended_is_resumed_at_once():
    assert after_watch(Outcome.EXPIRED, progressed=False, failures=4, backoff=B, rand=0.0) == \
        Next(relist=False, delay=0.0, failures=0)


def test_410_relists_at_once_the_first_time():
    assert after_watch(Outcome.GONE, progressed=False, failures=0, backoff=B, rand=0.0) == \
        Next(relist=True, delay=0.0, failures=1)
    assert after_watch(Outcome.GONE, progressed=True, failures=3, backoff=B, rand=0.0) == \
        Next(relist=True, delay=0.0, failures=0)


def test_410_again_straight_after_a_listing_waits():
    assert after_watch(Outcome.GONE, progressed=False, failures=1, backoff=B, rand=0.0) == \
        Next(relist=True, delay=0.5, failures=2)


def test_a_failed_watch_resumes_after_a_growing_wait():
    assert after_watch(Outcome.FAILED, progressed=False, failures=2, backoff=B, rand=0.0) == \
        Next(relist=False, delay=2.0, failures=3)


def test_a_watch_that_worked_before_failing_starts_the_count_again():
    assert after_watch(Outcome.FAILED, progressed=True, failures=5, backoff=B, rand=0.0) == \
        Next(relist=False, delay=0.5, failures=1)


@pytest.mark.parametrize("header, split", [
    (None, (None, None)), ("", (None, None)), ("abc", (None, "abc")), ("Bearer abc", ("Bearer", "abc")),
])
def test_split_authorization(header, split):
    assert kubeclient.split_authorization(header) == split


class _Listing:
    def __init__(self, body: dict) -> None:
        self.data = json.dumps(body).encode()


class _FlakyAPI:
    """Fails `failures` list calls, then lists one object; a watch just ends (no stream)."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.lists = 0
        self.listed = threading.Event()

    def __call__(self, **kwargs):
        if kwargs.get("watch"):
            self.listed.wait(1)  # hold the watch open a little, as a server would
            return iter(())
        self.lists += 1
        if self.lists <= self.failures:
            raise ConnectionError("refused")
        self.listed.set()
        return _Listing({"metadata": {"resourceVersion": "7"}, "items": [{"metadata": {"name": "a"}}]})


def test_the_loop_backs_off_while_listing_fails_then_syncs_and_stops_cleanly(caplog):
    api = _FlakyAPI(failures=3)
    replaced: list[dict] = []
    r = Reflector(api, on_replace=replaced.append, on_change=lambda *a: None,
                  backoff=Backoff(initial=0.01, cap=0.04), rand=lambda: 0.0)
    r.start()
    assert r.synced.wait(5)
    r.stop()
    assert not r._thread.is_alive()
    assert api.lists == 4
    assert replaced == [{"a": {"metadata": {"name": "a"}}}]
    assert r.resource_version == "7" and r.lists == 1
    waits = [m for m in caplog.messages if "retrying in" in m]
    assert waits[:3] == ["reflector: retrying in 0.005s (1 failure(s) in a row)",
                         "reflector: retrying in 0.01s (2 failure(s) in a row)",
                         "reflector: retrying in 0.02s (3 failure(s) in a row)"]
