"""What every call of a registered service goes through: its request decoded
(bytes that do not decode answer INVALID_ARGUMENT "malformed request", not grpc's
UNKNOWN naming a protobuf class: the gateway forwards bytes untouched, so this is
where they are first parsed), each answer encoded here and refused over 4 MiB
(RESOURCE_EXHAUSTED with the gateway's text: a client that reaches the instance
straight through the HAProxy front would otherwise get grpc's own "Received message
larger than max"), the session rules when the instance keeps them,
counted as a call in flight (for the idle timeout), and a client's cancel logged
in one line, without a traceback. Once the instance is ending (close()), a new
call is refused at once with "session … has ended", never left to wait for the
server's stop; a call still in flight when its grace ends is cut (cut()) with
UNAVAILABLE "backend service unavailable", not left to the server's stop.

Health and reflection are not wrapped: they are not calls of the session (kubelet
probes them, and must not keep an idle instance alive)."""
from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc

from myservice import contract, errors

from .limits import Activity
from .metadata import session_of
from .sessions import SessionBinding

log = logging.getLogger("myservice.instance")

ENDS_SESSION_ATTRIBUTE = "__myservice_ends_session__"


def ends_session(method: Callable) -> Callable:
    """Mark a servicer method as the end of the session (a Shutdown): the instance
    exits 0 once the method's call has completed (its answer delivered, other calls
    given their grace). With session rules only the bound session may call it:
    "Server session is not set" before any call, "Client session mismatch" for
    another session."""
    setattr(method, ENDS_SESSION_ATTRIBUTE, True)
    return method


def _behaviour(handler: grpc.RpcMethodHandler) -> Callable:
    return handler.unary_unary or handler.unary_stream or handler.stream_unary or handler.stream_stream


class CallGuard:
    """Wraps method handlers: decoding, session rules (`binding`, None: none), the
    call count (`activity`), `end` once an ends_session call has completed, and the
    refusal of new calls once the instance is ending (close())."""

    def __init__(self, *, activity: Activity, binding: SessionBinding | None, end: Callable[[], None]) -> None:
        self._activity = activity
        self._binding = binding
        self._end = end
        self.closed = False
        self._tasks: set[asyncio.Task] = set()  # the calls in flight, to cut
        self._cutting = False

    def close(self) -> None:
        """The session is over (Shutdown, a limit, SIGTERM): every call from now on is
        refused at once; those in flight go on."""
        self.closed = True

    def cut(self) -> int:
        """The grace is over: end every call still in flight with UNAVAILABLE "backend
        service unavailable", what the gateway answers for an instance gone mid-call.
        Left to the server's stop(0), such a call would end with grpc's own "Cancelling
        all calls", which the Python gateway rewrites but a client on the front's fast
        path reads as is (its status comes in trailers, past HAProxy's rules). Returns
        the number of calls told."""
        self._cutting = True
        for task in self._tasks:
            task.cancel()
        return len(self._tasks)

    async def _refuse_if_closed(self, context: grpc.aio.ServicerContext) -> None:
        """A call reaching an ending instance gets what the gateway answers once it is
        gone: FAILED_PRECONDITION "session <id> has ended; log in with a new session_id",
        so a client sees one answer whichever side of the exit its call fell on. The id
        is the call's own (the gateway sends only this session's calls, and an instance
        without session rules knows no other); a call of another session than the bound
        one still gets the conflict."""
        if not self.closed:
            return
        session_id = session_of(context).session_id
        bound = self._binding.server_session_id if self._binding is not None else None
        if bound is not None and session_id != bound:
            await errors.session_conflict(bound, session_id).abort(context)
        await errors.session_ended(session_id).abort(context)

    @contextlib.asynccontextmanager
    async def _call(self, method: str, context: grpc.aio.ServicerContext) -> AsyncIterator[None]:
        """One call in flight, from its start until its handler returns (for a
        stream: until it closes, however quiet it was meanwhile)."""
        self._activity.call_started()
        task = asyncio.current_task()
        self._tasks.add(task)
        try:
            yield
        except asyncio.CancelledError:
            if self._cutting:  # cut(): the instance ends, not the client
                await errors.backend_unavailable().abort(context)
            # The client (or the gateway for it) went away: grpc cancels a handler.
            # Normal, not an error: one line, no traceback.
            log.info("%s: cancelled by the client", method)
            raise
        except GeneratorExit:  # as a cancel, for a streaming handler grpc closes
            log.info("%s: cancelled by the client", method)
            raise
        finally:
            self._tasks.discard(task)
            self._activity.call_ended()

    async def _admit(self, context: grpc.aio.ServicerContext, ends: bool) -> None:
        """The session rules (aborts with the seed's texts), and the end after an ending call."""
        if self._binding is not None:
            session_id = session_of(context).session_id
            try:
                if ends:
                    self._binding.check_shutdown(session_id)
                else:
                    self._binding.bind(session_id)
            except errors.ContractError as e:
                await e.abort(context)
        if ends:
            # Called once the RPC has completed: the answer is on its way first.
            context.add_done_callback(lambda _context: self._end())

    def wrap(self, method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        """`handler` of '/pkg.Service/Method' with decoding, rules and counting."""
        behaviour = _behaviour(handler)
        ends = bool(getattr(behaviour, ENDS_SESSION_ATTRIBUTE, False))
        decode = _decoder(handler.request_deserializer)
        # Answers are encoded here, so their size is known before they leave: the
        # handler is registered without a serializer and grpc sends the bytes as they are.
        encode = _encoder(handler.response_serializer)
        call, admit, refuse_if_closed = self._call, self._admit, self._refuse_if_closed

        if not handler.request_streaming and not handler.response_streaming:
            async def unary_unary(request, context):
                await refuse_if_closed(context)
                request = await decode(request, context)
                async with call(method, context):
                    await admit(context, ends)
                    return await encode(await _value(behaviour(request, context)), context)
            return grpc.unary_unary_rpc_method_handler(unary_unary)

        if not handler.request_streaming:
            async def unary_stream(request, context):
                await refuse_if_closed(context)
                request = await decode(request, context)
                async with call(method, context):
                    await admit(context, ends)
                    responses = behaviour(request, _EncodingContext(context, encode))
                    if not hasattr(responses, "__aiter__"):  # not an async generator: one more layer
                        responses = _responses(responses)
                    async for response in responses:
                        yield await encode(response, context)
            return grpc.unary_stream_rpc_method_handler(unary_stream)

        if not handler.response_streaming:
            async def stream_unary(requests, context):
                await refuse_if_closed(context)
                async with call(method, context):
                    await admit(context, ends)
                    return await encode(await _value(behaviour(_decoded(requests, decode, context), context)), context)
            return grpc.stream_unary_rpc_method_handler(stream_unary)

        async def stream_stream(requests, context):
            await refuse_if_closed(context)
            async with call(method, context):
                await admit(context, ends)
                responses = behaviour(_decoded(requests, decode, context), _EncodingContext(context, encode))
                if not hasattr(responses, "__aiter__"):
                    responses = _responses(responses)
                async for response in responses:
                    yield await encode(response, context)
        return grpc.stream_stream_rpc_method_handler(stream_stream)


def _decoder(deserialize: Callable[[bytes], Any] | None):
    if deserialize is None:  # the handler takes bytes itself
        async def as_is(request, context):
            return request
        return as_is

    async def decode(request_bytes: bytes, context: grpc.aio.ServicerContext):
        try:
            return deserialize(request_bytes)
        except Exception:  # noqa: BLE001 - whatever the deserializer refuses is malformed
            await errors.malformed_request().abort(context)
    return decode


def _encoder(serialize: Callable[[Any], bytes] | None):
    """An answer's bytes (as they are when the handler gives bytes itself), or the
    abort RESOURCE_EXHAUSTED "answer larger than 4 MiB ..." when they are more than
    a client takes in one message: the gateway's own answer for it, so a client
    hears the same through the gateway and through the front's fast path."""
    async def encode(response, context: grpc.aio.ServicerContext) -> bytes:
        data = response if serialize is None else serialize(response)
        if len(data) > contract.MAX_ANSWER_BYTES:
            await errors.answer_too_large().abort(context)
        return data
    return encode


class _EncodingContext:
    """The context a streaming handler sees: its context.write goes through the same
    encoding and size check as a yielded answer (grpc has no serializer to apply)."""

    def __init__(self, context: grpc.aio.ServicerContext, encode) -> None:
        self._context = context
        self._encode = encode

    async def write(self, message) -> None:
        await self._context.write(await self._encode(message, self._context))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._context, name)


