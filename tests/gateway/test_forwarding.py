"""The proxy's forwarding path through a real gateway with real instance processes
(local backend, loopback): which methods are forwarded, a client's cancel reaching
the instance, oversize answers, what the gateway logs, calls racing a Shutdown."""
import asyncio
import collections
import logging
import os
import random
import time

import grpc
import pytest

from myservice import contract
from myservice.v1 import myservice_pb2 as pb
from myservice.v1 import myservice_pb2_grpc as pb_grpc
from myservice_instance import app as myservice_instance_app

from ..conftest import children_of, echo, error_of, eventually, front_pids, md, pid_alive
from .test_routing import StaticBackend, instance_stand_in

NOT_FOUND = (grpc.StatusCode.UNIMPLEMENTED, "Method not found!")


# ---------------------------------------------------------------- methods that are not forwarded

NOT_METHODS = [
    "/myservice.v1.MyService/Nope",  # the descriptor of our service has no such method
    "/myservice.v1.MyService/MyServiceEcho/extra",  # malformed: a method name holds no "/"
    "/myservice.v1.MyService//Login",
    "/myservice.v1.MyService/",  # empty method name
    "/other.v1.Other/Run",  # a service that is not forwarded
]


@pytest.mark.parametrize("method", NOT_METHODS)
async def test_a_method_not_forwarded_is_unimplemented_and_starts_nothing(make_gateway, method):
    gw = await make_gateway(max_sessions_per_user=1)
    metadata = await gw.session("nope")
    assert await error_of(gw.channel.unary_unary(method)(b"", metadata=metadata)) == NOT_FOUND
    chat = gw.channel.stream_stream(method)(iter((b"",)), metadata=metadata)
    assert await error_of(_drained(chat)) == NOT_FOUND
    # No instance was started, and the user's one session slot is still free.
    assert gw.backend.live_count == 0 and gw.backend.process_count == 0
    # This process's children but the gateway's own: its hashing processes, its HAProxy front.
    own = [*gw.gateway.login.hash_processes(), *front_pids(gw.gateway)]
    assert [pid for pid in children_of(os.getpid()) if pid not in own] == []
    assert gw.backend.sessions.slots.count("TestUser") == 0
    assert (await echo(gw, metadata)).server_session_id == "nope"


async def test_a_method_not_forwarded_is_unimplemented_even_without_a_token(gw):
    # Decided from the method name alone, before authentication: nothing a token
    # could change, and no token work for a name that can never be served.
    call = gw.channel.unary_unary("/myservice.v1.MyService/Nope")
    assert await error_of(call(b"", metadata=(("session-id", "x"),))) == NOT_FOUND
    assert gw.backend.live_count == 0


async def _drained(call):
    return [r async for r in call]


async def test_only_the_configured_services_are_forwarded(make_gateway):
    # A service unknown to the gateway's descriptor pool (a user's own) is
    # forwarded as a bidirectional stream: here the instance answers it (it has
    # no such service), which shows the call reached it.
    gw = await make_gateway(services=(contract.SERVICE, "other.v1.Other"))
    metadata = await gw.session("user-service")
    assert await error_of(gw.channel.unary_unary("/other.v1.Other/Run")(b"", metadata=metadata)) == NOT_FOUND
    assert gw.backend.live_count == 1
    # Malformed names are refused for a user's service too, without an instance call.
    assert await error_of(gw.channel.unary_unary("/other.v1.Other/Run/x")(b"", metadata=metadata)) == NOT_FOUND


async def test_our_service_left_out_is_not_forwarded_but_login_still_works(make_gateway):
    gw = await make_gateway(services=("other.v1.Other",))
    metadata = await gw.session("only-other")  # Login is the gateway's own, always served
    assert await error_of(echo(gw, metadata)) == NOT_FOUND
    assert gw.backend.live_count == 0


# ---------------------------------------------------------------- a client's cancel reaches the instance

IDLE = 0.5


