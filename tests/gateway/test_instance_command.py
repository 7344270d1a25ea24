"""`--instance-command`: a service that is not ours (tests/gateway/foreignservice:
its own proto, compiled here; plain grpcio and grpc.health.v1, nothing of
myservice_instance) as each session's instance, behind a real gateway, as real
processes over loopback TCP."""
from __future__ import annotations

import asyncio
import logging
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from myservice.v1 import myservice_pb2 as pb
from myservice_gateway.backends import commands

from ..conftest import BIN, error_of, md, pid_alive, write_users_file

HERE = Path(__file__).parent / "foreignservice"
SERVICE = "foreignkv.v1.KeyValue"
PASSWORDS = {"alice": "alice-pw", "zoë k": "zoe-pw"}


@pytest.fixture(scope="module")
def kv(tmp_path_factory):
    """The service's stubs generated from kv.proto, and its messages for the client
    from a pool of their own (the gateway in this process must not know them: it
    forwards a user's service without its descriptor)."""
    gen = tmp_path_factory.mktemp("foreignkv")
    subprocess.run([sys.executable, "-m", "grpc_tools.protoc", f"-I{HERE}", f"--python_out={gen}",
                    f"--grpc_python_out={gen}", f"--descriptor_set_out={gen / 'kv.pb'}", "kv.proto"], check=True)
    files = descriptor_pb2.FileDescriptorSet.FromString((gen / "kv.pb").read_bytes())
    pool = descriptor_pool.DescriptorPool()
    for file in files.file:
        pool.Add(file)
    messages = {name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"foreignkv.v1.{name}"))
                for name in ("SetRequest", "SetReply", "GetRequest", "GetReply", "WhoamiRequest", "WhoamiReply",
                             "QuitRequest", "QuitReply")}
    return shlex.join([sys.executable, str(HERE / "server.py"), str(gen)]), messages


@pytest.fixture(scope="module")
def users_file(tmp_path_factory):
    return write_users_file(tmp_path_factory.mktemp("users") / "users.json", PASSWORDS)


class KV:
    """A client of foreignkv.v1.KeyValue through the gateway."""

    def __init__(self, channel: grpc.aio.Channel, messages: dict) -> None:
        self.channel = channel
        self.m = messages

    def _call(self, method: str, reply: str, request, metadata):
        return self.channel.unary_unary(f"/{SERVICE}/{method}", request_serializer=type(request).SerializeToString,
                                        response_deserializer=self.m[reply].FromString)(
            request, metadata=metadata, timeout=30)

    def set(self, key, value, metadata):
        return self._call("Set", "SetReply", self.m["SetRequest"](key=key, value=value), metadata)

    def get(self, key, metadata):
        return self._call("Get", "GetReply", self.m["GetRequest"](key=key), metadata)

    def whoami(self, metadata):
        return self._call("Whoami", "WhoamiReply", self.m["WhoamiRequest"](), metadata)

    def quit(self, metadata):
        return self._call("Quit", "QuitReply", self.m["QuitRequest"](), metadata)


@pytest.fixture
def hosting(make_gateway, kv, users_file):
    """hosting(**settings) -> (gateway client, KV client): the foreign service behind a gateway."""
    command, messages = kv

    async def start(command_line: str = command, **overrides):
        overrides.setdefault("services", (SERVICE,))
        gw = await make_gateway(users_file=users_file, dev_user=False,
                                instance_command=tuple(shlex.split(command_line)), **overrides)
        return gw, KV(gw.channel, messages)
    return start


async def login(gw, user: str, session_id: str):
    return md((await gw.login(session_id, username=user, password=PASSWORDS[user])).token, session_id)


