"""The HAProxy front against the Python gateway alone (issue 18): real HAProxy, real
gRPC, real instance processes. Every token and header rule answers the same code
and text from both fronts; a Ready session's calls bypass Python; the map follows
sessions and survives a HAProxy restart; the Python gateway's absence does not stop
an established session."""
import asyncio
import os
import shutil
import signal
import subprocess
import time

import grpc
import jwt
import pytest

from myservice import errors
from myservice.v1 import myservice_pb2 as pb
from myservice.v1 import myservice_pb2_grpc as pb_grpc
from myservice_gateway import clientaddress

from ..conftest import KEY, children_of, echo, error_of, md, pid_alive, wait_until

HAPROXY = shutil.which("haproxy")
needs_haproxy = pytest.mark.skipif(
    HAPROXY is None, reason="haproxy is not installed (make test installs it: apt-get install -y haproxy)")
FRONTS = ["none", pytest.param("haproxy", marks=needs_haproxy)]


def claims(**over):
    now = int(time.time())
    values = {"sub": "TestUser", "role": "user", "sid": "S", "iat": now, "exp": now + 600, "jti": "j",
              "iss": "myservice-gateway", "aud": "myservice"}
    values.update(over)
    return {k: v for k, v in values.items() if v is not None}


def token(key=KEY, algorithm="HS256", **over):
    return jwt.encode(claims(**over), key, algorithm=algorithm)


def code_and_text(error: errors.ContractError):
    return error.code, error.message


INVALID = code_and_text(errors.invalid_token())

# name -> (metadata for session "S", the answer); every rule of auth.py.
RULES = {
    "no metadata": ((), code_and_text(errors.missing_token())),
    "no authorization": ((("session-id", "S"),), code_and_text(errors.missing_token())),
    "empty authorization": ((("authorization", ""), ("session-id", "S")), code_and_text(errors.missing_token())),
    "no session-id": ((("authorization", token()),), code_and_text(errors.missing_session_id())),
    "empty session-id": ((("authorization", token()), ("session-id", "")), code_and_text(errors.missing_session_id())),
    "two authorization": ((("authorization", token()), ("authorization", token()), ("session-id", "S")),
                          code_and_text(errors.repeated_credentials())),
    "two session-id": ((("authorization", token()), ("session-id", "S"), ("session-id", "S")),
                       code_and_text(errors.repeated_credentials())),
    "two session-id, one empty": ((("authorization", token()), ("session-id", ""), ("session-id", "S")),
                                  code_and_text(errors.repeated_credentials())),
    "not a jwt": (md("garbage", "S"), INVALID),
    "bearer garbage": (md("Bearer garbage", "S"), INVALID),
    "bearer alone": (md("Bearer", "S"), INVALID),
    "alg none": (md(jwt.encode(claims(), None, algorithm="none"), "S"), INVALID),
    "HS512": (md(token(algorithm="HS512", key=KEY * 2), "S"), INVALID),
    "wrong key": (md(token(key=b"w" * 32), "S"), INVALID),
    "expired": (md(token(exp=int(time.time()) - 5), "S"), INVALID),
    "issued in the future": (md(token(iat=int(time.time()) + 3600), "S"), INVALID),
    "not before in the future": (md(token(nbf=int(time.time()) + 3600), "S"), INVALID),
    "wrong issuer": (md(token(iss="someone-else"), "S"), INVALID),
    "wrong audience": (md(token(aud="x"), "S"), INVALID),
    "no jti": (md(token(jti=None), "S"), INVALID),
    "no role": (md(token(role=None), "S"), INVALID),
    "no sub": (md(token(sub=None), "S"), INVALID),
    "no exp": (md(token(exp=None), "S"), INVALID),
    "sid is not the session-id": (md(token(sid="OTHER"), "S"), INVALID),
}


def python_calls(gw, *, but: str = "") -> float:
    """Calls the Python proxy has handled (its Prometheus counter), whatever their end;
    `but`: not those of that method."""
    return sum(s.value for metric in gw.gateway.metrics.calls.collect() for s in metric.samples
               if s.name.endswith("_total") and s.labels.get("method") != but)


