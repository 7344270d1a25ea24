"""Idle timeout and maximum lifetime of a real instance process, called over loopback."""
from __future__ import annotations

import asyncio
import os
import queue
import subprocess
import sys
import threading
import time

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from myservice.v1 import myservice_pb2 as pb
from myservice.v1 import myservice_pb2_grpc as pb_grpc
from myservice_instance import app
from myservice_instance.limits import Activity, Limits
from myservice_instance.server import LimitTimer

from ..conftest import BIN

SID = (("session-id", "A"),)


class Running:
    """An instance process started with the given flags, and a channel to it."""

    def __init__(self, tmp_path, *flags: str, env: dict[str, str] | None = None) -> None:
        self.termination_log = tmp_path / "termination-log"
        self.proc = subprocess.Popen(
            [str(BIN / "myservice"), "instance", "--host", "127.0.0.1", "--port", "0", "--pod-name", "limits",
             "--announce-port", "--termination-log", str(self.termination_log), *flags],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        line = self.proc.stdout.readline()
        self.started = time.monotonic()
        assert line.startswith("LISTENING "), line + self.proc.stderr.read()
        self.channel = grpc.insecure_channel(f"127.0.0.1:{line.split()[1]}")
        self.stub = pb_grpc.MyServiceStub(self.channel)

    def wait_end(self, timeout: float = 15) -> tuple[int, str, float]:
        """(exit code, the rest of stdout, seconds from LISTENING to exit)."""
        rest = self.proc.stdout.read()  # EOF when the process exits
        code = self.proc.wait(timeout=timeout)
        return code, rest, time.monotonic() - self.started

    def close(self) -> None:
        self.channel.close()
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.proc.stdout.close()
        self.proc.stderr.close()


@pytest.fixture
def start(tmp_path):
    started: list[Running] = []

    def run(*flags: str, env: dict[str, str] | None = None) -> Running:
        started.append(Running(tmp_path, *flags, env=env))
        return started[-1]
    yield run
    for r in started:
        r.close()


def test_idle_instance_ends_after_its_timeout_and_says_why(start):
    inst = start("--idle-timeout", "1", "--max-lifetime", "0")
    code, rest, seconds = inst.wait_end()
    assert code == 0
    assert rest == "ENDED IdleTimeout no call for 1s\n"
    assert inst.termination_log.read_text() == "IdleTimeout: no call for 1s"
    assert 0.9 <= seconds < 3.0, seconds
    assert "instance ending: IdleTimeout: no call for 1s" in inst.proc.stderr.read()


def test_a_call_restarts_the_idle_clock(start):
    inst = start("--idle-timeout", "1.5")
    time.sleep(1.0)
    assert inst.stub.MyServiceEcho(pb.EchoRequest(value="v"), metadata=SID, timeout=5).client_value == "v"
    called = time.monotonic()
    code, rest, _ = inst.wait_end()
    assert (code, rest) == (0, "ENDED IdleTimeout no call for 1.5s\n")
    assert 1.4 <= time.monotonic() - called < 3.5


def test_an_open_silent_chat_stream_keeps_it_alive_until_it_closes(start):
    inst = start("--idle-timeout", "1")
    close_stream = threading.Event()

    def messages():
        yield pb.EchoRequest(value="hello")
        yield pb.EchoRequest(value="again")
        close_stream.wait()  # then silence, with the stream open

    chat = inst.stub.MyServiceChat(messages(), metadata=SID, timeout=30)
    assert [next(chat).client_value, next(chat).client_value] == ["hello", "again"]
    time.sleep(2.5)  # two and a half idle timeouts of silence
    # still serving (a stopped server would answer UNAVAILABLE), not merely in its stop grace
    assert inst.stub.MyServiceEcho(pb.EchoRequest(value="still"), metadata=SID, timeout=5).client_value == "still"
    close_stream.set()
    assert list(chat) == []  # the stream ends normally (status OK)
    closed = time.monotonic()
    code, rest, _ = inst.wait_end()
    assert (code, rest) == (0, "ENDED IdleTimeout no call for 1s\n")
    assert 0.9 <= time.monotonic() - closed < 3.0
    assert inst.termination_log.read_text() == "IdleTimeout: no call for 1s"


def test_max_lifetime_ends_it_even_while_calls_keep_coming(start):
    inst = start("--idle-timeout", "1", "--max-lifetime", "2")
    answered, failed = 0, []
    while inst.proc.poll() is None and time.monotonic() - inst.started < 10:
        try:
            inst.stub.MyServiceEcho(pb.EchoRequest(value="v"), metadata=SID, timeout=5)
            answered += 1
        except grpc.RpcError as e:
            failed.append((e.code(), time.monotonic() - inst.started))
        time.sleep(0.1)
    code, rest, seconds = inst.wait_end()
    assert (code, rest) == (0, "ENDED LifetimeExceeded session reached its maximum lifetime of 2s\n")
    assert inst.termination_log.read_text() == "LifetimeExceeded: session reached its maximum lifetime of 2s"
    assert 1.9 <= seconds < 4.0, seconds
    assert answered >= 10  # the calls were served up to the end
    # A call after the instance decided to end is told so at once ("has ended": its server still
    # listens while it drains, for STOP_LINGER_SECONDS at least); one that races the final stop of
    # its server finds it gone (UNAVAILABLE, or CANCELLED when it arrived as the server stopped).
    ended = grpc.StatusCode.FAILED_PRECONDITION
    assert all(t >= 1.9 for _, t in failed), failed
    assert all(c == ended or (c in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED)
                              and t >= 1.9 + app.STOP_LINGER_SECONDS) for c, t in failed), failed


