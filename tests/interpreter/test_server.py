"""The interpreter as a real process (python -m myservice_interpreter), called over
loopback as the gateway would: its session's calls with `session-id`."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from interpreter.v1 import interpreter_pb2 as pb
from interpreter.v1 import interpreter_pb2_grpc as pb_grpc

from .conftest import EXAMPLE


def start(*flags: str, env: dict | None = None) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "myservice_interpreter", "--host", "127.0.0.1", "--port", "0", "--announce-port",
         "--termination-log", "", "--pod-name", "interp-under-test", *flags],
        cwd=EXAMPLE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        env={**os.environ, "GRPC_ENABLE_FORK_SUPPORT": "false", **(env or {})})
    line = proc.stdout.readline()
    assert line.startswith("LISTENING "), line
    return proc, f"127.0.0.1:{line.split()[1]}"


@pytest.fixture
def server():
    proc, address = start("--time-limit", "1")
    channel = grpc.insecure_channel(address)
    yield proc, pb_grpc.InterpreterStub(channel), channel
    channel.close()
    proc.kill()
    proc.wait()


def sid(session: str):
    return (("session-id", session),)


def run(stub, code: str, session: str = "s1") -> tuple[str, str, str]:
    reply = stub.Run(pb.RunRequest(code=code), metadata=sid(session), timeout=10)
    return reply.stdout, reply.stderr, reply.error


def worker_pid(stub, session: str = "s1") -> int:
    return int(run(stub, "import os\nos.getpid()", session)[0])


def gone(pid: int, timeout: float = 5) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                    return True
        except OSError:
            return True
        time.sleep(0.05)
    return False


def test_health_serving_for_the_probe_and_the_service(server):
    _, _, channel = server
    health = health_pb2_grpc.HealthStub(channel)
    for name in ("", "interpreter.v1.Interpreter"):
        assert health.Check(health_pb2.HealthCheckRequest(service=name), timeout=5).status == \
            health_pb2.HealthCheckResponse.SERVING


def test_variables_kept_across_ten_calls(server):
    _, stub, _ = server
    assert run(stub, "x = 0") == ("", "", "")
    for _ in range(10):
        assert run(stub, "x += 1") == ("", "", "")
    assert run(stub, "x") == ("10\n", "", "")


def test_errors_and_time_limit_come_back_in_the_answer(server):
    _, stub, _ = server
    out, err, error = run(stub, "print('before')\nraise ValueError('bad')")
    assert (out, err, error.splitlines()[-1]) == ("before\n", "", "ValueError: bad")
    assert run(stub, "while True:\n    pass") == (
        "", "", "TimeLimitExceeded: the code ran for its time limit of 1s and was stopped "
                "(the session's variables are kept)")


def test_the_first_call_binds_the_instance_to_its_session(server):
    _, stub, _ = server
    run(stub, "mine = 1", "s1")
    with pytest.raises(grpc.RpcError) as e:
        run(stub, "mine", "s2")
    assert (e.value.code(), e.value.details()) == (grpc.StatusCode.INTERNAL, "Session conflict: was=s1, now=s2")


def test_shutdown_answers_then_the_process_and_its_worker_exit_0(server):
    proc, stub, _ = server
    pid = worker_pid(stub)
    with pytest.raises(grpc.RpcError) as e:
        stub.Shutdown(pb.ShutdownRequest(), metadata=sid("other"), timeout=5)
    assert (e.value.code(), e.value.details()) == (grpc.StatusCode.PERMISSION_DENIED,
                                                   "Client session mismatch: client=other, server=s1")
    assert stub.Shutdown(pb.ShutdownRequest(), metadata=sid("s1"), timeout=5).pod_name == "interp-under-test"
    assert proc.wait(15) == 0
    assert gone(pid)


def test_shutdown_before_any_call_is_refused(server):
    _, stub, _ = server
    with pytest.raises(grpc.RpcError) as e:
        stub.Shutdown(pb.ShutdownRequest(), metadata=sid("s1"), timeout=5)
    assert (e.value.code(), e.value.details()) == (grpc.StatusCode.PERMISSION_DENIED, "Server session is not set")


def test_malformed_request(server):
    _, _, channel = server
    call = channel.unary_unary("/interpreter.v1.Interpreter/Run")
    with pytest.raises(grpc.RpcError) as e:
        call(b"\xff\xff\xff", metadata=sid("s1"), timeout=5)
    assert (e.value.code(), e.value.details()) == (grpc.StatusCode.INVALID_ARGUMENT, "malformed request")


def test_idle_timeout_ends_it_and_says_why():
    proc, address = start("--idle-timeout", "1")
    with grpc.insecure_channel(address) as channel:
        pid = worker_pid(pb_grpc.InterpreterStub(channel))
        t0 = time.monotonic()
        out, _ = proc.communicate(timeout=15)
    assert proc.returncode == 0
    assert out == "ENDED IdleTimeout no call for 1s\n"
    assert 0.8 <= time.monotonic() - t0 < 10
    assert gone(pid)


def test_a_long_run_keeps_the_session_from_idling_out():
    proc, address = start("--idle-timeout", "1", "--time-limit", "3")
    try:
        with grpc.insecure_channel(address) as channel:
            stub = pb_grpc.InterpreterStub(channel)
            assert run(stub, "import time\ntime.sleep(2)\n'slept'") == ("'slept'\n", "", "")
            assert proc.poll() is None
    finally:
        proc.kill()
        proc.wait()


def test_sigterm_ends_a_running_call_and_the_worker():
    proc, address = start("--time-limit", "60")
    with grpc.insecure_channel(address) as channel:
        stub = pb_grpc.InterpreterStub(channel)
        pid = worker_pid(stub)
        future = stub.Run.future(pb.RunRequest(code="import time\ntime.sleep(60)"), metadata=sid("s1"), timeout=30)
        time.sleep(0.5)
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
        # the SDK's grace (5 s) for the call, then the worker is killed at once
        assert time.monotonic() - t0 < 9
        assert gone(pid)
        with pytest.raises(grpc.RpcError):
            future.result()


def test_settings_errors_name_the_variable():
    proc = subprocess.run([sys.executable, "-m", "myservice_interpreter"], cwd=EXAMPLE, capture_output=True,
                          text=True, env={**os.environ, "MYSERVICE_INTERPRETER_TIME_LIMIT_SECONDS": "0"}, timeout=30)
    assert (proc.returncode, proc.stderr) == (
        2, "error: MYSERVICE_INTERPRETER_TIME_LIMIT_SECONDS must be a number of seconds > 0, got '0'\n")