async def instance_calls(gw) -> int:
    """Calls HAProxy sent straight to instances (its own counter)."""
    stats = await gw.gateway.front.haproxy.client.stats()
    return int(stats[("instances", "BACKEND")]["stot"])


async def settled(gw):
    if gw.gateway.front:
        await gw.gateway.front.map.settled()


async def until(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await predicate():
            return True
        await asyncio.sleep(0.05)
    return await predicate()


@pytest.fixture(params=FRONTS)
async def fgw(request, make_gateway):
    return await make_gateway(front=request.param)


@pytest.fixture
async def hgw(make_gateway):
    if HAPROXY is None:
        pytest.skip("haproxy is not installed (make test installs it: apt-get install -y haproxy)")
    return await make_gateway(front="haproxy")


async def test_every_token_rule_answers_the_same_code_and_text(fgw):
    # A Ready session "S" in the map: HAProxy must refuse before routing, never forward.
    # One gateway for all the rules (each starts nothing): a wrong answer is named by its rule.
    good = await fgw.session("S")
    await echo(fgw, good)
    await settled(fgw)
    before = python_calls(fgw)
    wrong = []
    for rule, (metadata, answer) in RULES.items():
        for kind, call in (
                ("unary", lambda: echo(fgw, metadata)),
                ("server stream", lambda: _drain(fgw.stub.MyServiceEchoStream(
                    pb.EchoStreamRequest(value="v", count=2), metadata=metadata))),
                ("bidi", lambda: _drain(fgw.stub.MyServiceChat(_one(), metadata=metadata))),
                ("shutdown", lambda: fgw.stub.MyServiceShutdown(pb.ShutdownRequest(), metadata=metadata))):
            got = await error_of(call())
            if got != answer:
                wrong.append(f"{rule} ({kind}): {got} instead of {answer}")
    assert wrong == []
    if fgw.gateway.front:  # HAProxy answered every one itself: nothing reached Python
        assert python_calls(fgw) == before
    assert fgw.backend.live_count == 1  # the session's instance only, still there
    assert (await echo(fgw, good)).server_session_id == "S"


@pytest.mark.parametrize("prefix", ["", "Bearer ", "bearer ", "BEARER  "])
async def test_bearer_is_optional_on_both_fronts(fgw, prefix):
    token_ = (await fgw.login("S")).token
    for _ in range(3):  # the first through Python, the next ones through the map
        reply = await echo(fgw, md(prefix + token_, "S"))
        assert (reply.client_session_id, reply.server_session_id) == ("S", "S")
        await settled(fgw)


@pytest.mark.parametrize("front", ["none", pytest.param("haproxy", marks=needs_haproxy)])
async def test_another_users_session_of_the_same_id_is_another_instance(make_gateway, tmp_path, front):
    # Same session_id, two users: two sessions, two instances, on both fronts; one user's
    # calls never reach the other's instance from the map, interleaved on one connection.
    from .test_removed_users import PASSWORDS, write_users
    path = tmp_path / "users.json"
    write_users(path, PASSWORDS)
    gw = await make_gateway(front=front, users_file=str(path), dev_user=False)
    alice = md((await gw.login("S", username="alice", password=PASSWORDS["alice"])).token, "S")
    bob = md((await gw.login("S", username="bob", password=PASSWORDS["bob"])).token, "S")
    first = await echo(gw, alice)
    await settled(gw)
    for _ in range(3):
        assert (await echo(gw, bob)).pod_name != first.pod_name
        await settled(gw)
        assert (await echo(gw, alice)).pod_name == first.pod_name
    assert gw.backend.live_count == 2


@needs_haproxy
async def test_a_ready_sessions_calls_bypass_python(hgw):
    metadata = await hgw.session("fast")
    first = await echo(hgw, metadata)  # starts the instance: through Python
    await settled(hgw)
    assert await hgw.gateway.front.haproxy.client.show_map(hgw.gateway.front.haproxy.map_file) == {
        "TestUser/fast": hgw.backend._instances[next(iter(hgw.backend._instances))].child.endpoint.address}
    python_before, haproxy_before = python_calls(hgw), await instance_calls(hgw)
    for i in range(20):
        reply = await echo(hgw, metadata, value=f"v{i}")
        assert (reply.client_value, reply.pod_name, reply.server_session_id) == (f"v{i}", first.pod_name, "fast")
    assert python_calls(hgw) == python_before
    assert await instance_calls(hgw) == haproxy_before + 20


@needs_haproxy
async def test_every_kind_and_a_large_message_through_the_front(hgw):
    metadata = await hgw.session("kinds")
    await echo(hgw, metadata)
    await settled(hgw)
    before = python_calls(hgw)
    stream = [r.index async for r in hgw.stub.MyServiceEchoStream(pb.EchoStreamRequest(value="v", count=5),
                                                                   metadata=metadata)]
    assert stream == [0, 1, 2, 3, 4]

    async def messages():
        for i in range(4):
            yield pb.EchoRequest(value=f"c{i}")
    chat = [(r.client_value, r.index) async for r in hgw.stub.MyServiceChat(messages(), metadata=metadata)]
    assert chat == [("c0", 0), ("c1", 1), ("c2", 2), ("c3", 3)]
    big = "x" * (1024 * 1024)
    assert (await echo(hgw, metadata, value=big)).client_value == big
    reply = await hgw.stub.MyServiceShutdown(pb.ShutdownRequest(), metadata=metadata)
    assert reply.server_method == "MyServiceShutdown"
    assert python_calls(hgw) == before  # all of it through HAProxy alone
    # The end removes the entry: the next call goes to Python, which says so.
    assert await until(lambda: _no_entry(hgw, "TestUser/kinds"))
    assert await error_of(echo(hgw, metadata)) == code_and_text(errors.session_ended("kinds"))


@needs_haproxy
async def test_a_stale_entry_is_only_ever_unavailable(hgw):
    metadata = await hgw.session("stale")
    # An entry whose instance is gone (a closed port), as between an exit and its del.
    hgw.gateway.front.map.ready(("TestUser", "stale"), "TestUser", "stale", "127.0.0.1:1")
    await settled(hgw)
    assert await error_of(echo(hgw, metadata)) == code_and_text(errors.backend_unavailable())
    assert await error_of(_drain(hgw.stub.MyServiceEchoStream(pb.EchoStreamRequest(value="v", count=2),
                                                              metadata=metadata))) == code_and_text(
        errors.backend_unavailable())


@needs_haproxy
async def test_an_established_session_answers_without_the_python_gateway(hgw):
    metadata = await hgw.session("alone")
    first = await echo(hgw, metadata)
    await settled(hgw)
    await hgw.gateway.server.stop(0)  # the Python gateway's gRPC server is gone
    for _ in range(5):
        assert (await echo(hgw, metadata)).pod_name == first.pod_name
    # What needs Python fails fast, with the contract's text.
    started = time.monotonic()
    assert await error_of(hgw.login("new")) == code_and_text(errors.backend_unavailable())
    assert time.monotonic() - started < 2


@needs_haproxy
async def test_the_map_is_rebuilt_after_haproxy_restarts(hgw):
    front = hgw.gateway.front
    metadata = await hgw.session("survivor")
    first = await echo(hgw, metadata)
    await settled(hgw)
    old = front.haproxy.process.pid
    os.kill(old, signal.SIGKILL)
    assert await until(lambda: _restarted(front, old), timeout=15)
    await settled(hgw)
    assert "TestUser/survivor" in await front.haproxy.client.show_map(front.haproxy.map_file)
    before = python_calls(hgw)
    assert (await echo(hgw, metadata)).pod_name == first.pod_name
    assert python_calls(hgw) == before  # through the rebuilt map, not Python


# trusted proxies, the client's x-forwarded-for -> the address Login's limits count (the same
# on both fronts: clientaddress.py's right-to-left walk), and the value the Python gateway reads
# behind HAProxy (HAProxy's peer, 127.0.0.1 here, always last).
XFF_CASES = {
    "untrusted peer: its value dropped": ("", "6.6.6.6", "127.0.0.1", "127.0.0.1"),
    "another network trusted": ("10.0.0.0/8", "203.0.113.5", "127.0.0.1", "127.0.0.1"),
    "trusted peer: the rightmost it sent": (
        "127.0.0.0/8", "198.51.100.1, 203.0.113.5", "203.0.113.5", "198.51.100.1, 203.0.113.5, 127.0.0.1"),
    "trusted peer, a trusted hop skipped": (
        "127.0.0.0/8,10.0.0.0/8", "203.0.113.5, 10.1.1.1", "203.0.113.5", "203.0.113.5, 10.1.1.1, 127.0.0.1"),
    "trusted peer, garbage stops the walk": (
        "127.0.0.0/8", "203.0.113.5, unknown", "127.0.0.1", "203.0.113.5, unknown, 127.0.0.1"),
    "trusted peer, no header": ("127.0.0.0/8", None, "127.0.0.1", "127.0.0.1"),
}


@pytest.mark.parametrize("front", FRONTS)
@pytest.mark.parametrize("case", XFF_CASES)
async def test_the_client_address_logins_limits_count(make_gateway, monkeypatch, front, case):
    # HAProxy appends its peer to a trusted proxy's x-forwarded-for and replaces anyone else's;
    # the gateway behind it (a Unix socket peer, trusted) then counts what it would count with
    # no front at all.
    trusted, sent, key, behind_front = XFF_CASES[case]
    seen = []
    real = clientaddress.client_key

    def spy(peer, metadata, trusted_networks):
        counted = real(peer, metadata, trusted_networks)
        seen.append((peer.split(":")[0], [v for k, v in metadata if k == clientaddress.FORWARDED_FOR], counted))
        return counted
    monkeypatch.setattr(clientaddress, "client_key", spy)
    gw = await make_gateway(front=front, trusted_proxies=clientaddress.parse_networks(trusted))
    reply = await gw.stub.Login(pb.LoginRequest(username="TestUser", password="TestPassword", session_id="x"),
                                metadata=((clientaddress.FORWARDED_FOR, sent),) if sent else None)
    assert reply.role == "user"
    if front == "haproxy":
        assert seen == [("unix", [behind_front], key)]
    else:
        assert seen == [("ipv4", [sent] if sent else [], key)]


class ProxyProtocolRelay:
    """A load balancer that speaks the PROXY protocol (v1): each connection it accepts goes
    to `port` after the header `PROXY TCP4 <source> ...` naming `source` as the client."""

    def __init__(self, port: int, source: str) -> None:
        self.port, self.source = port, source
        self.server = None
        self.tasks = set()

    async def __aenter__(self):
        self.server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc):
        self.server.close()
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def _relay(self, client_reader, client_writer):
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        writer.write(f"PROXY TCP4 {self.source} 127.0.0.1 40000 {self.port}\r\n".encode())

        async def pipe(src, dst):
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            finally:
                dst.close()
        for task in (pipe(client_reader, writer), pipe(reader, client_writer)):
            self.tasks.add(asyncio.ensure_future(task))


