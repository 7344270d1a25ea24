"""Sticky routing, the local backend's capacity and lifecycle, through a real gateway."""
import asyncio
import contextlib
import os
import re
import signal

import grpc
import pytest

from myservice.v1 import myservice_pb2 as pb
from myservice.v1 import myservice_pb2_grpc as pb_grpc
from myservice_gateway.backends import processes
from myservice_gateway.backends.base import Endpoint
from myservice_gateway.backends.sessions import SessionTable

from ..conftest import echo, error_of, pid_alive


async def until_no_instances(gw, timeout: float = 5.0):
    """Wait (bounded) until the backend has noticed its instances' exits."""
    for _ in range(int(timeout / 0.05)):
        if gw.backend.live_count == 0:
            return
        await asyncio.sleep(0.05)


async def test_seed_scenario(gw):
    metadata = await gw.session("seed-1")
    replies = [await echo(gw, metadata, "integration-test-echo") for _ in range(10)]
    assert {(r.client_value, r.server_value, r.server_session_id, r.client_session_id, r.index, r.server_method)
            for r in replies} == {("integration-test-echo", "my_service", "seed-1", "seed-1", 0, "MyServiceEcho")}
    assert len({r.pod_name for r in replies}) == 1
    bye = await gw.stub.MyServiceShutdown(pb.ShutdownRequest(), metadata=metadata)
    assert (bye.pod_name, bye.server_session_id, bye.client_session_id, bye.server_method) == (
        replies[0].pod_name, "seed-1", "seed-1", "MyServiceShutdown")


async def test_twenty_concurrent_sessions_get_twenty_sticky_instances(make_gateway):
    gw = await make_gateway(max_instances=20, max_sessions_per_user=0)

    async def one_session(i):
        metadata = await gw.session(f"conc-{i}")
        return [(await echo(gw, metadata)).pod_name for _ in range(10)]

    results = await asyncio.gather(*(one_session(i) for i in range(20)))
    assert all(len(set(pods)) == 1 for pods in results)
    assert len({pods[0] for pods in results}) == 20
    assert gw.backend.live_count == 20


async def test_shutdown_exits_the_process_and_frees_the_slot(make_gateway):
    gw = await make_gateway(max_instances=1)
    a = await gw.session("A")
    pod_a = (await echo(gw, a)).pod_name
    [pid_a] = gw.backend.pids()
    b = await gw.session("B")
    assert await error_of(echo(gw, b)) == (grpc.StatusCode.RESOURCE_EXHAUSTED, "all instances are busy")
    await gw.stub.MyServiceShutdown(pb.ShutdownRequest(), metadata=a)
    await until_no_instances(gw)
    assert not pid_alive(pid_a)
    reply_b = await echo(gw, b)  # the freed slot is reused
    assert reply_b.pod_name != pod_a and reply_b.server_session_id == "B"
    # The ended session gets a clear, documented error; it never gets a new instance.
    assert await error_of(echo(gw, a)) == (
        grpc.StatusCode.FAILED_PRECONDITION, "session A has ended; log in with a new session_id")


async def test_crashed_instance_ends_the_session(gw):
    a = await gw.session("crash")
    await echo(gw, a)
    [pid] = gw.backend.pids()
    os.kill(pid, signal.SIGKILL)
    await until_no_instances(gw)
    assert await error_of(echo(gw, a)) == (
        grpc.StatusCode.FAILED_PRECONDITION, "session crash has ended; log in with a new session_id")


async def test_max_instances_zero_means_no_available_instances(make_gateway):
    gw = await make_gateway(max_instances=0)
    assert await error_of(echo(gw, await gw.session("z"))) == (
        grpc.StatusCode.RESOURCE_EXHAUSTED, "no available instances")


async def test_instance_that_fails_to_start_means_no_available_instances(gw, monkeypatch):
    monkeypatch.setattr(processes, "instance_command", lambda name, socket_path, **_: ["/bin/false"])
    metadata = await gw.session("nostart")
    assert await error_of(echo(gw, metadata)) == (grpc.StatusCode.RESOURCE_EXHAUSTED, "no available instances")
    assert gw.backend.live_count == 0


class StaticBackend:
    """Routes every session to one fixed loopback port (a test server, or nothing)."""

    def __init__(self, port):
        self.sessions = SessionTable()
        self.address = f"127.0.0.1:{port}"

    async def start(self):
        self.channel = grpc.aio.insecure_channel(self.address)

    async def prepare(self, owner):
        pass

    async def endpoint(self, key, *, timeout):
        return Endpoint(self.address, "nowhere", self.channel)

    async def close(self):
        await self.channel.close()


