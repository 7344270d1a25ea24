"""Calls still in flight when an instance's stop grace ends are cut by the instance with
the contract's UNAVAILABLE "backend service unavailable", never grpc's own "Cancelling
all calls" of server.stop(0): behind the HAProxy front a client reads an instance's
trailers as they are, so the instance must say what the gateway would."""
import asyncio

import grpc
import pytest

from myservice import errors
from myservice.v1 import myservice_pb2 as pb
from myservice.v1 import myservice_pb2_grpc as pb_grpc
from myservice_instance.app import stop_serving
from myservice_instance.server import start_instance

UNAVAILABLE = (errors.backend_unavailable().code, errors.backend_unavailable().message)
SESSION = (("session-id", "s"),)


async def test_a_stream_open_past_the_grace_is_told_backend_unavailable():
    running = await start_instance(host="127.0.0.1", port=0)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{running.bound}") as channel:
            stub = pb_grpc.MyServiceStub(channel)
            quiet = asyncio.Event()

            async def requests():
                yield pb.EchoRequest(value="first")
                await quiet.wait()  # never set: the chat stays open, waiting for the client

            chat = stub.MyServiceChat(requests(), metadata=SESSION)
            assert (await chat.read()).client_value == "first"  # its headers are out: trailers to come
            await stop_serving(running, grace=0.2, linger=0)
            with pytest.raises(grpc.aio.AioRpcError) as e:
                await chat.read()
            assert (e.value.code(), e.value.details()) == UNAVAILABLE
    finally:
        await running.server.stop(0)