@needs_haproxy
async def test_the_proxy_protocol_source_reaches_logins_limits(make_gateway, tmp_path):
    from ..conftest import login_outcome, write_users_file
    users = write_users_file(tmp_path / "users.json", {"bob": "b-pass"})
    gw = await make_gateway(front="haproxy", front_proxy_protocol=True, users_file=users, dev_user=False,
                            login_peer_failure_burst=2, login_peer_failures_per_minute=1, login_user_failure_burst=0)
    throttled, denied = errors.login_throttled(), errors.invalid_credentials()
    async with ProxyProtocolRelay(gw.gateway.port, "192.0.2.77") as first, \
            ProxyProtocolRelay(gw.gateway.port, "192.0.2.78") as second:
        async with grpc.aio.insecure_channel(first.address) as channel:
            via_first = type("Client", (), {"stub": pb_grpc.MyServiceStub(channel)})
            for name in ("nobody", "bob"):
                assert await login_outcome(via_first, name, "guess") == (denied.code, denied.message)
            # 192.0.2.77's failures are spent: refused whatever the password.
            assert await login_outcome(via_first, "bob", "b-pass") == (throttled.code, throttled.message)
        async with grpc.aio.insecure_channel(second.address) as channel:
            # Another client behind the same balancer (same TCP peer): its own bucket.
            assert await login_outcome(type("Client", (), {"stub": pb_grpc.MyServiceStub(channel)}),
                                       "bob", "b-pass") == "user"
    # Without the header the connection is refused: nobody reaches Login around the balancer.
    code, _details = await error_of(gw.login("direct"))
    assert code == grpc.StatusCode.UNAVAILABLE


