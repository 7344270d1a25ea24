#!/usr/bin/env python3
"""The least a grpc.aio proxy can do: forward every unary call, as opaque bytes
with its metadata, to one fixed upstream. No authentication, no routing, no
deadline or trailing-metadata handling: the floor of what the gateway's own
stack (grpc.aio on both legs) costs, for bench/echo_latency.py to measure
the gateway against.

    .venv/bin/python bench/bare_proxy.py --upstream 127.0.0.1:PORT [--port 0]

Prints "LISTENING <port>" on stdout once it serves; stops on SIGTERM/SIGINT.
"""
from __future__ import annotations

import argparse
import asyncio
import signal

import grpc

# Transport-level keys belong to each leg's own channel.
_HOP_BY_HOP = frozenset({"user-agent", "content-type", "te", "host"})


class ForwardUnary(grpc.GenericRpcHandler):
    def __init__(self, channel: grpc.aio.Channel) -> None:
        self._channel = channel

    def service(self, handler_call_details):
        forward = self._channel.unary_unary(handler_call_details.method)

        async def handle(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
            metadata = tuple(kv for kv in context.invocation_metadata() if kv[0] not in _HOP_BY_HOP)
            return await forward(request, metadata=metadata)

        return grpc.unary_unary_rpc_method_handler(handle)


async def serve(upstream: str, port: int) -> None:
    channel = grpc.aio.insecure_channel(upstream)
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((ForwardUnary(channel),))
    bound = server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    print(f"LISTENING {bound}", flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop(0)
    await channel.close()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--upstream", required=True, help="host:port of the instance to forward to")
    p.add_argument("--port", type=int, default=0, help="port to listen on, on 127.0.0.1 (default: any free one)")
    a = p.parse_args()
    asyncio.run(serve(a.upstream, a.port))


if __name__ == "__main__":
    main()
