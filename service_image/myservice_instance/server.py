"""Run one instance: gRPC server with MyService, health and reflection."""
from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import sys

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from myservice import contract
from myservice.v1 import myservice_pb2, myservice_pb2_grpc

from .servicer import InstanceServicer

log = logging.getLogger("myservice.instance")

# Time given to in-flight calls after Shutdown or SIGTERM.
STOP_GRACE_SECONDS = 5.0


def default_pod_name() -> str:
    return os.environ.get("POD_NAME") or os.environ.get("HOSTNAME") or socket.gethostname()


async def start_instance(
    *, host: str = "0.0.0.0", port: int = 50051, pod_name: str | None = None, unix_socket: str | None = None
) -> tuple[grpc.aio.Server, int, asyncio.Event]:
    """Start an instance on host:port, or on a Unix socket when given; returns
    (server, bound port (0 for a Unix socket), shutdown-requested event)."""
    shutdown_requested = asyncio.Event()
    server = grpc.aio.server()
    servicer = InstanceServicer(pod_name or default_pod_name(), shutdown_requested)
    myservice_pb2_grpc.add_MyServiceServicer_to_server(servicer, server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (myservice_pb2.DESCRIPTOR.services_by_name["MyService"].full_name, health.SERVICE_NAME,
         reflection.SERVICE_NAME),
        server,
    )
    address = f"unix:{unix_socket}" if unix_socket else f"{host}:{port}"
    try:
        bound = server.add_insecure_port(address)
    except RuntimeError:  # grpc's "Failed to bind": say it plainly
        bound = 0
    if bound == 0:
        raise OSError(f"cannot listen on {address} (address in use or not available)")
    if unix_socket:
        bound = 0
    await server.start()
    await health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    await health_servicer.set(contract.SERVICE, health_pb2.HealthCheckResponse.SERVING)
    return server, bound, shutdown_requested


async def serve(*, host: str, port: int, pod_name: str | None, announce: bool, unix_socket: str | None = None) -> int:
    server, bound, shutdown_requested = await start_instance(host=host, port=port, pod_name=pod_name,
                                                             unix_socket=unix_socket)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, shutdown_requested.set)
    where = f"unix:{unix_socket}" if unix_socket else f"{host}:{bound}"
    log.info("instance %s listening on %s", pod_name or default_pod_name(), where)
    if announce:
        # The local backend reads this one line to learn where we listen (port 0
        # means the kernel chose): "LISTENING <port>" or "LISTENING unix:<path>".
        sys.stdout.write(f"LISTENING {where if unix_socket else bound}\n")
        sys.stdout.flush()
    await shutdown_requested.wait()
    log.info("instance stopping (grace %.0fs)", STOP_GRACE_SECONDS)
    await server.stop(STOP_GRACE_SECONDS)
    return 0