def test_the_proxy_protocol_needs_the_haproxy_front(tmp_path):
    from ..conftest import BIN
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MYSERVICE_")}
    result = subprocess.run([str(BIN / "myservice"), "up", "--host", "127.0.0.1", "--port", "0", "--front", "none",
                             "--front-proxy-protocol"], env=clean, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        "myservice: configuration error: MYSERVICE_FRONT_PROXY_PROTOCOL (--front-proxy-protocol) needs the "
        "HAProxy front (MYSERVICE_FRONT=haproxy); the front is none: MYSERVICE_FRONT=none")


def _scrape(port: int, path: str = "/metrics") -> tuple[int, str, dict[str, float]]:
    """(HTTP status, content type, {series with labels: value}) of a Prometheus endpoint."""
    import urllib.error
    import urllib.request
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as answer:
            status, kind, text = answer.status, answer.headers["content-type"], answer.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers["content-type"] or "", {}
    series = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            series[name] = float(value)
    return status, kind, series


@needs_haproxy
async def test_haproxys_own_metrics_count_the_fast_path(make_gateway):
    from ..conftest import _free_port
    gw = await make_gateway(front="haproxy", front_metrics_port=_free_port())
    port = gw.gateway.front.metrics_port
    metadata = await gw.session("counted")
    await echo(gw, metadata)  # the first call: through Python
    await settled(gw)
    for _ in range(5):
        await echo(gw, metadata)  # straight to the instance
    status, kind, series = await asyncio.to_thread(_scrape, port)
    assert (status, kind.split(";")[0]) == (200, "text/plain")
    # HAProxy's figures: 5 calls to the instance, Login and the first Echo to Python, 7 in all.
    assert series['haproxy_backend_http_requests_total{proxy="instances"}'] == 5
    assert series['haproxy_backend_http_requests_total{proxy="gateway"}'] == 2
    assert series['haproxy_frontend_http_requests_total{proxy="myservice"}'] == 7
    # The gateway's own: the one Echo it proxied.
    assert python_calls(gw, but="Login") == 1
    assert (await asyncio.to_thread(_scrape, port, "/"))[0] == 404  # /metrics only
    # A call whose instance is gone (a stale entry) is a connection error of the backend.
    gone = await gw.session("gone")
    gw.gateway.front.map.ready(("TestUser", "gone"), "TestUser", "gone", "127.0.0.1:1")
    await settled(gw)
    assert await error_of(echo(gw, gone)) == code_and_text(errors.backend_unavailable())
    series = (await asyncio.to_thread(_scrape, port))[2]
    assert series['haproxy_backend_connection_errors_total{proxy="instances"}'] == 1