@pytest.mark.parametrize("kind", ["stream", "chat"])
async def test_a_cancelled_stream_is_cancelled_at_the_instance_within_a_second(make_gateway, kind):
    # The instance counts an open stream as a call in flight and never ends idle
    # while it does: once the cancel reaches it, its idle timeout ends it.
    gw = await make_gateway(session_idle_timeout=IDLE)
    metadata = await gw.session(f"cancel-{kind}")
    if kind == "stream":
        call = gw.stub.MyServiceEchoStream(pb.EchoStreamRequest(value="x" * 1000, count=10**7), metadata=metadata)
    else:
        async def forever():
            yield pb.EchoRequest(value="first")
            await asyncio.sleep(3600)
        call = gw.stub.MyServiceChat(forever(), metadata=metadata)
    first = await call.read()
    assert first.index == 0
    [pid] = gw.backend.pids()
    await asyncio.sleep(2 * IDLE)  # the stream is a call in flight: no idle end while it is open
    assert pid_alive(pid)
    call.cancel()
    cancelled = time.monotonic()
    assert await eventually(lambda: not pid_alive(pid), IDLE + 1.0 + 1.0), "the instance still counts the stream"
    # its idle clock started when the cancel reached it: within 1 s (+ the exit itself)
    assert time.monotonic() - cancelled <= IDLE + 1.0 + 0.5


async def test_a_client_that_goes_away_ends_its_stream_at_the_instance(make_gateway):
    gw = await make_gateway(session_idle_timeout=IDLE)
    metadata = await gw.session("client-gone")
    await echo(gw, metadata)
    [pid] = gw.backend.pids()

    async def forever():
        yield pb.EchoRequest(value="first")
        await asyncio.sleep(3600)
    call = gw.stub.MyServiceChat(forever(), metadata=metadata)
    await call.read()
    await gw.channel.close()  # no cancel: the client's connection is simply gone
    gone = time.monotonic()
    assert await eventually(lambda: not pid_alive(pid), IDLE + 2.0)
    assert time.monotonic() - gone <= IDLE + 1.5


class SlowEcho(pb_grpc.MyServiceServicer):
    """A stand-in instance whose Echo answers only when cancelled: it records when."""

    def __init__(self):
        self.started = asyncio.Event()
        self.cancelled_at: float | None = None

    async def MyServiceEcho(self, request, context):
        self.started.set()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            self.cancelled_at = time.monotonic()
            raise


async def test_a_cancelled_unary_call_is_cancelled_at_the_instance(make_gateway):
    servicer = SlowEcho()
    async with instance_stand_in(servicer) as port:
        gw = await make_gateway(backend=StaticBackend(port))
        metadata = await gw.session("slow")
        call = gw.stub.MyServiceEcho(pb.EchoRequest(value="v"), metadata=metadata)
        await asyncio.wait_for(servicer.started.wait(), 5)
        call.cancel()
        cancelled = time.monotonic()
        assert await eventually(lambda: servicer.cancelled_at is not None, 1.0)
        assert servicer.cancelled_at - cancelled <= 1.0


# ---------------------------------------------------------------- answers over the client's limit

async def test_an_answer_over_4_mib_is_resource_exhausted_with_our_text(gw):
    metadata = await gw.session("big")
    # A request under the limit whose answer (the value and the instance's own fields) is over it.
    big = "x" * (4 * 1024 * 1024 - 10)
    assert await error_of(echo(gw, metadata, big)) == (
        grpc.StatusCode.RESOURCE_EXHAUSTED, "answer larger than 4 MiB, the most the gateway forwards in one message")
    # A stream's message likewise; the session goes on.
    call = gw.stub.MyServiceEchoStream(pb.EchoStreamRequest(value=big, count=2), metadata=metadata)
    assert await error_of(_drained(call)) == (
        grpc.StatusCode.RESOURCE_EXHAUSTED, "answer larger than 4 MiB, the most the gateway forwards in one message")
    assert (await echo(gw, metadata)).server_session_id == "big"


# ---------------------------------------------------------------- what the gateway logs

