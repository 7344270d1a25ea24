"""The Login RPC: validate, authenticate, issue a session-bound token."""
from __future__ import annotations

import asyncio
import logging

import grpc
from google.protobuf import timestamp_pb2

from myservice import contract
from myservice.v1 import myservice_pb2 as pb

from . import tokens
from .backends.base import Backend, SessionOwner
from .users import UserStore, UserStoreError

log = logging.getLogger("myservice.gateway.login")


def validate(request: pb.LoginRequest) -> tuple[grpc.StatusCode, str] | None:
    """The seed's argument checks, in its order."""
    if not request.username:
        return grpc.StatusCode.INVALID_ARGUMENT, contract.USERNAME_REQUIRED
    if not request.session_id:
        return grpc.StatusCode.INVALID_ARGUMENT, contract.SESSION_ID_REQUIRED
    return None


class LoginHandler:
    def __init__(self, *, users: UserStore, token_config: tokens.TokenConfig, backend: Backend) -> None:
        self._users = users
        self._token_config = token_config
        self._backend = backend

    async def login(self, request: pb.LoginRequest, context: grpc.aio.ServicerContext) -> pb.LoginResponse:
        invalid = validate(request)
        if invalid:
            await context.abort(*invalid)
        try:
            # Hashing is deliberately slow: keep it off the event loop.
            user = await asyncio.to_thread(self._users.authenticate, request.username, request.password)
        except UserStoreError as e:
            log.error("user store: %s", e)
            await context.abort(grpc.StatusCode.INTERNAL, contract.FAILED_TO_GET_USER)
        if user is None:
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, contract.INVALID_CREDENTIALS)
        try:
            token, exp = tokens.issue(self._token_config, username=user.username, role=user.role,
                                      session_id=request.session_id)
        except Exception as e:  # noqa: BLE001 - any signing failure
            log.error("signing failed: %s", e)
            await context.abort(grpc.StatusCode.INTERNAL, contract.FAILED_TO_CREATE_TOKEN)
        await self._backend.prepare(SessionOwner(request.session_id, user.username, user.role))
        return pb.LoginResponse(token=token, expires_at=timestamp_pb2.Timestamp(seconds=exp), role=user.role)