@needs_haproxy
async def test_ready_answers_while_haproxy_and_the_python_gateway_both_do(make_gateway):
    # The chart's readinessProbe where the public port cannot be probed with plain gRPC
    # (TLS, PROXY protocol): HAProxy's metrics bind, /ready.
    from ..conftest import _free_port
    gw = await make_gateway(front="haproxy", front_metrics_port=_free_port())
    port = gw.gateway.front.metrics_port

    def ready() -> tuple[int, str]:
        import urllib.error
        import urllib.request
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=10) as answer:
                return answer.status, answer.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    assert await asyncio.to_thread(ready) == (200, "ready")
    await gw.gateway.server.stop(0)  # the Python gateway gone, HAProxy still up
    deadline = time.monotonic() + 5
    while (answer := await asyncio.to_thread(ready))[0] == 200 and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    assert answer == (503, "the gateway is not answering")


def test_the_front_metrics_port_needs_the_haproxy_front(tmp_path):
    from ..conftest import BIN
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MYSERVICE_")}
    result = subprocess.run([str(BIN / "myservice"), "up", "--host", "127.0.0.1", "--port", "0", "--front", "none"],
                            env={**clean, "MYSERVICE_FRONT_METRICS_PORT": "9101"}, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        "myservice: configuration error: MYSERVICE_FRONT_METRICS_PORT needs the HAProxy front "
        "(MYSERVICE_FRONT=haproxy); the front is none: MYSERVICE_FRONT=none")