async def test_a_client_cancel_logs_at_most_one_info_line_and_no_traceback(make_gateway, caplog):
    gw = await make_gateway()
    metadata = await gw.session("quiet-cancel")
    caplog.set_level(logging.DEBUG)
    # The gateway's send to us blocks (we read no more): after a short wait grpc
    # cancels the handler (logged at DEBUG), after a longer one its pending send fails
    # and grpc logs an ERROR with a traceback, which the gateway says in one INFO line.
    for wait in (0.1, 1.0, 1.5):
        call = gw.stub.MyServiceEchoStream(pb.EchoStreamRequest(value="x" * 1000, count=10**7), metadata=metadata)
        await call.read()
        await asyncio.sleep(wait)
        caplog.clear()
        call.cancel()
        await asyncio.sleep(0.5)
        gateway_records = [r for r in caplog.records if r.levelno >= logging.INFO]
        assert len(gateway_records) <= 1, [r.getMessage() for r in gateway_records]
        assert all(r.levelno == logging.INFO and not r.exc_info for r in gateway_records), gateway_records


async def test_a_refused_token_logs_a_capped_escaped_session_id(gw, caplog):
    caplog.set_level(logging.INFO, logger="myservice")
    caplog.clear()  # only what this call logs
    session_id = "'\\" + "s" * 6000  # gRPC lets visible ASCII through, up to 8 KiB of metadata
    assert await error_of(echo(gw, md("not-a-token", session_id))) == (
        grpc.StatusCode.UNAUTHENTICATED, "invalid token")
    ours = [r.getMessage() for r in caplog.records if r.name.startswith("myservice")]
    assert all(len(line) < 300 for line in ours), ours  # nothing of ours echoes the whole id
    front = gw.gateway.front
    if front:
        # HAProxy refused the token itself: the Python gateway never saw the call, and HAProxy
        # logs nothing (its configuration has no `log` line), so the id is echoed nowhere.
        assert [r for r in caplog.records if r.name == "myservice.gateway.auth"] == []
        with open(front.haproxy.config_file) as f:
            assert [line for line in f if line.split()[:1] == ["log"]] == []
        return
    [record] = [r for r in caplog.records if r.name == "myservice.gateway.auth"]
    line = record.getMessage()
    assert len(line) < 300, line
    assert repr(session_id[:64]) in line and "6002 characters" in line


# ---------------------------------------------------------------- calls racing a Shutdown

RACES = 200
RACE_DELAYS = (0, 0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.15)
RACE_OUTCOMES = {
    grpc.StatusCode.OK,
    (grpc.StatusCode.FAILED_PRECONDITION, "has ended; log in with a new session_id"),
    (grpc.StatusCode.UNAVAILABLE, "backend service unavailable"),
}


async def test_an_echo_racing_a_shutdown_never_waits_for_its_deadline(make_gateway):
    gw = await make_gateway(max_instances=12, max_sessions_per_user=0, warm_pool=4)
    outcomes: list[tuple] = []

    async def race(i):
        session_id = f"race-{i}"
        metadata = await gw.session(session_id)
        await echo(gw, metadata)  # the instance is up and bound
        # The Echo leaves up to 150 ms after the Shutdown: before the instance has it, while it
        # answers, while it stops (its grace), as its process exits and its channel closes, after.
        delay = RACE_DELAYS[i % len(RACE_DELAYS)] + random.uniform(0, 0.001)

        async def one_echo():
            await asyncio.sleep(delay)
            began = time.monotonic()
            try:
                await gw.stub.MyServiceEcho(pb.EchoRequest(value="r"), metadata=metadata, timeout=10)
                outcome = grpc.StatusCode.OK
            except grpc.aio.AioRpcError as e:
                outcome = (e.code(), e.details().replace(f"session {session_id} ", ""))
            return outcome, time.monotonic() - began

        echoed, _ = await asyncio.gather(
            one_echo(), gw.stub.MyServiceShutdown(pb.ShutdownRequest(), metadata=metadata, timeout=10))
        outcomes.append(echoed)

    limit = asyncio.Semaphore(4)

    async def bounded(i):
        async with limit:
            await race(i)

    await asyncio.gather(*(bounded(i) for i in range(RACES)))
    assert {o for o, _ in outcomes} <= RACE_OUTCOMES, collections.Counter(o for o, _ in outcomes)
    # None waits for its deadline (10 s), nor for the instance's stop grace (5 s): an Echo
    # reaching an instance that is ending is answered "has ended" at once (the instance keeps
    # serving while it drains, and stops its gRPC server only then: tests/instance/test_shutdown_race.py).
    slow = [(o, round(s, 2)) for o, s in outcomes if s > 2.0]
    assert not slow, (slow, myservice_instance_app.STOP_GRACE_SECONDS)
