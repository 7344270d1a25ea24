"""The four RPC kinds, named once: which grpc handler factory and which channel
multicallable go with (request_streaming, response_streaming)."""
from __future__ import annotations

from collections.abc import Callable

import grpc


def kind_name(request_streaming: bool, response_streaming: bool) -> str:
    """'unary_unary', 'unary_stream', 'stream_unary' or 'stream_stream'."""
    return f"{'stream' if request_streaming else 'unary'}_{'stream' if response_streaming else 'unary'}"


def method_handler(request_streaming: bool, response_streaming: bool, behaviour: Callable) -> grpc.RpcMethodHandler:
    """A bytes-in, bytes-out handler of the given kind around `behaviour`."""
    factory = getattr(grpc, f"{kind_name(request_streaming, response_streaming)}_rpc_method_handler")
    return factory(behaviour)
