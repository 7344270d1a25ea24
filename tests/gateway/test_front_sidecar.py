"""The front run apart (MYSERVICE_FRONT_DIRECTORY, the chart's front container): a real
HAProxy started by the test on the haproxy.cfg the gateway wrote into the shared
directory, real gRPC, real instances. The gateway does not start HAProxy; it finds it,
gives it the map, and gives it the whole map again when a new HAProxy comes; a gateway
that goes away leaves HAProxy serving the Ready sessions while what needs Python fails
fast, and a gateway that comes back takes over the same HAProxy."""
from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time

import grpc

import pytest

from grpc_health.v1 import health_pb2, health_pb2_grpc
from myservice import errors
from myservice.v1 import myservice_pb2 as pb
from myservice.v1 import myservice_pb2_grpc as pb_grpc
from myservice_gateway.front import files, sidecar
from myservice_gateway.front.config import SOFT_STOP_SECONDS
from myservice_gateway.server import STOP_GRACE_SECONDS

from ..conftest import _free_port, echo, error_of, md
from .test_front import HAPROXY, code_and_text, python_calls, settled, until

pytestmark = pytest.mark.skipif(HAPROXY is None, reason="haproxy is not installed (make test installs it)")


class Haproxy:
    """HAProxy as the front container runs it: on the shared directory's haproxy.cfg."""

    def __init__(self, directory: str) -> None:
        self.config = os.path.join(directory, files.CONFIG_NAME)
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        self.process = subprocess.Popen([HAPROXY, "-db", "-q", "-f", self.config], stdin=subprocess.DEVNULL)

    def kill(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()


@pytest.fixture
def shared(tmp_path):
    directory = tmp_path / "front"
    directory.mkdir(mode=0o700)
    haproxy = Haproxy(str(directory))
    yield str(directory), haproxy
    haproxy.kill()


async def apart(make_gateway, directory: str, port: int, **settings):
    return await make_gateway(front="haproxy", front_directory=directory, port=port, **settings)


async def seen(gw, starts: int) -> bool:
    """The gateway has seen `starts` HAProxys and given the last its map."""
    watcher = gw.gateway.front.haproxy
    if watcher.starts < starts:
        return False
    await settled(gw)
    return True


async def test_the_gateway_writes_the_config_and_serves_behind_the_haproxy_it_finds(make_gateway, shared):
    directory, haproxy = shared
    port = _free_port()
    gw = await apart(make_gateway, directory, port)
    watcher = gw.gateway.front.haproxy
    assert isinstance(watcher, sidecar.HaproxySidecar) and gw.gateway.port == port
    # Files of the pod's one user only: the key is in haproxy.cfg.
    config = os.path.join(directory, files.CONFIG_NAME)
    assert os.stat(config).st_mode & 0o777 == 0o600
    with open(config) as f:
        text = f.read()
    assert f"bind 127.0.0.1:{port} proto h2" in text and "fd@" not in text
    assert f"unix@{os.path.join(directory, files.GATEWAY_SOCKET_NAME)}" in text
    assert watcher.starts == 0  # none yet: the gateway started first, as in a pod
    haproxy.start()
    assert await until(lambda: seen(gw, 1), timeout=15)
    metadata = await gw.session("apart")
    first = await echo(gw, metadata)
    await settled(gw)
    assert list(await watcher.client.show_map(watcher.map_file)) == ["TestUser/apart"]
    before = python_calls(gw)
    for _ in range(3):
        assert (await echo(gw, metadata)).pod_name == first.pod_name
    assert python_calls(gw) == before  # HAProxy alone


async def test_a_new_haproxy_is_given_the_whole_map(make_gateway, shared):
    directory, haproxy = shared
    gw = await apart(make_gateway, directory, _free_port())
    haproxy.start()
    assert await until(lambda: seen(gw, 1), timeout=15)
    metadata = await gw.session("kept")
    first = await echo(gw, metadata)
    await settled(gw)
    haproxy.kill()  # its container restarts: a new HAProxy, an empty map loaded from the file
    haproxy.start()
    assert await until(lambda: seen(gw, 2), timeout=15)
    watcher = gw.gateway.front.haproxy
    assert "TestUser/kept" in await watcher.client.show_map(watcher.map_file)
    before = python_calls(gw)
    assert (await echo(gw, metadata)).pod_name == first.pod_name
    assert python_calls(gw) == before  # through the map given back, not Python


async def test_ready_sessions_outlive_the_gateway_and_logins_fail_fast_until_it_is_back(make_gateway, shared):
    directory, haproxy = shared
    port = _free_port()
    gw = await apart(make_gateway, directory, port)
    haproxy.start()
    assert await until(lambda: seen(gw, 1), timeout=15)
    metadata = await gw.session("alone")
    first = await echo(gw, metadata)
    await settled(gw)
    # The gateway's process gone (its container killed): its server and its watch of HAProxy.
    await gw.gateway.server.stop(0)
    await gw.gateway.front.haproxy.stop()
    for _ in range(5):
        assert (await echo(gw, metadata)).pod_name == first.pod_name
    started = time.monotonic()
    assert await error_of(gw.login("new")) == code_and_text(errors.backend_unavailable())
    assert time.monotonic() - started < 2
    # A gateway back on the same directory (its container restarted) takes the same HAProxy
    # over: it rebinds the socket, rewrites the same config, and gives HAProxy its own map.
    pid = haproxy.process.pid
    back = await apart(make_gateway, directory, port)
    assert await until(lambda: seen(back, 1), timeout=15)
    assert haproxy.process.pid == pid and haproxy.process.poll() is None
    assert await until(lambda: _logs_in(back), timeout=10)


async def test_a_gateway_apart_told_to_stop_lets_its_stream_run_as_long_as_haproxy_would(make_gateway, shared):
    """SIGTERM reaches the gateway container 2 s into HAProxy's soft stop (the chart's
    preStops), which lets HAProxy's own calls run up to SOFT_STOP_SECONDS. A stream that
    began as a session's first call runs through Python: it gets as long, not the
    5 s a gateway with HAProxy as its child gives."""
    directory, haproxy = shared
    port = _free_port()
    gw = await apart(make_gateway, directory, port)
    assert gw.gateway.stop_grace == SOFT_STOP_SECONDS > STOP_GRACE_SECONDS
    haproxy.start()
    assert await until(lambda: seen(gw, 1), timeout=15)
    metadata = await gw.session("long-chat")
    said: asyncio.Queue[str | None] = asyncio.Queue()

    async def lines():
        while (value := await said.get()) is not None:
            yield pb.EchoRequest(value=value)
    await said.put("first")
    chat = gw.stub.MyServiceChat(lines(), metadata=metadata)  # the first call: through Python
    assert (await chat.read()).client_value == "first"
    stopping = asyncio.create_task(gw.gateway.stop(gw.gateway.stop_grace))
    await asyncio.sleep(STOP_GRACE_SECONDS + 1)
    await said.put("still here")
    assert (await chat.read()).client_value == "still here"
    assert not stopping.done()
    await said.put(None)  # the client ends its stream: the gateway's stop ends with it
    assert await chat.code() == grpc.StatusCode.OK
    await asyncio.wait_for(stopping, 3)


# A Python gateway that dies (SIGKILL-like: no GOAWAY, no answer) at the first call it
# receives that is not a health check; health checks it answers (the test's sign that
# HAProxy's check sees it up).
DYING_GATEWAY = """
import os, sys
from concurrent import futures
import grpc
class Handlers(grpc.GenericRpcHandler):
    def service(self, details):
        if details.method == "/grpc.health.v1.Health/Check":
            return grpc.unary_unary_rpc_method_handler(lambda request, context: b"")
        return grpc.unary_unary_rpc_method_handler(lambda request, context: os._exit(9))
server = grpc.server(futures.ThreadPoolExecutor(2))
server.add_generic_rpc_handlers((Handlers(),))
server.add_insecure_port("unix:" + sys.argv[1])
server.start()
print("listening", flush=True)
server.wait_for_termination()
"""


async def test_a_login_in_flight_when_the_gateway_dies_fails_at_once(make_gateway, shared):
    """The gateway's process killed with a Login in flight: UNAVAILABLE at once. HAProxy
    sent it on its HTTP/2 connection to the gateway that earlier calls opened, and that
    connection closed unanswered: HAProxy resets the client's stream with REFUSED_STREAM
    (by its design: not processed, the client may retry), which grpc reports with its own
    text. `retry-on empty-response` does not change it (tried on HAProxy 3.0). The next
    Login, the gateway gone, has the contract's text. This is e2e check 21's race made
    certain: there the Login follows the kill, and gets the contract's text unless it
    reaches HAProxy before HAProxy has seen that connection close."""
    directory, haproxy = shared
    port = _free_port()
    gw = await apart(make_gateway, directory, port)
    haproxy.start()
    assert await until(lambda: seen(gw, 1), timeout=15)
    await gw.gateway.server.stop(0)
    await gw.gateway.front.haproxy.stop()
    dying = _dying_gateway(os.path.join(directory, files.GATEWAY_SOCKET_NAME))
    try:
        assert await until(lambda: _checks(port), timeout=15)  # HAProxy's check sees it up
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = pb_grpc.MyServiceStub(channel)
            login = pb.LoginRequest(username="TestUser", password="TestPassword", session_id="in-flight")
            started = time.monotonic()
            assert await error_of(stub.Login(login, timeout=5)) == (
                grpc.StatusCode.UNAVAILABLE, "Stream removed (RST_STREAM (Received RST_STREAM with error code 7))")
            assert time.monotonic() - started < 1
            assert dying.wait(5) == 9  # it died of that Login
            started = time.monotonic()
            assert await error_of(stub.Login(login, timeout=5)) == code_and_text(errors.backend_unavailable())
            assert time.monotonic() - started < 2
    finally:
        if dying.poll() is None:
            dying.kill()
            dying.wait()


def _dying_gateway(socket: str) -> subprocess.Popen:
    if os.path.exists(socket):
        os.unlink(socket)
    process = subprocess.Popen([sys.executable, "-c", DYING_GATEWAY, socket], stdout=subprocess.PIPE)
    assert process.stdout.readline().strip() == b"listening"
    return process


async def _checks(port: int) -> bool:
    """A health check through HAProxy reaches the (dying) gateway, on a connection of its own."""
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        try:
            await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=2)
            return True
        except grpc.aio.AioRpcError:
            return False