async def test_unreachable_instance_is_unavailable(make_gateway):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    gw = await make_gateway(backend=StaticBackend(port))
    metadata = await gw.session("u")
    assert await error_of(echo(gw, metadata)) == (grpc.StatusCode.UNAVAILABLE, "backend service unavailable")


async def test_streaming_and_chat_through_the_gateway(gw):
    metadata = await gw.session("st")
    replies = [r async for r in gw.stub.MyServiceEchoStream(pb.EchoStreamRequest(value="s", count=4), metadata=metadata)]
    assert [(r.index, r.client_value, r.server_method) for r in replies] == [
        (i, "s", "MyServiceEchoStream") for i in range(4)]

    async def messages():
        for v in ("a", "b", "c"):
            yield pb.EchoRequest(value=v)

    chat = [r async for r in gw.stub.MyServiceChat(messages(), metadata=metadata)]
    assert [(r.index, r.client_value, r.client_session_id) for r in chat] == [(0, "a", "st"), (1, "b", "st"), (2, "c", "st")]
    assert len({r.pod_name for r in replies + chat}) == 1


async def test_instance_errors_pass_through_unchanged(gw):
    metadata = await gw.session("e")
    assert await error_of(gw.stub.MyServiceShutdown(pb.ShutdownRequest(), metadata=metadata)) == (
        grpc.StatusCode.PERMISSION_DENIED, "Server session is not set")
    call = gw.stub.MyServiceEchoStream(pb.EchoStreamRequest(value="s", count=-1), metadata=metadata)
    assert await error_of(_drain(call)) == (grpc.StatusCode.INVALID_ARGUMENT, "count must be >= 0")


@contextlib.asynccontextmanager
async def instance_stand_in(servicer):
    """A real gRPC server in place of an instance; yields its loopback port."""
    server = grpc.aio.server()
    pb_grpc.add_MyServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield port
    finally:
        await server.stop(0)


class Inspector(pb_grpc.MyServiceServicer):
    """A real gRPC server that reports what the gateway forwarded to it."""

    async def MyServiceEcho(self, request, context):
        keys = sorted(k for k, _ in context.invocation_metadata())
        context.set_trailing_metadata((("x-served-by", "inspector"),))
        return pb.EchoResponse(client_value=f"{context.time_remaining():.3f}", server_method=",".join(keys))


async def test_deadline_and_metadata_propagate_both_ways_but_not_the_token(make_gateway):
    async with instance_stand_in(Inspector()) as port:
        gw = await make_gateway(backend=StaticBackend(port))
        metadata = await gw.session("d") + (("x-trace", "t1"),)
        call = gw.stub.MyServiceEcho(pb.EchoRequest(value="v"), metadata=metadata, timeout=7)
        reply = await call
        assert ("x-served-by", "inspector") in tuple(await call.trailing_metadata())
        assert 5 < float(reply.client_value) <= 7.1  # the wire encoding of grpc-timeout rounds up
        keys = reply.server_method.split(",")
        assert "session-id" in keys and "x-trace" in keys
        assert "authorization" not in keys


class EarlyEnder(pb_grpc.MyServiceServicer):
    """Ends a Chat at its first message, while the caller is still streaming."""

    async def MyServiceChat(self, request_iterator, context):
        async for request in request_iterator:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, f"ended at {request.value}",
                                (("x-ended", "yes"),))
        yield pb.EchoResponse()  # never reached


async def test_status_of_a_call_the_instance_ends_early_reaches_the_client(make_gateway):
    # The gateway is still writing when the instance's status arrives; grpc.aio
    # would report its own failed write instead (grpc/grpc#36066). Repeated
    # because it is a race.
    async with instance_stand_in(EarlyEnder()) as port:
        gw = await make_gateway(backend=StaticBackend(port))
        metadata = await gw.session("early")
        # A sync client: grpc.aio's own client would show the same bug on its leg.
        with grpc.insecure_channel(f"127.0.0.1:{gw.gateway.port}") as channel:
            chat = pb_grpc.MyServiceStub(channel).MyServiceChat
            for _ in range(40):
                requests = (pb.EchoRequest(value=str(i)) for i in range(200))
                with pytest.raises(grpc.RpcError) as e:
                    await asyncio.to_thread(lambda: list(chat(requests, metadata=metadata)))
                assert (e.value.code(), e.value.details()) == (grpc.StatusCode.FAILED_PRECONDITION, "ended at 0")
                assert ("x-ended", "yes") in tuple(e.value.trailing_metadata())


