"""Activity and Limits: when an instance ends on its own, on a fake clock."""
import pytest

from myservice_api import crd
from myservice_api.settings import SettingsError
from myservice_instance.limits import Activity, Ending, Limits, format_seconds


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def activity(idle: float = 10, lifetime: float = 0, clock: Clock | None = None) -> tuple[Activity, Clock]:
    clock = clock or Clock()
    return Activity(Limits(idle_timeout=idle, max_lifetime=lifetime), clock=clock), clock


IDLE_10 = Ending("IdleTimeout", "no call for 10s")
LIFETIME_30 = Ending("LifetimeExceeded", "session reached its maximum lifetime of 30s")


# --- idle ---------------------------------------------------------------------

def test_never_called_instance_idles_out_counted_from_its_start():
    a, _ = activity(idle=10)
    assert a.expired(1009.9) is None
    assert a.expired(1010.0) == IDLE_10
    assert a.next_check(1000.0) == 1010.0


def test_a_finished_call_restarts_the_idle_clock():
    a, clock = activity(idle=10)
    clock.now = 1008.0
    a.call_started()
    a.call_ended()
    assert a.expired(1017.9) is None
    assert a.expired(1018.0) == IDLE_10
    assert a.next_check(1010.0) == 1018.0


def test_a_call_in_flight_is_never_idle_however_long():
    a, clock = activity(idle=10)
    a.call_started()  # an open stream, silent
    assert a.expired(1000.0 + 3600) is None
    # while busy, the idle end is at least one idle timeout from now
    assert a.next_check(1050.0) == 1060.0
    clock.now = 1100.0
    a.call_ended()  # the stream closes
    assert a.expired(1109.9) is None
    assert a.expired(1110.0) == IDLE_10


def test_idle_needs_every_call_to_end():
    a, clock = activity(idle=10)
    a.call_started()
    a.call_started()
    clock.now = 1005.0
    a.call_ended()
    assert a.in_flight == 1
    assert a.expired(1100.0) is None
    clock.now = 1200.0
    a.call_ended()
    assert a.expired(1209.0) is None
    assert a.expired(1210.0) == IDLE_10


# --- lifetime -----------------------------------------------------------------

def test_lifetime_ends_it_even_while_calls_keep_coming():
    a, clock = activity(idle=10, lifetime=30)
    for t in range(1000, 1031, 2):
        clock.now = float(t)
        a.call_started()
        a.call_ended()
        assert a.expired(clock.now) == (LIFETIME_30 if t >= 1030 else None)


def test_lifetime_ends_it_with_a_call_in_flight():
    a, _ = activity(idle=10, lifetime=30)
    a.call_started()
    assert a.expired(1029.0) is None
    assert a.expired(1030.0) == LIFETIME_30
    assert a.next_check(1025.0) == 1030.0


def test_when_both_are_past_the_first_reached_is_the_reason():
    a, _ = activity(idle=10, lifetime=30)
    assert a.expired(1040.0) == IDLE_10  # idle since 1010, lifetime since 1030
    b, _ = activity(idle=40, lifetime=30)
    assert b.expired(1050.0) == LIFETIME_30
    assert b.next_check(1000.0) == 1030.0


# --- off ----------------------------------------------------------------------

def test_zero_turns_a_limit_off():
    a, _ = activity(idle=0, lifetime=0)
    assert a.expired(1e12) is None
    assert a.next_check(1000.0) is None
    only_lifetime, _ = activity(idle=0, lifetime=30)
    only_lifetime.call_started()
    assert only_lifetime.next_check(1000.0) == 1030.0
    assert only_lifetime.expired(1e6) == LIFETIME_30
    only_idle, _ = activity(idle=10, lifetime=0)
    assert only_idle.expired(1e6) == IDLE_10


# --- the texts ----------------------------------------------------------------

def test_ending_line_is_what_the_termination_message_holds():
    assert Ending(crd.Reason.IDLE_TIMEOUT, "no call for 900s").line() == "IdleTimeout: no call for 900s"
    assert (crd.Reason.IDLE_TIMEOUT, crd.Reason.LIFETIME_EXCEEDED) == ("IdleTimeout", "LifetimeExceeded")


def test_default_limits_say_their_seconds():
    a, _ = activity(idle=900, lifetime=86400)
    assert a.expired(1000.0 + 900) == Ending("IdleTimeout", "no call for 900s")
    a.call_started()
    assert a.expired(1000.0 + 86400) == Ending(
        "LifetimeExceeded", "session reached its maximum lifetime of 86400s")


@pytest.mark.parametrize("seconds,text", [(900.0, "900s"), (0.5, "0.5s"), (1e6, "1000000s"), (2.25, "2.25s")])
def test_format_seconds(seconds, text):
    assert format_seconds(seconds) == text


# --- parsing (InstanceSettings: myservice_api.settings) ----------------------------

def parse(flags: dict, env: dict):
    from myservice_api import settings
    from myservice_instance.__main__ import InstanceSettings

    return settings.parse(InstanceSettings, env, flags=flags).limits


def test_limits_from_defaults_env_then_flags():
    assert parse({}, {}) == Limits(900, 86400) == Limits()
    env = {"MYSERVICE_SESSION_IDLE_TIMEOUT_SECONDS": "60", "MYSERVICE_SESSION_MAX_LIFETIME_SECONDS": "0"}
    assert parse({}, env) == Limits(60, 0)
    assert parse({"idle_timeout": "1.5", "max_lifetime": "7200"}, env) == Limits(1.5, 7200)
    assert parse({}, {"MYSERVICE_SESSION_IDLE_TIMEOUT_SECONDS": " "}) == Limits(900, 86400)


@pytest.mark.parametrize("raw", ["-1", "abc", "nan", "inf", ""])
def test_a_flag_that_is_not_a_duration_is_refused(raw):
    with pytest.raises(SettingsError) as e:
        parse({"idle_timeout": raw}, {})
    assert str(e.value) == f"--idle-timeout must be a number of seconds >= 0 (0 = off), got {raw!r}"


def test_the_error_names_the_variable_a_bad_value_came_from():
    with pytest.raises(SettingsError) as e:
        parse({}, {"MYSERVICE_SESSION_MAX_LIFETIME_SECONDS": "-5"})
    assert str(e.value) == "MYSERVICE_SESSION_MAX_LIFETIME_SECONDS must be a number of seconds >= 0 (0 = off), got '-5'"