def test_health_checks_and_reflection_do_not_keep_it_alive(start):
    inst = start("--idle-timeout", "1")
    health = health_pb2_grpc.HealthStub(inst.channel)
    reflect = reflection_pb2_grpc.ServerReflectionStub(inst.channel)
    checks = 0
    while inst.proc.poll() is None and time.monotonic() - inst.started < 5:
        try:
            health.Check(health_pb2.HealthCheckRequest(service=""), timeout=2)
            list(reflect.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]),
                                              timeout=2))
            checks += 1
        except grpc.RpcError:
            break
        time.sleep(0.1)
    code, rest, seconds = inst.wait_end()
    assert (code, rest) == (0, "ENDED IdleTimeout no call for 1s\n")
    assert seconds < 3.0 and checks >= 5, (seconds, checks)


def test_limits_from_the_environment_and_no_announce_keeps_stdout_empty(tmp_path):
    log = tmp_path / "term"
    env = dict(os.environ, MYSERVICE_SESSION_IDLE_TIMEOUT_SECONDS="0.5", MYSERVICE_SESSION_MAX_LIFETIME_SECONDS="0")
    r = subprocess.run([sys.executable, "-m", "myservice_instance", "--host", "127.0.0.1", "--port", "0",
                        "--termination-log", str(log)], capture_output=True, text=True, env=env, timeout=15)
    assert (r.returncode, r.stdout) == (0, "")
    assert log.read_text() == "IdleTimeout: no call for 0.5s"


def test_shutdown_writes_no_termination_message(start):
    inst = start("--idle-timeout", "30")
    inst.stub.MyServiceEcho(pb.EchoRequest(value="v"), metadata=SID, timeout=5)
    inst.stub.MyServiceShutdown(pb.ShutdownRequest(), metadata=SID, timeout=5)
    code, rest, _ = inst.wait_end()
    assert (code, rest) == (0, "")
    assert not inst.termination_log.exists()


@pytest.mark.parametrize("argv,env,message", [
    (["--idle-timeout", "-1"], {}, "error: --idle-timeout must be a number of seconds >= 0 (0 = off), got '-1'"),
    (["--max-lifetime", "soon"], {}, "error: --max-lifetime must be a number of seconds >= 0 (0 = off), got 'soon'"),
    ([], {"MYSERVICE_SESSION_IDLE_TIMEOUT_SECONDS": "-3"},
     "error: MYSERVICE_SESSION_IDLE_TIMEOUT_SECONDS must be a number of seconds >= 0 (0 = off), got '-3'"),
])
def test_bad_limits_are_a_clear_error(argv, env, message):
    r = subprocess.run([sys.executable, "-m", "myservice_instance", "--port", "0", *argv],
                       capture_output=True, text=True, env=dict(os.environ, **env), timeout=15)
    assert (r.returncode, r.stdout, r.stderr.strip()) == (2, "", message)


def test_the_timer_wakes_once_per_idle_timeout_not_once_per_call():
    async def scenario() -> tuple[int, float, str, float]:
        loop = asyncio.get_running_loop()
        activity = Activity(Limits(idle_timeout=0.2, max_lifetime=0), clock=loop.time)
        ended = loop.create_future()
        timer = LimitTimer(activity, loop=loop, on_expiry=ended.set_result)
        fired = 0
        fire = timer._fire

        def counted() -> None:
            nonlocal fired
            fired += 1
            fire()
        timer._fire = counted
        timer.start()
        begin = loop.time()
        for _ in range(200):  # 200 calls over ~0.8 s, one at a time
            activity.call_started()
            await asyncio.sleep(0.002)
            activity.call_ended()
        busy_until = loop.time()
        ending = await asyncio.wait_for(ended, 5)
        return fired, loop.time() - busy_until, ending.reason, busy_until - begin

    fired, idle_end_after, reason, busy = asyncio.run(scenario())
    assert reason == "IdleTimeout"
    assert 0.19 <= idle_end_after < 0.6
    assert fired <= busy / 0.2 + 3, (fired, busy)