async def _drain(call):
    return [r async for r in call]


async def test_instances_listen_on_unix_sockets_removed_at_close(make_gateway):
    gw = await make_gateway()
    await echo(gw, await gw.session("uds"))
    socket_dir = gw.backend.socket_dir
    [instance] = gw.backend._instances.values()  # noqa: SLF001
    if gw.gateway.front:
        # Behind the HAProxy front instances listen on loopback TCP: HAProxy routes to
        # host:port only. Nothing listens in the directory, which still goes at close.
        assert re.fullmatch(r"127\.0\.0\.1:\d+", instance.child.endpoint.address), instance.child.endpoint.address
        assert os.listdir(socket_dir) == []
    else:
        assert instance.child.endpoint.address.startswith(f"unix:{socket_dir}/")
        assert [p.startswith("myservice-local-") for p in os.listdir(socket_dir)] == [True]
    await gw.gateway.stop(grace=1)
    assert not os.path.exists(socket_dir)


async def test_a_method_not_in_our_descriptor_is_answered_by_the_gateway(gw):
    metadata = await gw.session("unk")
    nope = gw.channel.unary_unary("/myservice.v1.MyService/Nope")
    # The gateway has MyService's descriptor: it answers itself, as grpc would, token or not
    # (tests/gateway/test_forwarding.py: and starts nothing).
    assert await error_of(nope(b"", metadata=metadata)) == (grpc.StatusCode.UNIMPLEMENTED, "Method not found!")
    assert await error_of(nope(b"", metadata=(("session-id", "unk"),))) == (
        grpc.StatusCode.UNIMPLEMENTED, "Method not found!")
    assert gw.backend.live_count == 0


def test_proxy_caches_only_known_methods():
    import collections

    from myservice_gateway import proxy, tokens
    from myservice_gateway.auth import Authenticator

    details = collections.namedtuple("Details", "method invocation_metadata")
    p = proxy.Proxy(backend=None, authenticator=Authenticator(tokens.TokenConfig(b"k" * 32, "i", "a", 60)),
                    services=("myservice.v1.MyService", "user.v1.Own"))
    assert p.service(details("/myservice.v1.MyService/Login", ())) is None
    assert p.service(details("/other.Service/X", ())) is None  # not forwarded: grpc's own answer
    echo_handler = p.service(details("/myservice.v1.MyService/MyServiceEcho", ()))
    assert (echo_handler.request_streaming, echo_handler.response_streaming) == (False, False)
    chat = p.service(details("/myservice.v1.MyService/MyServiceChat", ()))
    assert (chat.request_streaming, chat.response_streaming) == (True, True)
    refused = p.service(details("/myservice.v1.MyService/Nope", ()))
    assert all(p.service(details(m, ())) is refused for m in (
        "/myservice.v1.MyService/MyServiceEcho/x", "/myservice.v1.MyService//Login", "/myservice.v1.MyService/",
        "/user.v1.Own/", "/user.v1.Own/A/B"))
    ours = sorted(p._handlers)
    assert ours == [f"/myservice.v1.MyService/{m}" for m in (
        "MyServiceChat", "MyServiceEcho", "MyServiceEchoStream", "MyServiceShutdown")]
    own = p.service(details("/user.v1.Own/Run", ()))  # no descriptor here: forwarded as a bidi stream
    assert (own.request_streaming, own.response_streaming) == (True, True)
    assert own is p.service(details("/user.v1.Own/Run", ()))  # kept ...
    for i in range(proxy.OPAQUE_HANDLERS_KEPT + 10):  # ... but made-up names cannot grow the dict without end
        p.service(details(f"/user.v1.Own/M{i}", ()))
    assert len(p._handlers) == len(ours) + proxy.OPAQUE_HANDLERS_KEPT
    assert proxy.method_kind("/myservice.v1.MyService/MyServiceEchoStream") == (False, True)
    assert proxy.method_kind("/myservice.v1.MyService/Nope") is None
    assert proxy.method_parts("/a.B/C") == ("a.B", "C")
    assert [proxy.method_parts(m) for m in ("a.B/C", "/a.B/C/D", "/a.B//C", "/a.B/", "//C")] == [None] * 5
