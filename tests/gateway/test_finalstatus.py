"""Which status reaches the client when grpc.aio reports its own failed write; canaries
for the grpc.aio behaviour finalstatus.py relies on, and its version check."""
import asyncio

import grpc
import pytest
from grpc.aio import AioRpcError, Metadata

import myservice_api.pins
from myservice.v1 import myservice_pb2 as pb
from myservice.v1 import myservice_pb2_grpc as pb_grpc
from myservice_gateway import finalstatus
from myservice_gateway.finalstatus import LOCAL_WRITE_FAILURE, FinalStatus, instance_status, is_local_write_failure
from tests import pins


class Recorded:
    def __init__(self, status):
        self.status = status


def error(code, details, trailing=()):
    return AioRpcError(code, Metadata(), Metadata(*trailing), details)


def test_local_write_failure_gives_way_to_the_instance_status():
    recorded = Recorded((grpc.StatusCode.FAILED_PRECONDITION, "ended", Metadata(("x", "1"))))
    assert instance_status(error(*LOCAL_WRITE_FAILURE), recorded) == (
        grpc.StatusCode.FAILED_PRECONDITION, "ended", (("x", "1"),))


def test_local_write_failure_stays_when_nothing_else_was_recorded():
    assert instance_status(error(*LOCAL_WRITE_FAILURE), Recorded(None)) == (*LOCAL_WRITE_FAILURE, ())
    assert instance_status(error(*LOCAL_WRITE_FAILURE), None) == (*LOCAL_WRITE_FAILURE, ())


def test_any_other_error_is_the_instance_own():
    recorded = Recorded((grpc.StatusCode.OK, "", ()))
    assert instance_status(error(grpc.StatusCode.NOT_FOUND, "gone", [("y", "2")]), recorded) == (
        grpc.StatusCode.NOT_FOUND, "gone", (("y", "2"),))


class EndsAtFirstMessage(pb_grpc.MyServiceServicer):
    async def MyServiceChat(self, request_iterator, context):
        async for _ in request_iterator:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, "ended", (("x-ended", "yes"),))
        yield pb.EchoResponse()  # never reached


async def a_lost_status(tries: int = 200):
    """Plain grpc.aio (no gateway): a Chat the server ends while the client still writes,
    until grpc.aio replaces the server's status with its own failed write; that
    error and what FinalStatus kept, or None if it never did."""
    server = grpc.aio.server()
    pb_grpc.add_MyServiceServicer_to_server(EndsAtFirstMessage(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            chat = pb_grpc.MyServiceStub(channel).MyServiceChat
            for _ in range(tries):
                call = chat()
                final = FinalStatus(call)
                try:
                    for i in range(200):
                        await call.write(pb.EchoRequest(value=str(i)))
                    await call.done_writing()
                    async for _ in call:
                        pass
                except AioRpcError as e:
                    if is_local_write_failure(e.code(), e.details()):
                        return e, final
                except asyncio.InvalidStateError:  # the write after the status: no race this time
                    pass
    finally:
        await server.stop(0)
    return None


# Canaries on the grpcio of constraints.txt (finalstatus.TESTED_GRPCIO_VERSIONS): when one
# fails after an upgrade, read its message.

async def test_canary_grpc_aio_still_loses_the_status():
    assert await a_lost_status() is not None, (
        "grpc.aio no longer replaces a status with its failed write (grpc/grpc#36066 fixed?): "
        "finalstatus.py may go")


async def test_canary_the_done_callback_reads_the_status_grpc_aio_then_loses():
    error, final = await a_lost_status()
    assert final.status is not None, (
        "a finished call's status is no longer readable in its done callback: finalstatus.py must change")
    assert instance_status(error, final) == (grpc.StatusCode.FAILED_PRECONDITION, "ended", (("x-ended", "yes"),))


def test_the_pinned_grpcio_is_one_finalstatus_was_tested_with():
    assert pins.pinned("grpcio") in finalstatus.TESTED_GRPCIO_VERSIONS
    finalstatus.require_tested_grpcio()


def test_the_gateway_refuses_an_untested_grpcio(monkeypatch):
    monkeypatch.setattr(myservice_api.pins.metadata, "version", lambda name: "1.99.0")
    with pytest.raises(RuntimeError, match=r"grpcio 1\.99\.0 .*constraints\.txt.*tests/gateway/test_finalstatus\.py"):
        finalstatus.require_tested_grpcio()
