"""A warm pool member's clocks (`--wait-for-claim`): idle and lifetime start at its
claim (SIGUSR1), not at its start; on a fake clock, then as a real process."""
import os
import signal
import subprocess
import sys
import time

import grpc

from myservice.v1 import myservice_pb2 as pb
from myservice.v1 import myservice_pb2_grpc as pb_grpc
from myservice_instance.limits import Activity, Ending, Limits


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_an_unclaimed_member_never_expires_and_needs_no_timer():
    clock = Clock()
    a = Activity(Limits(idle_timeout=10, max_lifetime=30), clock=clock, started=False)
    assert a.expired(1000.0 + 86400) is None
    assert a.next_check(1000.0) is None


def test_both_clocks_start_at_the_claim():
    clock = Clock()
    a = Activity(Limits(idle_timeout=10, max_lifetime=30), clock=clock, started=False)
    clock.now = 1500.0
    assert a.start_clocks() is True
    assert a.start_clocks() is False  # a second claim signal changes nothing
    assert a.next_check(1500.0) == 1510.0
    assert a.expired(1509.9) is None
    assert a.expired(1510.0) == Ending("IdleTimeout", "no call for 10s")
    a.call_started()
    clock.now = 1525.0
    a.call_ended()  # idle until 1535, but the lifetime (from the claim) ends at 1530
    assert a.expired(1529.9) is None
    assert a.expired(1530.0) == Ending("LifetimeExceeded", "session reached its maximum lifetime of 30s")


def test_a_call_before_the_claim_signal_starts_the_clocks_and_the_signal_changes_nothing():
    clock = Clock()
    a = Activity(Limits(idle_timeout=10, max_lifetime=0), clock=clock, started=False)
    a.call_started()  # the session's first call can arrive before the signal: it is the claim
    assert a.next_check(1000.0) == 1010.0  # busy: at least one idle timeout away
    clock.now = 1001.0
    assert a.start_clocks() is False
    clock.now = 1002.0
    a.call_ended()
    assert a.expired(1011.9) is None
    assert a.expired(1012.0) == Ending("IdleTimeout", "no call for 10s")


def start_instance(*flags: str) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, "-m", "myservice_instance", "--host", "127.0.0.1", "--port", "0",
                             "--announce-port", "--termination-log", "", *flags],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = proc.stdout.readline()
    assert line.startswith("LISTENING "), line
    return proc, f"127.0.0.1:{line.split()[1]}"


def test_a_member_waits_unclaimed_then_idles_out_from_its_claim():
    proc, address = start_instance("--wait-for-claim", "--idle-timeout", "0.5")
    try:
        time.sleep(1.5)  # three idle timeouts, unclaimed
        assert proc.poll() is None
        os.kill(proc.pid, signal.SIGUSR1)
        claimed = time.monotonic()
        with grpc.insecure_channel(address) as channel:
            reply = pb_grpc.MyServiceStub(channel).MyServiceEcho(pb.EchoRequest(value="v"),
                                                                  metadata=(("session-id", "s"),), timeout=5)
        assert reply.server_session_id == "s"
        assert proc.wait(timeout=10) == 0
        assert 0.4 < time.monotonic() - claimed < 8
        assert proc.stdout.read() == "ENDED IdleTimeout no call for 0.5s\n"
    finally:
        proc.kill()
        proc.wait()


def test_a_plain_instance_ignores_the_claim_signal():
    proc, _ = start_instance("--idle-timeout", "0")
    try:
        os.kill(proc.pid, signal.SIGUSR1)  # SIGUSR1's default action would end it
        time.sleep(0.5)
        assert proc.poll() is None
    finally:
        proc.kill()
        proc.wait()


def test_on_kubernetes_the_first_call_is_the_claim():
    # a pool pod gets no signal: the session's first call starts both clocks
    clock = Clock()
    a = Activity(Limits(idle_timeout=10, max_lifetime=30), clock=clock, started=False)
    clock.now = 5000.0  # an hour in the pool
    assert a.expired(5000.0) is None and a.next_check(5000.0) is None
    a.call_started()
    clock.now = 5001.0
    a.call_ended()
    assert a.expired(5010.9) is None
    assert a.expired(5011.0) == Ending("IdleTimeout", "no call for 10s")
    assert a.start_clocks() is False  # a late claim signal changes nothing


def test_the_pool_pods_env_makes_a_member():
    from myservice_api import settings
    from myservice_instance.__main__ import WAIT_FOR_CLAIM_ENV, InstanceSettings, build_parser

    def member(argv: list[str], env: dict[str, str]) -> bool:
        flags = settings.flag_values(build_parser("x").parse_args(argv), InstanceSettings)
        return settings.parse(InstanceSettings, env, flags=flags).wait_for_claim
    assert member([], {WAIT_FOR_CLAIM_ENV: "1"}) is True
    assert member([], {WAIT_FOR_CLAIM_ENV: "0"}) is False
    assert member([], {WAIT_FOR_CLAIM_ENV: "true"}) is False  # only 1, as the operator sets it
    assert member(["--wait-for-claim"], {}) is True


def test_a_member_claimed_by_its_first_call_alone_idles_out_too():
    """No claim signal (a Kubernetes pool pod): the first call starts the clocks and arms the timer."""
    proc, address = start_instance("--wait-for-claim", "--idle-timeout", "0.5")
    try:
        time.sleep(1.0)  # two idle timeouts, unclaimed
        assert proc.poll() is None
        with grpc.insecure_channel(address) as channel:
            pb_grpc.MyServiceStub(channel).MyServiceEcho(pb.EchoRequest(value="v"), metadata=(("session-id", "s"),),
                                                         timeout=5)
        called = time.monotonic()
        assert proc.wait(timeout=10) == 0
        assert 0.4 < time.monotonic() - called < 8
        assert proc.stdout.read() == "ENDED IdleTimeout no call for 0.5s\n"
    finally:
        proc.kill()
        proc.wait()