async def test_state_is_sticky_and_the_verified_session_arrives(hosting, monkeypatch):
    monkeypatch.setenv("MYSERVICE_JWT_KEY", "k" * 32)  # the gateway's: never an instance's
    monkeypatch.setenv("MYSERVICE_KV_FLAVOUR", "plain")  # the service's own: passed on
    gw, kv = await hosting()
    alice = await login(gw, "alice", "s1")
    assert (await kv.set("colour", "blue", alice)).size == 1
    for _ in range(10):
        reply = await kv.get("colour", alice)
        assert (reply.found, reply.value) == (True, "blue")
    # A client's own myservice-user is dropped; the gateway's verified values arrive, once each.
    who = await kv.whoami((*alice, ("myservice-user", "root"), ("x-trace", "t1")))
    assert (list(who.session_ids), list(who.users), who.env_session_id) == (["s1"], ["alice"], "s1")
    assert who.pod_name.startswith("myservice-local-")
    assert "authorization" not in who.keys and "x-trace" in who.keys
    assert {"MYSERVICE_INSTANCE_HOST", "MYSERVICE_INSTANCE_PORT", "MYSERVICE_TERMINATION_LOG",
            "MYSERVICE_SESSION_ID", "MYSERVICE_SESSION_USER", "MYSERVICE_SESSION_IDLE_TIMEOUT_SECONDS",
            "MYSERVICE_SESSION_MAX_LIFETIME_SECONDS", "MYSERVICE_KV_FLAVOUR"} <= set(who.env_names)
    assert "MYSERVICE_JWT_KEY" not in who.env_names
    assert gw.backend.live_count == 1


async def test_two_users_with_one_session_id_never_share_an_instance(hosting):
    gw, kv = await hosting()
    alice, zoe = await login(gw, "alice", "same"), await login(gw, "zoë k", "same")
    await kv.set("secret", "alice's", alice)
    reply = await kv.get("secret", zoe)
    assert (reply.found, reply.value) == (False, "")
    alice_who, zoe_who = await kv.whoami(alice), await kv.whoami(zoe)
    assert alice_who.pid != zoe_who.pid
    assert (list(alice_who.users), list(zoe_who.users)) == (["alice"], ["zo%C3%AB%20k"])  # percent-encoded
    assert gw.backend.live_count == 2


async def test_other_services_are_unimplemented_and_start_nothing(hosting):
    gw, _ = await hosting()
    alice = await login(gw, "alice", "s1")
    assert await error_of(gw.stub.MyServiceEcho(pb.EchoRequest(value="v"), metadata=alice)) == (
        grpc.StatusCode.UNIMPLEMENTED, "Method not found!")
    assert gw.backend.live_count == 0


async def test_its_exit_ends_the_session_with_its_reason(hosting, caplog):
    caplog.set_level(logging.INFO, logger="myservice.gateway.local")
    gw, kv = await hosting()
    alice = await login(gw, "alice", "s1")
    pid = (await kv.whoami(alice)).pid
    await kv.quit(alice)
    for _ in range(100):
        if gw.backend.live_count == 0:
            break
        await asyncio.sleep(0.05)
    assert await error_of(kv.get("colour", alice)) == (
        grpc.StatusCode.FAILED_PRECONDITION, "session s1 has ended; log in with a new session_id")
    assert not pid_alive(pid)
    assert any(r.getMessage().endswith("of session alice/s1 exited with 0: Quit (asked by its client)")
               for r in caplog.records), [r.getMessage() for r in caplog.records]


async def test_a_command_that_cannot_start_is_no_instance(hosting):
    gw, kv = await hosting("false")
    alice = await login(gw, "alice", "s1")
    assert await error_of(kv.get("k", alice)) == (grpc.StatusCode.RESOURCE_EXHAUSTED, "no available instances")
    gw, kv = await hosting("sleep 30", instance_start_timeout=0.5)  # never serves health
    alice = await login(gw, "alice", "s2")
    began = time.monotonic()
    assert await error_of(kv.get("k", alice)) == (grpc.StatusCode.RESOURCE_EXHAUSTED, "no available instances")
    assert time.monotonic() - began < 5
    assert gw.backend.process_count == 0


async def test_an_sdk_service_as_a_command_ends_at_its_idle_timeout(hosting, caplog):
    caplog.set_level(logging.INFO, logger="myservice.gateway.local")
    gw, _ = await hosting(shlex.join([sys.executable, "-m", "myservice_instance"]), session_idle_timeout=0.5,
                          services=("myservice.v1.MyService",))
    alice = await login(gw, "alice", "idle")
    reply = await gw.stub.MyServiceEcho(pb.EchoRequest(value="v"), metadata=alice)
    assert (reply.server_session_id, reply.pod_name.startswith("myservice-local-")) == ("idle", True)
    for _ in range(100):
        if gw.backend.live_count == 0:
            break
        await asyncio.sleep(0.05)
    assert await error_of(gw.stub.MyServiceEcho(pb.EchoRequest(value="v"), metadata=alice)) == (
        grpc.StatusCode.FAILED_PRECONDITION, "session idle has ended; log in with a new session_id")
    assert any(r.getMessage().endswith("of session alice/idle exited with 0: IdleTimeout (no call for 0.5s)")
               for r in caplog.records), [r.getMessage() for r in caplog.records]


