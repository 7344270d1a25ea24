"""Server reflection answers under grpc.reflection.v1 and v1alpha, on the gateway and on an
instance (real servers over loopback), and lists the same services under both names."""
import grpc
import pytest
from grpc_reflection.v1alpha import reflection_pb2

from myservice_instance.server import start_instance

EXPECTED = {"myservice.v1.MyService", "grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection",
            "grpc.reflection.v1.ServerReflection"}


async def list_services(channel, package):
    call = channel.stream_stream(f"/{package}.ServerReflection/ServerReflectionInfo",
                                 request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
                                 response_deserializer=reflection_pb2.ServerReflectionResponse.FromString)

    async def one():
        yield reflection_pb2.ServerReflectionRequest(list_services="")
    replies = [r async for r in call(one())]
    return {s.name for s in replies[0].list_services_response.service}


async def describe(channel, package, symbol):
    call = channel.stream_stream(f"/{package}.ServerReflection/ServerReflectionInfo",
                                 request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
                                 response_deserializer=reflection_pb2.ServerReflectionResponse.FromString)

    async def one():
        yield reflection_pb2.ServerReflectionRequest(file_containing_symbol=symbol)
    replies = [r async for r in call(one())]
    return replies[0].file_descriptor_response.file_descriptor_proto


@pytest.mark.parametrize("package", ["grpc.reflection.v1", "grpc.reflection.v1alpha"])
async def test_gateway_reflection(gw, package):
    assert await list_services(gw.channel, package) == EXPECTED
    assert await describe(gw.channel, package, "myservice.v1.MyService")  # the .proto, serialized


@pytest.mark.parametrize("package", ["grpc.reflection.v1", "grpc.reflection.v1alpha"])
async def test_instance_reflection(package):
    instance = await start_instance(host="127.0.0.1", port=0)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{instance.bound}") as channel:
            assert await list_services(channel, package) == EXPECTED
    finally:
        await instance.server.stop(0)
