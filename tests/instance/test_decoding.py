"""Undecodable request bytes: INVALID_ARGUMENT "malformed request", on every RPC kind,
from a real instance (directly and through the gateway), never UNKNOWN or a class name."""
import grpc
import pytest

from myservice_instance.server import start_instance

from ..conftest import md

GARBAGE = b"\xff\xff\xff"
METHODS = {
    "unary": ("unary_unary", "/myservice.v1.MyService/MyServiceEcho"),
    "server stream": ("unary_stream", "/myservice.v1.MyService/MyServiceEchoStream"),
    "bidi": ("stream_stream", "/myservice.v1.MyService/MyServiceChat"),
    "shutdown": ("unary_unary", "/myservice.v1.MyService/MyServiceShutdown"),
}


async def _call(channel, kind, method, metadata):
    multicallable = getattr(channel, kind)(method)
    if kind == "unary_unary":
        return await multicallable(GARBAGE, metadata=metadata)
    if kind == "unary_stream":
        return [r async for r in multicallable(GARBAGE, metadata=metadata)]

    async def requests():
        yield GARBAGE
    return [r async for r in multicallable(requests(), metadata=metadata)]


@pytest.mark.parametrize("name", list(METHODS))
async def test_instance_answers_malformed_request(name):
    instance = await start_instance(host="127.0.0.1", port=0)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{instance.bound}") as channel:
            with pytest.raises(grpc.aio.AioRpcError) as e:
                await _call(channel, *METHODS[name], (("session-id", "s"),))
        assert (e.value.code(), e.value.details()) == (grpc.StatusCode.INVALID_ARGUMENT, "malformed request")
    finally:
        await instance.server.stop(0)


async def test_malformed_request_through_the_gateway(gw):
    metadata = await gw.session("bytes")
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await _call(gw.channel, *METHODS["unary"], metadata)
    assert (e.value.code(), e.value.details()) == (grpc.StatusCode.INVALID_ARGUMENT, "malformed request")
