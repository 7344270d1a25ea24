"""MyService handlers that decode requests themselves, so that undecodable bytes
answer INVALID_ARGUMENT "malformed request" instead of grpc's UNKNOWN naming
google.protobuf's DecodeError (an internal class name, and the wrong code).

The gateway forwards request bytes untouched, so this is where they are first
parsed. Same servicer methods as the generated add_MyServiceServicer_to_server."""
from __future__ import annotations

import grpc
from google.protobuf import message, symbol_database

from myservice import errors
from myservice.v1 import myservice_pb2 as pb

SERVICE = pb.DESCRIPTOR.services_by_name["MyService"]


async def _decode(request_type, request_bytes: bytes, context: grpc.aio.ServicerContext):
    try:
        return request_type.FromString(request_bytes)
    except message.DecodeError:
        await errors.malformed_request().abort(context)


def _unary(behaviour, request_type):
    async def handle(request_bytes, context):
        return await behaviour(await _decode(request_type, request_bytes, context), context)
    return handle


def _unary_to_stream(behaviour, request_type):
    async def handle(request_bytes, context):
        async for response in behaviour(await _decode(request_type, request_bytes, context), context):
            yield response
    return handle


def _decoded(request_iterator, request_type, context):
    async def requests():
        async for request_bytes in request_iterator:
            yield await _decode(request_type, request_bytes, context)
    return requests()


def _stream_to_stream(behaviour, request_type):
    async def handle(request_iterator, context):
        async for response in behaviour(_decoded(request_iterator, request_type, context), context):
            yield response
    return handle


def _stream_to_unary(behaviour, request_type):
    async def handle(request_iterator, context):
        return await behaviour(_decoded(request_iterator, request_type, context), context)
    return handle


_FACTORIES = {
    (False, False): (_unary, grpc.unary_unary_rpc_method_handler),
    (False, True): (_unary_to_stream, grpc.unary_stream_rpc_method_handler),
    (True, False): (_stream_to_unary, grpc.stream_unary_rpc_method_handler),
    (True, True): (_stream_to_stream, grpc.stream_stream_rpc_method_handler),
}


def add_servicer(servicer, server: grpc.aio.Server) -> None:
    """Register every MyService method of `servicer` with its own request decoding."""
    database = symbol_database.Default()
    handlers = {}
    for method in SERVICE.methods:
        request_type = database.GetSymbol(method.input_type.full_name)
        response_type = database.GetSymbol(method.output_type.full_name)
        wrap, factory = _FACTORIES[(method.client_streaming, method.server_streaming)]
        handlers[method.name] = factory(wrap(getattr(servicer, method.name), request_type),
                                        response_serializer=response_type.SerializeToString)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE.full_name, handlers),))