@needs_haproxy
def test_haproxy_dies_with_a_killed_gateway(up_process):
    up = up_process("--front", "haproxy")
    assert any("front: haproxy" in line for line in up.lines)
    haproxies = [pid for pid in children_of(up.proc.pid) if _comm(pid) == "haproxy"]
    assert len(haproxies) == 1
    up.stop(signal.SIGKILL)
    assert wait_until(lambda: not pid_alive(haproxies[0]), timeout=10)


def test_front_none_says_so(up_process):
    up = up_process("--front", "none")
    assert any("front: none (MYSERVICE_FRONT=none)" in line for line in up.lines)
    assert not [pid for pid in children_of(up.proc.pid) if _comm(pid) == "haproxy"]


async def _restarted(front, old_pid):
    process = front.haproxy.process
    return process.pid != old_pid and process.returncode is None and front.map.rebuilds >= 2


async def _no_entry(gw, key):
    front = gw.gateway.front
    return key not in await front.haproxy.client.show_map(front.haproxy.map_file)


def _comm(pid):
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return ""


async def _drain(call):
    return [r async for r in call]


async def _one():
    yield pb.EchoRequest(value="v")


@needs_haproxy
async def test_concurrent_calls_of_several_sessions_on_one_connection_each_reach_their_own(hgw):
    # set-dst is per call, not per connection: streams of four sessions interleaved on one
    # HTTP/2 connection each land on their own session's instance.
    sessions = {f"m{i}": await hgw.session(f"m{i}") for i in range(4)}
    pods = {sid: (await echo(hgw, metadata)).pod_name for sid, metadata in sessions.items()}
    await settled(hgw)
    assert len(set(pods.values())) == 4
    before = python_calls(hgw)

    async def one(sid):
        reply = await echo(hgw, sessions[sid], value=sid)
        return sid, reply.pod_name, reply.server_session_id, reply.client_value

    replies = await asyncio.gather(*(one(sid) for _ in range(25) for sid in sessions))
    assert {(sid, pod, server, value) for sid, pod, server, value in replies} == {
        (sid, pods[sid], sid, sid) for sid in sessions}
    assert python_calls(hgw) == before


@needs_haproxy
async def test_a_removed_users_calls_leave_the_fast_path_at_once(make_gateway, tmp_path):
    # userwatch.py refuses a removed user in Python; the front must stop serving them from
    # the map at the same moment, not when their instances have ended.
    from .test_removed_users import PASSWORDS, write_users
    path = tmp_path / "users.json"
    write_users(path, PASSWORDS)
    gw = await make_gateway(front="haproxy", users_file=str(path), dev_user=False)
    metadata = md((await gw.login("b1", username="bob", password=PASSWORDS["bob"])).token, "b1")
    await echo(gw, metadata)
    await settled(gw)
    assert "bob/b1" in await gw.gateway.front.haproxy.client.show_map(gw.gateway.front.haproxy.map_file)
    write_users(path, ["alice"])
    assert await until(_async(lambda: not gw.gateway.user_watch.exists("bob")))
    await settled(gw)
    assert "bob/b1" not in await gw.gateway.front.haproxy.client.show_map(gw.gateway.front.haproxy.map_file)
    assert await error_of(echo(gw, metadata)) == INVALID


def _async(predicate):
    async def check():
        return predicate()
    return check
