"""Safe defaults, with the real `myservice` command: who can log in, and from where.
The development user exists only in `myservice up` without a users file; `up`
listens on loopback unless --host says otherwise; `myservice gateway` has no user
of its own."""
import json
import os
import socket
import subprocess

import grpc
import pytest

from myservice.v1 import myservice_pb2 as pb
from myservice.v1 import myservice_pb2_grpc as pb_grpc
from myservice_gateway import users

from ..conftest import BIN, _free_port

START_TIMEOUT = 30


class Command:
    """`myservice up|gateway ...` as a child process, started and read until it listens or exits."""

    def __init__(self, *args: str, env: dict | None = None) -> None:
        self.port = _free_port()
        environment = {k: v for k, v in os.environ.items() if not k.startswith("MYSERVICE_")}
        self.proc = subprocess.Popen([str(BIN / "myservice"), *args, "--port", str(self.port)],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                     env={**environment, **(env or {})})
        self.lines: list[str] = []
        for line in self.proc.stdout:
            self.lines.append(line)
            if "gateway listening" in line:
                break
        self.output = "".join(self.lines)

    def login(self, username: str, password: str):
        with grpc.insecure_channel(f"127.0.0.1:{self.port}") as channel:
            return pb_grpc.MyServiceStub(channel).Login(
                pb.LoginRequest(username=username, password=password, session_id="s"), timeout=START_TIMEOUT)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            return self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()


@pytest.fixture
def command():
    started = []

    def start(*args, env=None):
        c = Command(*args, env=env)
        started.append(c)
        return c

    yield start
    for c in started:
        c.stop()


@pytest.fixture
def users_file(tmp_path):
    path = tmp_path / "users.json"
    path.write_text(json.dumps({"users": {"alice": {"password_hash": users.hash_password("a-pass")}}}))
    return str(path)


def listening_addresses(port: int) -> set[str]:
    """Local addresses of the LISTEN sockets on `port`, from /proc/net/tcp{,6}
    (IPv4-mapped IPv6 ones as IPv4)."""
    found = set()
    for table, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        try:
            rows = open(table).read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            local, state = row.split()[1], row.split()[3]
            address, _, hex_port = local.partition(":")
            if state == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
                raw = bytes.fromhex(address)
                # /proc prints each 32-bit word in host (little-endian) order.
                raw = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
                address = socket.inet_ntop(socket.AF_INET if width == 8 else socket.AF_INET6, raw)
                found.add(address.removeprefix("::ffff:"))  # grpc binds IPv4 as IPv4-mapped IPv6
    return found


def non_loopback_ipv4() -> str | None:
    """An address of this machine that is not loopback (where a route to outside leaves from), if any."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.250", 9))  # UDP connect sends nothing; it only picks the source address
        except OSError:
            return None
        address = s.getsockname()[0]
    return None if address.startswith("127.") else address


def test_up_listens_on_loopback_only_by_default_and_enables_the_dev_user_loudly(command):
    up = command("up")
    assert f"gateway listening on 127.0.0.1:{up.port}" in up.output, up.output
    assert listening_addresses(up.port) == {"127.0.0.1"}
    other = non_loopback_ipv4()
    if other:  # and a real connection to this machine's other address is refused
        with socket.socket() as s, pytest.raises(ConnectionRefusedError):
            s.settimeout(5)
            s.connect((other, up.port))
    assert "WARNING DEVELOPMENT USER ENABLED" in up.output and "TestUser / TestPassword" in up.output
    assert up.login("TestUser", "TestPassword").role == "user"


def test_up_with_host_listens_where_told(command):
    up = command("up", "--host", "0.0.0.0")
    assert listening_addresses(up.port) in ({"0.0.0.0"}, {"::"})  # grpc binds 0.0.0.0 as [::], dual-stack


def test_up_with_a_users_file_has_no_dev_user(command, users_file):
    up = command("up", env={"MYSERVICE_USERS_FILE": users_file})
    assert "DEVELOPMENT USER" not in up.output
    assert up.login("alice", "a-pass").role == "user"
    with pytest.raises(grpc.RpcError) as e:
        up.login("TestUser", "TestPassword")
    assert (e.value.code(), e.value.details()) == (grpc.StatusCode.PERMISSION_DENIED, "invalid username or password")


def test_gateway_has_no_default_user(command, users_file):
    bare = command("gateway")
    assert bare.proc.wait(START_TIMEOUT) == 2
    assert ("myservice: configuration error: no users: set MYSERVICE_USERS_FILE "
            "(the development user exists only in `myservice up` without one)") in bare.output
    asked = command("gateway", env={"MYSERVICE_USERS_FILE": users_file, "MYSERVICE_DEV_USER": "true"})
    assert asked.proc.wait(START_TIMEOUT) == 2
    assert ("configuration error: MYSERVICE_DEV_USER: the development user exists only in `myservice up` "
            "without MYSERVICE_USERS_FILE") in asked.output
    gateway = command("gateway", "--host", "127.0.0.1", env={"MYSERVICE_USERS_FILE": users_file})
    assert gateway.login("alice", "a-pass").role == "user"
    with pytest.raises(grpc.RpcError) as e:
        gateway.login("TestUser", "TestPassword")
    assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED
