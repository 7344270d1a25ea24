"""The instance's MyService servicer: a thin adapter over SessionBinding, which
also tells the instance's Activity when each call starts and ends."""
from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator

import grpc

from myservice import contract, errors
from myservice.v1 import myservice_pb2 as pb
from myservice.v1 import myservice_pb2_grpc as pb_grpc

from .limits import Activity
from .sessions import SessionBinding


def client_session_of(context: grpc.aio.ServicerContext) -> str:
    for key, value in context.invocation_metadata() or ():
        if key == contract.SESSION_ID:
            return value
    return ""


class InstanceServicer(pb_grpc.MyServiceServicer):
    def __init__(self, pod_name: str, shutdown_requested: asyncio.Event, activity: Activity) -> None:
        self.pod_name = pod_name
        self.binding = SessionBinding()
        self._shutdown_requested = shutdown_requested
        self._activity = activity

    @contextlib.contextmanager
    def _call(self) -> Iterator[None]:
        """One MyService call in flight, from its start until its handler returns
        (for a stream: until it closes, however quiet it was meanwhile)."""
        self._activity.call_started()
        try:
            yield
        finally:
            self._activity.call_ended()

    async def _bind(self, context: grpc.aio.ServicerContext) -> tuple[str, str]:
        client = client_session_of(context)
        try:
            return self.binding.bind(client), client
        except errors.ContractError as e:
            await e.abort(context)
            raise  # unreachable: abort raises

    def _echo(self, value: str, server: str, client: str, index: int, method: str) -> pb.EchoResponse:
        return pb.EchoResponse(
            client_value=value,
            server_value=contract.SERVER_VALUE,
            pod_name=self.pod_name,
            server_session_id=server,
            client_session_id=client,
            index=index,
            server_method=method,
        )

    async def MyServiceEcho(self, request: pb.EchoRequest, context) -> pb.EchoResponse:
        with self._call():
            server, client = await self._bind(context)
            return self._echo(request.value, server, client, 0, "MyServiceEcho")

    async def MyServiceEchoStream(self, request: pb.EchoStreamRequest, context) -> AsyncIterator[pb.EchoResponse]:
        with self._call():
            server, client = await self._bind(context)
            if request.count < 0:
                await errors.negative_count().abort(context)
            for index in range(request.count):
                yield self._echo(request.value, server, client, index, "MyServiceEchoStream")

    async def MyServiceChat(self, request_iterator, context) -> AsyncIterator[pb.EchoResponse]:
        with self._call():
            server, client = await self._bind(context)
            index = 0
            async for request in request_iterator:
                yield self._echo(request.value, server, client, index, "MyServiceChat")
                index += 1

    async def MyServiceShutdown(self, request: pb.ShutdownRequest, context) -> pb.ShutdownResponse:
        with self._call():
            client = client_session_of(context)
            try:
                server = self.binding.check_shutdown(client)
            except errors.ContractError as e:
                await e.abort(context)
            # Exit only once this answer is on its way: the done callback fires after
            # the RPC has completed.
            context.add_done_callback(lambda _ctx: self._shutdown_requested.set())
            return pb.ShutdownResponse(
                pod_name=self.pod_name,
                server_session_id=server,
                client_session_id=client,
                index=0,
                server_method="MyServiceShutdown",
            )