async def _logs_in(gw) -> bool:
    try:
        await gw.login("after")
        return True
    except Exception:  # UNAVAILABLE until HAProxy's check (each second) sees the new socket
        return False


def test_identity_reads_pid_and_start_time():
    info = "Name: HAProxy\nVersion: 3.0.11\nPid: 1\nUptime_sec: 4\nStart_time_sec: 1796427574\n"
    assert sidecar.identity(info) == ("1", "1796427574")
    assert sidecar.identity("Name: HAProxy\n") is None


def test_the_directory_needs_the_haproxy_front():
    from myservice_gateway.front import front as fronts

    with pytest.raises(ValueError, match="MYSERVICE_FRONT_DIRECTORY needs MYSERVICE_FRONT=haproxy"):
        fronts.choose(None, backend="kubernetes", apart="/run/front")
    choice = fronts.choose("haproxy", backend="kubernetes", apart="/run/front", which=lambda name: None)
    assert choice.front == fronts.HAPROXY and choice.haproxy is None  # no binary needed in this container
    assert fronts.choose("none", backend="kubernetes", apart="/run/front").front == fronts.NONE


async def test_a_gateway_back_with_a_rotated_key_gives_it_to_the_running_haproxy(make_gateway, shared):
    """The JWT Secret rotated, then the gateway container restarted (not the pod): HAProxy,
    started with the old key in its haproxy.cfg, checks tokens with the new one (set var)."""
    directory, haproxy = shared
    port = _free_port()
    old_key, new_key = b"o" * 32, b"n" * 32
    gw = await apart(make_gateway, directory, port, jwt_key=old_key)
    haproxy.start()
    assert await until(lambda: seen(gw, 1), timeout=15)
    stale = await gw.session("stale-key")  # a token signed with the old key
    await gw.gateway.server.stop(0)
    await gw.gateway.front.haproxy.stop()
    back = await apart(make_gateway, directory, port, jwt_key=new_key)
    assert await until(lambda: seen(back, 1), timeout=15)
    assert await until(lambda: _logs_in(back), timeout=10)
    metadata = await back.session("new-key")
    assert (await echo(back, metadata)).server_session_id == "new-key"
    await settled(back)
    before = python_calls(back)
    assert (await echo(back, metadata)).server_session_id == "new-key"
    assert python_calls(back) == before  # checked and routed by HAProxy, with the new key
    # The old key's token is refused by HAProxy itself (the Python gateway never sees it).
    assert await error_of(echo(back, md(token_of(stale), "stale-key"))) == code_and_text(errors.invalid_token())
    assert python_calls(back) == before
    assert haproxy.process.poll() is None  # the same HAProxy throughout


def token_of(metadata) -> str:
    return dict(metadata)["authorization"]


async def test_a_directory_that_is_not_there_is_a_settings_error(make_gateway, tmp_path):
    from myservice_gateway.settings import SettingsError

    with pytest.raises(SettingsError, match=r"MYSERVICE_FRONT_DIRECTORY: .*/nowhere is not a directory"):
        await apart(make_gateway, str(tmp_path / "nowhere"), _free_port())
