"""An answer over 4 MiB (one message) is refused by the instance itself with the
gateway's code and text: a client behind the HAProxy front reaches the instance
straight, with no gateway channel to refuse it, and must hear the same answer.
The client here takes in up to 16 MiB, so only the instance's own check refuses."""
import grpc
import pytest

from myservice import contract, errors
from myservice.v1 import myservice_pb2 as pb
from myservice.v1 import myservice_pb2_grpc as pb_grpc
from myservice_instance.server import start_instance

TOO_LARGE = (errors.answer_too_large().code, errors.answer_too_large().message)
BIG = "x" * (contract.MAX_ANSWER_BYTES - 10)  # a request under the limit, its answer over it
SESSION = (("session-id", "s"),)


@pytest.fixture
async def stub():
    instance = await start_instance(host="127.0.0.1", port=0)
    options = [("grpc.max_receive_message_length", 4 * contract.MAX_ANSWER_BYTES),
               ("grpc.max_send_message_length", 4 * contract.MAX_ANSWER_BYTES)]
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{instance.bound}", options=options) as channel:
            yield pb_grpc.MyServiceStub(channel)
    finally:
        await instance.server.stop(0)


async def _error_of(awaitable):
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await awaitable
    return e.value.code(), e.value.details()


async def _drained(call):
    return [r async for r in call]


async def test_a_unary_answer_over_4_mib_is_refused_with_the_gateways_text(stub):
    assert await _error_of(stub.MyServiceEcho(pb.EchoRequest(value=BIG), metadata=SESSION)) == TOO_LARGE


async def test_a_stream_answer_over_4_mib_is_refused_and_the_instance_goes_on(stub):
    call = stub.MyServiceEchoStream(pb.EchoStreamRequest(value=BIG, count=2), metadata=SESSION)
    assert await _error_of(_drained(call)) == TOO_LARGE

    async def one():
        yield pb.EchoRequest(value=BIG)
    assert await _error_of(_drained(stub.MyServiceChat(one(), metadata=SESSION))) == TOO_LARGE
    # Answers under the limit still pass, as bytes the wrapper encoded.
    under = "y" * (contract.MAX_ANSWER_BYTES - 1000)
    assert (await stub.MyServiceEcho(pb.EchoRequest(value=under), metadata=SESSION)).client_value == under
    answers = await _drained(stub.MyServiceEchoStream(pb.EchoStreamRequest(value="v", count=3), metadata=SESSION))
    assert [a.index for a in answers] == [0, 1, 2]
