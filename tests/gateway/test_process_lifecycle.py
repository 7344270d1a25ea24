"""`myservice up` as a real process: stopping it, however, leaves no instance behind
(nor its password-checking process, hashproc.py)."""
import signal
import socket
import subprocess

import grpc
import pytest

from myservice.v1 import myservice_pb2 as pb
from myservice.v1 import myservice_pb2_grpc as pb_grpc

from ..conftest import BIN, children_of, md, pid_alive, wait_until


def start_sessions(address: str, n: int) -> None:
    with grpc.insecure_channel(address) as channel:
        stub = pb_grpc.MyServiceStub(channel)
        for i in range(n):
            token = stub.Login(pb.LoginRequest(username="TestUser", password="TestPassword", session_id=f"p{i}")).token
            stub.MyServiceEcho(pb.EchoRequest(value="v"), metadata=md(token, f"p{i}"), timeout=20)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGKILL])
def test_stopping_the_gateway_leaves_no_instances(up_process, sig):
    up = up_process()
    start_sessions(up.address, 3)
    children = children_of(up.proc.pid)
    # Behind the front (MYSERVICE_TEST_FRONT=haproxy) HAProxy is the gateway's child too.
    fronts = [pid for pid in children if comm(pid) == "haproxy"]
    assert len(fronts) == (1 if any("front: haproxy" in line for line in up.lines) else 0), up.lines
    instances = [pid for pid in children if not is_hash_process(pid) and pid not in fronts]
    # and the process that checked the password
    assert len(instances) == 3 and len(children) == 4 + len(fronts)
    returncode = up.stop(sig)
    assert returncode == (-signal.SIGKILL if sig == signal.SIGKILL else 0)
    assert wait_until(lambda: not any(pid_alive(p) for p in children), timeout=10), "orphan processes"
    assert not any(pid_alive(p) for p in fronts)  # HAProxy too, however the gateway ended


def is_hash_process(pid: int) -> bool:
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        return b"myservice_gateway.hashproc" in f.read()


def comm(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return ""


def test_port_in_use_is_a_clear_error():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        r = subprocess.run([str(BIN / "myservice"), "up", "--host", "127.0.0.1", "--port", str(port)],
                           capture_output=True, text=True, timeout=30)
    assert r.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in r.stderr


def test_bad_configuration_is_a_clear_error():
    r = subprocess.run([str(BIN / "myservice"), "up", "--max-instances", "-3"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 2
    assert "configuration error: --max-instances must be an integer >= 0, got '-3'" in r.stderr
