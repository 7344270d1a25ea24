"""An instance's own UNAVAILABLE or CANCELLED (e.g. grpc's "Cancelling all calls" when a
call meets the instance's stop) reaches the client as the contract's UNAVAILABLE "backend
service unavailable" on both paths: the Python proxy maps it (proxy._abort_from), the
HAProxy front's rule (front/config.py) rewrites it on the fast path."""
import shutil

import grpc
import pytest

from myservice import errors
from myservice.v1 import myservice_pb2 as pb
from myservice.v1 import myservice_pb2_grpc as pb_grpc

from ..conftest import echo, error_of
from .test_routing import StaticBackend, instance_stand_in

UNAVAILABLE = (errors.backend_unavailable().code, errors.backend_unavailable().message)
STATUSES = {"unavailable": (grpc.StatusCode.UNAVAILABLE, "Cancelling all calls"),
            "cancelled": (grpc.StatusCode.CANCELLED, "Cancelled")}


class Gone(pb_grpc.MyServiceServicer):
    """An instance whose Echo answers the status its request names (trailers-only), or echoes."""

    async def MyServiceEcho(self, request, context):
        if request.value in STATUSES:
            await context.abort(*STATUSES[request.value])
        return pb.EchoResponse(client_value=request.value)


async def instance_calls(gw) -> int:
    """Calls HAProxy sent straight to instances (its own counter)."""
    stats = await gw.gateway.front.haproxy.client.stats()
    return int(stats[("instances", "BACKEND")]["stot"])


@pytest.mark.skipif(shutil.which("haproxy") is None, reason="haproxy is not installed")
async def test_an_instances_unavailable_or_cancelled_is_the_contracts_on_the_fast_path(make_gateway):
    async with instance_stand_in(Gone()) as port:
        gw = await make_gateway(backend=StaticBackend(port), front="haproxy")
        metadata = await gw.session("gone")
        assert (await echo(gw, metadata, "first")).client_value == "first"  # through Python: the map entry
        await gw.gateway.front.map.settled()
        before = await instance_calls(gw)
        for value in STATUSES:
            assert await error_of(echo(gw, metadata, value)) == UNAVAILABLE, value
        assert (await echo(gw, metadata, "still")).client_value == "still"
        assert await instance_calls(gw) == before + 3  # all three on the fast path
