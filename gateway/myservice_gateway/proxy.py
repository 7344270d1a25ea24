"""The generic proxy: forwards the calls of the configured services (default
MyService, Login excepted), as opaque message bytes, to the session's instance.
It knows no method of its own: the RPC kind (unary or streaming) is read from
the protobuf descriptor when the gateway has it, and the methods of a service it
has no descriptor for (a user's own) are forwarded as bidirectional streams,
which fit every kind on the wire. A name that can never be served is answered
UNIMPLEMENTED before anything else (see Proxy)."""
from __future__ import annotations

import asyncio
import time

import grpc
from google.protobuf import descriptor_pool

from myservice import contract, errors

from . import metrics as metrics_module
from . import rpckinds
from .auth import Authenticator
from .backends.base import Backend, Endpoint, SessionKey
from .finalstatus import FinalStatus, instance_status, is_oversize_answer
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
    parts = method_parts(method)
    if parts is None:
        return None
    try:
        descriptor = descriptor_pool.Default().FindMethodByName(".".join(parts))
    except KeyError:
        return None
    return descriptor.client_streaming, descriptor.server_streaming


def method_parts(method: str) -> tuple[str, str] | None:
    """(service, method name) of a well-formed '/pkg.Service/Method', else None: a name
    holds no "/" and neither part is empty ('/S/M/extra', '/S//M', '/S/' are not methods)."""
    service, slash, name = method[1:].partition("/")
    if not method.startswith("/") or not slash or not service or not name or "/" in name:
        return None
    return service, name


def service_methods(service: str) -> list[tuple[str, bool, bool]] | None:
    """('/S/M', request_streaming, response_streaming) of each method of `service` when the
    gateway has its descriptor (ours), None when it does not (a user's own service)."""
    try:
        descriptor = descriptor_pool.Default().FindServiceByName(service)
    except KeyError:
        return None
    return [(f"/{service}/{m.name}", m.client_streaming, m.server_streaming) for m in descriptor.methods]


def _timeout(context: grpc.aio.ServicerContext) -> float | None:
    remaining = context.time_remaining()
    return None if remaining is None or remaining > 10**8 else max(remaining, 0.0)


def _code_of(error: BaseException, context: grpc.aio.ServicerContext) -> grpc.StatusCode:
    """The status a handler ended with when it raised: what it aborted with, or
    CANCELLED when the client went away (grpc cancels the handler, or closes a
    streaming one it abandoned)."""
    if isinstance(error, (asyncio.CancelledError, GeneratorExit)):
        return grpc.StatusCode.CANCELLED
    return context.code() or grpc.StatusCode.UNKNOWN


# Handlers kept for the methods of services without a descriptor here (a user's own):
# a few hundred bytes each.
OPAQUE_HANDLERS_KEPT = 1024


class Proxy(grpc.GenericRpcHandler):
    """Forwards the methods of the configured services (MYSERVICE_SERVICES), and only those.

    Which method is forwarded is decided from its name alone, before authentication
    and before any backend work: a method that can never be served (not under a
    configured service, malformed, or not in the descriptor of a service whose
    descriptor the gateway has) is answered UNIMPLEMENTED and starts no instance,
    token or not (there is nothing a token could change). A configured service whose
    descriptor the gateway does not have (a user's own) has its well-formed methods
    forwarded as bidirectional streams: its instance says which exist."""

    def __init__(self, backend: Backend, authenticator: Authenticator, *,
                 services: tuple[str, ...] = (contract.SERVICE,), metrics: GatewayMetrics | None = None) -> None:
        self._backend = backend
        self._authenticator = authenticator
        self._metrics = metrics or GatewayMetrics()
        # Every method of a service with a descriptor, made once, and (bounded) those of
        # services without one (callers must not be able to grow this dict without end).
        self._handlers: dict[str, grpc.RpcMethodHandler] = {}
        self._opaque_services: set[str] = set()  # configured, no descriptor here
        for service in services:
            methods = service_methods(service)
            if methods is None:
                self._opaque_services.add(service)
                continue
            for path, request_streaming, response_streaming in methods:
                if path != contract.LOGIN_METHOD:  # Login is the gateway's own, never forwarded
                    self._handlers[path] = self._make_handler(path, request_streaming, response_streaming)
        self._services = frozenset(services)
        self._handlers_bound = len(self._handlers) + OPAQUE_HANDLERS_KEPT
        self._not_forwarded = rpckinds.method_handler(True, False, self._unimplemented)

    def service(self, handler_call_details):
        method = handler_call_details.method
        handler = self._handlers.get(method)
        if handler is not None:
            return handler
        if method == contract.LOGIN_METHOD or method[1:].partition("/")[0] not in self._services:
            return None  # not ours to answer: grpc's own UNIMPLEMENTED, as for any unknown service
        parts = method_parts(method)
        if parts is not None and parts[0] in self._opaque_services:
            handler = self._make_handler(method, True, True, label=metrics_module.OTHER_METHOD)
            # Kept for the next call, up to a bound: anyone can make up names here before
            # the token is read, so the first OPAQUE_HANDLERS_KEPT names are all it keeps.
            if len(self._handlers) < self._handlers_bound:
                self._handlers[method] = handler
            return handler
        return self._not_forwarded

    async def _unimplemented(self, request_iterator, context):
        """A method of a configured service that can never be served: no token read,
        no backend asked, the requests not read."""
        self._metrics.call_done(metrics_module.OTHER_METHOD, grpc.StatusCode.UNIMPLEMENTED, time.monotonic())
        await errors.method_not_found().abort(context)

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
        if is_oversize_answer(code, details):  # our channel refused it: say so in our words
            await errors.answer_too_large().abort(context)
        await context.abort(code, details, trailing)  # the instance's own status, passed on

    def _make_handler(self, method: str, request_streaming: bool, response_streaming: bool, *,
                      label: str | None = None) -> grpc.RpcMethodHandler:
        """`label`: the method's name in the metrics (a made-up name must not make a series)."""
        # The channel's multicallable of the same kind: unary_unary, stream_stream, ...
        kind = rpckinds.kind_name(request_streaming, response_streaming)
        abort_from = self._abort_from
        endpoint_of = self._endpoint
        call_done = self._metrics.call_done
        label = label or method

        async def start(request_or_iterator, context):
            metadata = context.invocation_metadata()
            key, endpoint = await endpoint_of(context, metadata)
            call = getattr(endpoint.channel, kind)(method)(
                request_or_iterator, metadata=forwarded_metadata(metadata, key), timeout=_timeout(context))
            if response_streaming:
                # However this call ends for our client (answered, cancelled, gone), the
                # instance's call ends with it. Not left to the handler: when the client goes
                # away while grpc is sending it a message, grpc abandons a streaming handler
                # suspended at its yield (no exception, no finally) and the upstream call would
                # stay open until garbage collection, counted by the instance as a call in
                # flight (no idle end; its Shutdown waiting out its grace). A unary answer's
                # handler is cancelled instead, and grpc.aio cancels the call it awaits.
                context.add_done_callback(lambda _context: call.cancel())
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
                call_done(label, code, started)

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
                call_done(label, code, started)

        forward = forward_stream_response if response_streaming else forward_unary_response
        return rpckinds.method_handler(request_streaming, response_streaming, forward)
