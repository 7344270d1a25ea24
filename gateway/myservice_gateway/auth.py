"""Authentication of every call except Login (and health/reflection): an
interceptor that either continues or answers UNAUTHENTICATED. The proxy behind
it never sees an unauthenticated call."""
from __future__ import annotations

import logging

import grpc

from myservice import contract

from . import tokens

log = logging.getLogger("myservice.gateway.auth")

# Open to everyone: how one gets a token, and the infrastructure services.
PUBLIC_PREFIXES = (contract.LOGIN_METHOD, "/grpc.health.v1.Health/", "/grpc.reflection.")


def metadata_value(metadata, key: str) -> str:
    for k, v in metadata or ():
        if k == key:
            return v if isinstance(v, str) else ""
    return ""


MISSING_TOKEN = "missing authorization token"
MISSING_SESSION_ID = "missing session-id"
INVALID_TOKEN = "invalid token"


def check(config: tokens.TokenConfig, metadata) -> str | None:
    """None if the call is authenticated, else the message for the client. Which
    check a bad token failed (signature, expiry, session) is logged, not told."""
    authorization = metadata_value(metadata, contract.AUTHORIZATION)
    if not authorization:
        return MISSING_TOKEN
    session_id = metadata_value(metadata, contract.SESSION_ID)
    if not session_id:
        return MISSING_SESSION_ID
    try:
        tokens.verify(config, tokens.strip_bearer(authorization), session_id=session_id)
    except tokens.InvalidToken as e:
        log.info("rejected token for session-id %r: %s", session_id, e)
        return INVALID_TOKEN
    return None


def _reject(kind_factory, message: str):
    async def unary_reject(request, context):
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, message)

    async def stream_reject(request, context):
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, message)
        yield  # pragma: no cover - makes this an async generator

    streaming_response = kind_factory in (grpc.unary_stream_rpc_method_handler, grpc.stream_stream_rpc_method_handler)
    return kind_factory(stream_reject if streaming_response else unary_reject)


class AuthInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self, config: tokens.TokenConfig) -> None:
        self._config = config

    async def intercept_service(self, continuation, handler_call_details):
        if handler_call_details.method.startswith(PUBLIC_PREFIXES):
            return await continuation(handler_call_details)
        problem = check(self._config, handler_call_details.invocation_metadata)
        if problem is None:
            return await continuation(handler_call_details)
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        if handler.request_streaming and handler.response_streaming:
            factory = grpc.stream_stream_rpc_method_handler
        elif handler.request_streaming:
            factory = grpc.stream_unary_rpc_method_handler
        elif handler.response_streaming:
            factory = grpc.unary_stream_rpc_method_handler
        else:
            factory = grpc.unary_unary_rpc_method_handler
        return _reject(factory, problem)
