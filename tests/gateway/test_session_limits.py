"""Idle timeout and maximum lifetime in local mode, through a real gateway: the instance
ends itself, the gateway frees its slot, logs why, and the session has ended."""
import asyncio
import logging
import time

import grpc

from myservice.v1 import myservice_pb2 as pb
from ..conftest import echo, error_of

ENDED = (grpc.StatusCode.FAILED_PRECONDITION, "session {} has ended; log in with a new session_id")


async def wait_no_instances(gw, timeout):
    deadline = time.monotonic() + timeout
    while gw.backend.live_count and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    return gw.backend.live_count


async def test_an_idle_session_ends_and_frees_its_slot(make_gateway, caplog):
    caplog.set_level(logging.INFO, logger="myservice.gateway.local")
    gw = await make_gateway(session_idle_timeout=1, max_instances=1)
    idle, other = await gw.session("idle"), await gw.session("other")  # Logins first: they take time
    await echo(gw, idle)
    assert await error_of(echo(gw, other)) == (grpc.StatusCode.RESOURCE_EXHAUSTED, "all instances are busy")
    assert await wait_no_instances(gw, 10) == 0
    assert await error_of(echo(gw, idle)) == (ENDED[0], ENDED[1].format("idle"))
    assert (await echo(gw, other)).server_session_id == "other"  # its slot is free again
    assert any("TestUser/idle" in r.getMessage() and "IdleTimeout" in r.getMessage() for r in caplog.records), \
        [r.getMessage() for r in caplog.records]


async def test_an_open_stream_keeps_a_session_alive(make_gateway):
    gw = await make_gateway(session_idle_timeout=1)
    metadata = await gw.session("chat")
    stop = asyncio.Event()

    async def quiet_after_one():
        yield pb.EchoRequest(value="hello")
        await stop.wait()  # silent, but open

    chat = gw.stub.MyServiceChat(quiet_after_one(), metadata=metadata)
    assert (await chat.read()).client_value == "hello"
    await asyncio.sleep(2.5)  # well past the idle timeout
    assert gw.backend.live_count == 1
    assert (await echo(gw, metadata)).client_session_id == "chat"
    stop.set()
    assert await chat.read() == grpc.aio.EOF
    assert await wait_no_instances(gw, 10) == 0  # idle once the stream closed


async def test_the_lifetime_ends_a_busy_session(make_gateway, caplog):
    caplog.set_level(logging.INFO, logger="myservice.gateway.local")
    gw = await make_gateway(session_max_lifetime=2)
    metadata = await gw.session("busy")
    started = time.monotonic()
    outcome = None
    while time.monotonic() - started < 10:
        try:
            await echo(gw, metadata)
        except grpc.aio.AioRpcError as e:
            outcome = (e.code(), e.details())
            if outcome == (ENDED[0], ENDED[1].format("busy")):
                break
        await asyncio.sleep(0.1)
    assert outcome == (ENDED[0], ENDED[1].format("busy"))
    assert 1.5 < time.monotonic() - started < 8
    # The instance says "has ended" itself while it drains; the gateway logs why at its exit.
    for _ in range(100):
        if any("LifetimeExceeded" in r.getMessage() for r in caplog.records):
            break
        await asyncio.sleep(0.05)
    assert any("LifetimeExceeded" in r.getMessage() for r in caplog.records)
