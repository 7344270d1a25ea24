"""Our echo service, built with the SDK: the first user of myservice_instance.
The SDK keeps the session rules and counts the calls; this only answers."""
from __future__ import annotations

from collections.abc import AsyncIterator

from myservice import contract, errors
from myservice.v1 import myservice_pb2 as pb
from myservice.v1 import myservice_pb2_grpc as pb_grpc

from .app import Instance
from .calls import ends_session
from .metadata import session_of


class EchoServicer(pb_grpc.MyServiceServicer):
    def __init__(self, instance: Instance) -> None:
        self._instance = instance

    def _echo(self, value: str, client: str, index: int, method: str) -> pb.EchoResponse:
        return pb.EchoResponse(
            client_value=value,
            server_value=contract.SERVER_VALUE,
            pod_name=self._instance.pod_name,
            server_session_id=self._instance.session_id,
            client_session_id=client,
            index=index,
            server_method=method,
        )

    async def MyServiceEcho(self, request: pb.EchoRequest, context) -> pb.EchoResponse:
        return self._echo(request.value, session_of(context).session_id, 0, "MyServiceEcho")

    async def MyServiceEchoStream(self, request: pb.EchoStreamRequest, context) -> AsyncIterator[pb.EchoResponse]:
        if request.count < 0:
            await errors.negative_count().abort(context)
        client = session_of(context).session_id  # once per call, not per message
        for index in range(request.count):
            yield self._echo(request.value, client, index, "MyServiceEchoStream")

    async def MyServiceChat(self, request_iterator, context) -> AsyncIterator[pb.EchoResponse]:
        client = session_of(context).session_id
        index = 0
        async for request in request_iterator:
            yield self._echo(request.value, client, index, "MyServiceChat")
            index += 1

    @ends_session
    async def MyServiceShutdown(self, request: pb.ShutdownRequest, context) -> pb.ShutdownResponse:
        return pb.ShutdownResponse(
            pod_name=self._instance.pod_name,
            server_session_id=self._instance.session_id,
            client_session_id=session_of(context).session_id,
            index=0,
            server_method="MyServiceShutdown",
        )


def echo_instance() -> Instance:
    """The echo service as an SDK instance (what `myservice instance` runs)."""
    instance = Instance()
    instance.add_servicer(pb_grpc.add_MyServiceServicer_to_server, EchoServicer(instance))
    return instance