async def test_a_warm_pool_of_a_command_serves_a_session_and_refills(hosting):
    gw, kv = await hosting(warm_pool=1)
    for _ in range(200):
        if gw.backend.warm_idle_count == 1:
            break
        await asyncio.sleep(0.05)
    member = gw.backend.pool_pids()
    alice = await login(gw, "alice", "warm")
    await kv.set("k", "v", alice)
    who = await kv.whoami(alice)
    assert ([who.pid], who.env_session_id) == (member, "")  # started before its session was known
    assert (await kv.get("k", alice)).value == "v"
    for _ in range(200):
        if gw.backend.warm_idle_count == 1:
            break
        await asyncio.sleep(0.05)
    assert gw.backend.warm_idle_count == 1 and gw.backend.pool_pids() != member


async def test_stopping_the_gateway_ends_every_command(hosting):
    gw, kv = await hosting()
    pids = [(await kv.whoami(await login(gw, "alice", f"s{i}"))).pid for i in range(2)]
    assert all(pid_alive(pid) for pid in pids)
    await gw.gateway.stop(grace=1)
    assert not any(pid_alive(pid) for pid in pids)


def test_a_killed_gateway_leaves_no_command_behind(kv, users_file, tmp_path):
    command, messages = kv
    port = commands.free_port()
    env = dict(os.environ, MYSERVICE_USERS_FILE=users_file)
    gateway = subprocess.Popen([str(BIN / "myservice"), "up", "--port", str(port), "--service", SERVICE,
                                "--instance-command", command], env=env, stderr=subprocess.DEVNULL)
    try:
        async def session_pid() -> int:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                from myservice.v1 import myservice_pb2_grpc as pb_grpc

                reply = await pb_grpc.MyServiceStub(channel).Login(
                    pb.LoginRequest(username="alice", password=PASSWORDS["alice"], session_id="k1"),
                    wait_for_ready=True, timeout=30)
                return (await KV(channel, messages).whoami(md(reply.token, "k1"))).pid
        pid = asyncio.run(session_pid())
        assert pid_alive(pid)
        gateway.send_signal(signal.SIGKILL)
        gateway.wait(10)
        for _ in range(100):
            if not pid_alive(pid):
                break
            time.sleep(0.05)
        assert not pid_alive(pid)
    finally:
        gateway.kill()
        gateway.wait()


def test_the_launcher_says_when_it_cannot_run_the_command():
    r = subprocess.run([sys.executable, "-m", "myservice_gateway.backends.launch", str(os.getpid()), "--",
                        "/nonexistent/serve"], capture_output=True, text=True, timeout=30)
    assert (r.returncode, r.stderr.strip()) == (127, "myservice: cannot run '/nonexistent/serve': No such file or directory")
    r = subprocess.run([sys.executable, "-m", "myservice_gateway.backends.launch", "1"], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 2 and "usage:" in r.stderr


@pytest.mark.parametrize("argv,message", [
    (["up", "--instance-command", 'serve "unclosed'],
     "myservice: configuration error: MYSERVICE_INSTANCE_COMMAND (--instance-command) must be a command line "
     "(split as a shell would: No closing quotation), got 'serve \"unclosed'"),
    (["gateway", "--backend", "kubernetes", "--instance-command", "serve"],
     "myservice: configuration error: MYSERVICE_INSTANCE_COMMAND (--instance-command) is for the local backend: "
     "on Kubernetes the instance is the chart's instance.image"),
])
def test_a_bad_command_setting_is_a_clear_error(argv, message, users_file):
    r = subprocess.run([str(BIN / "myservice"), *argv], capture_output=True, text=True, timeout=30,
                       env=dict(os.environ, MYSERVICE_USERS_FILE=users_file))
    assert (r.returncode, r.stderr.strip()) == (2, message)


def test_the_reason_a_command_wrote_is_read_once(tmp_path):
    log = tmp_path / "termination-log"
    log.write_text("IdleTimeout: no call for 900s\n")
    assert commands.ending_of(str(log)) == "IdleTimeout (no call for 900s)"
    assert not log.exists()  # read once: the file is the instance's alone
    log.write_text("segfault in frobnicator\nmore")
    assert commands.ending_of(str(log)) == "segfault in frobnicator"
    assert commands.ending_of(str(tmp_path / "none")) == "" and commands.ending_of(None) == ""