async def _decoded(requests, decode, context):
    async for request_bytes in requests:
        yield await decode(request_bytes, context)


async def _value(result):
    """A handler's answer: awaited when it is a coroutine (async servicers), as is otherwise."""
    return await result if inspect.isawaitable(result) else result


async def _responses(result):
    """A streaming handler's answers when it is not an async generator: a coroutine
    that writes them itself (context.write), or a plain iterable."""
    if inspect.isawaitable(result):
        await result
    else:
        for response in result:
            yield response


class Registrar:
    """Stands for the gRPC server while servicers are added: what the generated
    add_*Servicer_to_server functions call. Every handler they add is wrapped by
    the guard, and the services' names are kept (health and reflection serve them)."""

    def __init__(self, server: grpc.aio.Server, guard: CallGuard) -> None:
        self._server = server
        self._guard = guard
        self.service_names: list[str] = []

    def _named(self, name: str) -> None:
        if name not in self.service_names:
            self.service_names.append(name)

    def add_generic_rpc_handlers(self, handlers) -> None:
        for handler in handlers:
            name = getattr(handler, "service_name", None)
            if callable(name):
                self._named(name())
        self._server.add_generic_rpc_handlers(tuple(_GuardedHandler(h, self._guard) for h in handlers))

    def add_registered_method_handlers(self, service_name: str, method_handlers: dict) -> None:
        self._named(service_name)
        self._server.add_registered_method_handlers(
            service_name, {name: self._guard.wrap(f"/{service_name}/{name}", handler)
                           for name, handler in method_handlers.items()})

    def __getattr__(self, name: str) -> Any:
        return getattr(self._server, name)


class _GuardedHandler(grpc.GenericRpcHandler):
    """A generic handler whose method handlers go through the guard. (Generated code
    also registers its methods, which grpc serves first: this path is for handlers
    made by hand, e.g. with grpc.method_handlers_generic_handler.)"""

    def __init__(self, inner: grpc.GenericRpcHandler, guard: CallGuard) -> None:
        self._inner = inner
        self._guard = guard

    def service(self, handler_call_details):
        handler = self._inner.service(handler_call_details)
        return None if handler is None else self._guard.wrap(handler_call_details.method, handler)
