"""The generic proxy: forwards every MyService call but Login, as opaque message
bytes, to the session's instance. It knows no method of its own: the RPC kind
(unary or streaming) is read from the protobuf descriptor when known, and any
unknown method is forwarded as a bidirectional stream, which fits every kind
on the wire."""
from __future__ import annotations

import asyncio
import time

import grpc
from google.protobuf import descriptor_pool

from myservice import contract, errors

from . import rpckinds
from .auth import Authenticator
from .backends.base import Backend, Endpoint, SessionKey
from .finalstatus import FinalStatus, instance_status
from .metrics import GatewayMetrics

# Not forwarded: the token stays at the gateway (instances never need it),
# transport-level keys are the channel's own business, and the session's keys are
# set by the gateway itself (a client's own values never reach an instance).
_DROPPED_METADATA = frozenset({contract.AUTHORIZATION, contract.SESSION_ID, contract.USER,
                               "user-agent", "content-type", "te", "host"})


def forwarded_metadata(metadata, session: SessionKey) -> tuple[tuple[str, str | bytes], ...]:
    """The metadata an instance gets: the caller's, less the token and transport keys,
    with `session-id` and `myservice-user` of the call's verified session (docs/instances.md)."""
    kept = tuple((k, v) for k, v in metadata or () if k not in _DROPPED_METADATA and not k.startswith((":", "grpc-")))
    return (*kept, (contract.SESSION_ID, session.session_id),
            (contract.USER, contract.user_metadata_value(session.username)))


def method_kind(method: str) -> tuple[bool, bool] | None:
    """(request_streaming, response_streaming) of '/pkg.Service/Method', None if unknown."""
    try:
        service, name = method.lstrip("/").rsplit("/", 1)
        descriptor = descriptor_pool.Default().FindMethodByName(f"{service}.{name}")
    except (KeyError, ValueError):
        return None
    return descriptor.client_streaming, descriptor.server_streaming


def _timeout(context: grpc.aio.ServicerContext) -> float | None:
    remaining = context.time_remaining()
    return None if remaining is None or remaining > 10**8 else max(remaining, 0.0)


def _code_of(error: BaseException, context: grpc.aio.ServicerContext) -> grpc.StatusCode:
    """The status a handler ended with when it raised: what it aborted with, or
    CANCELLED when the client went away (grpc cancels the handler)."""
    if isinstance(error, asyncio.CancelledError):
        return grpc.StatusCode.CANCELLED
    return context.code() or grpc.StatusCode.UNKNOWN


class Proxy(grpc.GenericRpcHandler):
    def __init__(self, backend: Backend, authenticator: Authenticator, *,
                 services: tuple[str, ...] = (contract.SERVICE,), metrics: GatewayMetrics | None = None) -> None:
        self._backend = backend
        self._authenticator = authenticator
        self._metrics = metrics or GatewayMetrics()
        self._prefixes = tuple(f"/{s}/" for s in services)
        self._handlers: dict[str, grpc.RpcMethodHandler] = {}

    def service(self, handler_call_details):
        method = handler_call_details.method
        handler = self._handlers.get(method)
        if handler is None:
            if not method.startswith(self._prefixes) or method == contract.LOGIN_METHOD:
                return None
            kind = method_kind(method)
            # Unknown methods go as bidi streams and are not cached: callers must
            # not be able to grow this dict with made-up method names.
            handler = self._make_handler(method, *(kind or (True, True)))
            if kind is not None:
                self._handlers[method] = handler
        return handler

    async def _endpoint(self, context: grpc.aio.ServicerContext, metadata) -> tuple[SessionKey, Endpoint]:
        """Authenticate the call, then find its session's instance; aborts otherwise."""
        try:
            key = self._authenticator.authenticate(metadata)
            return key, await self._backend.endpoint(key, timeout=_timeout(context))
        except errors.ContractError as e:
            await e.abort(context)
            raise  # unreachable: abort raises

    @staticmethod
    async def _abort_from(context: grpc.aio.ServicerContext, code: grpc.StatusCode, details: str,
                          trailing: tuple) -> None:
        # CANCELLED here was not asked for by our client (its cancellation ends this
        # handler instead): the instance or its channel went away mid-call, e.g. right
        # after a Shutdown. Say so as the seed does for a lost instance.
        if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED):
            await errors.backend_unavailable().abort(context, trailing)
        await context.abort(code, details, trailing)  # the instance's own status, passed on

    def _make_handler(self, method: str, request_streaming: bool, response_streaming: bool) -> grpc.RpcMethodHandler:
        # The channel's multicallable of the same kind: unary_unary, stream_stream, ...
        kind = rpckinds.kind_name(request_streaming, response_streaming)
        abort_from = self._abort_from
        endpoint_of = self._endpoint
        call_done = self._metrics.call_done

        async def start(request_or_iterator, context):
            metadata = context.invocation_metadata()
            key, endpoint = await endpoint_of(context, metadata)
            call = getattr(endpoint.channel, kind)(method)(
                request_or_iterator, metadata=forwarded_metadata(metadata, key), timeout=_timeout(context))
            return call, (FinalStatus(call) if request_streaming else None)

        async def forward_unary_response(request_or_iterator, context):
            started, code = time.monotonic(), grpc.StatusCode.OK
            try:
                call, final = await start(request_or_iterator, context)
                try:
                    response = await call
                except grpc.aio.AioRpcError as e:
                    code, details, trailing = instance_status(e, final)
                    if code == grpc.StatusCode.OK:  # its response was lost with the race
                        code, details, trailing = e.code(), e.details() or "", ()
                    await abort_from(context, code, details, trailing)
                context.set_trailing_metadata(tuple(await call.trailing_metadata() or ()))
                return response
            except BaseException as e:
                code = _code_of(e, context)
                raise
            finally:
                call_done(method, code, started)

        async def forward_stream_response(request_or_iterator, context):
            started, code = time.monotonic(), grpc.StatusCode.OK
            try:
                call, final = await start(request_or_iterator, context)
                try:
                    async for response in call:
                        yield response
                except grpc.aio.AioRpcError as e:
                    code, details, trailing = instance_status(e, final)
                    if code != grpc.StatusCode.OK:
                        await abort_from(context, code, details, trailing)
                    context.set_trailing_metadata(trailing)
                    return
                context.set_trailing_metadata(tuple(await call.trailing_metadata() or ()))
            except BaseException as e:
                code = _code_of(e, context)
                raise
            finally:
                call_done(method, code, started)

        forward = forward_stream_response if response_streaming else forward_unary_response
        return rpckinds.method_handler(request_streaming, response_streaming, forward)
