"""Shared fixtures: real gateways and instances on loopback, real processes."""
from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

# As the gateway's cli does, before grpc is imported: gRPC's fork handlers are not
# needed for fork+exec, and in a child of this many-threaded process they can abort it.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")

import grpc  # noqa: E402 - after the fork setting
import pytest

from myservice import contract
from myservice.v1 import myservice_pb2 as pb
from myservice.v1 import myservice_pb2_grpc as pb_grpc
from myservice_gateway import settings as gateway_settings
from myservice_gateway.server import make_backend, start_gateway

BIN = Path(sys.executable).parent
KEY = b"k" * 32


def make_settings(**overrides) -> gateway_settings.GatewaySettings:
    values = dict(host="127.0.0.1", port=0, jwt_key=KEY, dev_user=True,
                  # Tests log in many sessions at once on a busy machine: Login's wait for a
                  # hashing thread is opened here and tested with its own values
                  # (tests/gateway/test_login_guard.py, test_login_abuse.py).
                  login_queue_max_wait=120.0,
                  # The product's default front (HAProxy 3.0 where found on PATH: make test puts
                  # it there) unless MYSERVICE_TEST_FRONT says haproxy or none (make test runs
                  # tests/gateway and tests/instance again with none); test_front*.py run both.
                  front=os.environ.get("MYSERVICE_TEST_FRONT") or None)
    values.update(overrides)
    return gateway_settings.GatewaySettings(**values)


async def echo(gw, metadata, value="v"):
    """One MyServiceEcho through a test gateway."""
    return await gw.stub.MyServiceEcho(pb.EchoRequest(value=value), metadata=metadata)


async def error_of(awaitable):
    """(code, details) of the gRPC error the call must end with."""
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await awaitable
    return e.value.code(), e.value.details()


def md(token: str, session_id: str):
    return ((contract.AUTHORIZATION, token), (contract.SESSION_ID, session_id))


class GatewayClient:
    """A gateway running in this process plus an aio client channel to it."""

    def __init__(self, gateway, channel):
        self.gateway = gateway
        self.channel = channel
        self.stub = pb_grpc.MyServiceStub(channel)

    @property
    def backend(self):
        return self.gateway.backend

    async def login(self, session_id: str, username: str = "TestUser", password: str = "TestPassword"):
        return await self.stub.Login(pb.LoginRequest(username=username, password=password, session_id=session_id))

    async def session(self, session_id: str):
        """Login and return the metadata for the session's calls."""
        return md((await self.login(session_id)).token, session_id)


@pytest.fixture
async def make_gateway():
    """Start gateways (local backend unless given) with settings overrides."""
    started = []

    async def start(backend=None, **overrides):
        settings = make_settings(**overrides)
        if backend is None:
            backend = make_backend(settings)
        gateway = await start_gateway(settings, backend)
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{gateway.port}")
        started.append((gateway, channel))
        return GatewayClient(gateway, channel)

    yield start
    for gateway, channel in started:
        await channel.close()
        await gateway.stop(grace=1)


@pytest.fixture
async def gw(make_gateway):
    return await make_gateway()


def children_of(pid: int) -> list[int]:
    """Live child pids of `pid`, from /proc."""
    result = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            result.append(int(entry))
    return result


def front_pids(gateway) -> list[int]:
    """The HAProxy front's process (a child of the gateway's process, not an instance),
    or none: the Python gateway alone (MYSERVICE_TEST_FRONT=none, or no HAProxy 3.0 found)."""
    front = gateway.front
    process = front.haproxy.process if front else None
    return [process.pid] if process is not None else []


def pid_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def wait_until(predicate, timeout: float = 10.0, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


async def eventually(predicate, timeout: float = 10.0, interval: float = 0.02) -> bool:
    """wait_until for async tests: the event loop runs while it waits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(interval)
    return predicate()


def write_users_file(path: Path, passwords: dict[str, str]) -> str:
    """A users file of these users (argon2id hashes, role user); its path as a string."""
    from myservice_gateway.users import hash_password

    path.write_text(json.dumps({"users": {
        name: {"password_hash": hash_password(password), "role": "user"} for name, password in passwords.items()}}))
    return str(path)


async def login_outcome(gw, username, password, session_id="s"):
    """A Login's role, or (code, details) of its refusal."""
    try:
        reply = await gw.stub.Login(pb.LoginRequest(username=username, password=password, session_id=session_id))
    except grpc.aio.AioRpcError as e:
        return e.code(), e.details()
    return reply.role


class UpProcess:
    """`myservice up` as a real child process."""

    def __init__(self, *args: str, env: dict | None = None):
        self.port = _free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [str(BIN / "myservice"), "up", "--host", "127.0.0.1", "--port", str(self.port), *args],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            # As make_settings: the product's default front unless asked (a --front flag wins).
            env={**{k: v for k, v in os.environ.items() if k != "MYSERVICE_FRONT"},
                 **({"MYSERVICE_FRONT": os.environ["MYSERVICE_TEST_FRONT"]}
                    if os.environ.get("MYSERVICE_TEST_FRONT") else {}), **(env or {})})
        self.lines: list[str] = []
        for line in self.proc.stdout:
            self.lines.append(line)
            if "gateway listening" in line:
                break
        else:
            raise RuntimeError("myservice up did not start:\n" + "".join(self.lines))

    def stop(self, sig=signal.SIGTERM, timeout: float = 15) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def up_process():
    started = []

    def start(*args, env=None):
        p = UpProcess(*args, env=env)
        started.append(p)
        return p

    yield start
    for p in started:
        p.stop(signal.SIGKILL)
