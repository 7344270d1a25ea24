"""The final status an instance gave a call whose requests the gateway streams.

grpc.aio loses it in a race (grpc/grpc#36066, open in grpcio 1.85): when the
instance ends the call while the gateway is still writing requests, the failed
write replaces the instance's status with its own INTERNAL "Internal error from
Core". A done callback runs each time the call is given a status, in order, so
the first status it sees that is not that local write failure is the
instance's.

This relies on grpc.aio internals (when done callbacks run, a finished call's
status read without an event-loop turn), which any release may change: the
gateway refuses to start on a grpcio not in TESTED_GRPCIO_VERSIONS (the pin is in
constraints.txt). tests/gateway/test_finalstatus.py's canaries fail when the
internals change, or when grpc.aio keeps the instance's status itself and this
module can go."""
from __future__ import annotations

import grpc

from myservice_api import pins

# The grpcio releases tests/gateway/test_finalstatus.py passed with; constraints.txt pins one.
TESTED_GRPCIO_VERSIONS = frozenset({"1.85.3"})

LOCAL_WRITE_FAILURE = (grpc.StatusCode.INTERNAL, "Internal error from Core")


def require_tested_grpcio() -> None:
    """At server start: refuse a grpcio whose grpc.aio this module was not tested with."""
    pins.require_tested("grpcio", TESTED_GRPCIO_VERSIONS, module="myservice_gateway/finalstatus.py",
                        canaries="tests/gateway/test_finalstatus.py")


def _now(awaitable):
    """The value of an awaitable that is already complete (a finished call's
    status), without an event loop turn: by the next turn it may be replaced."""
    steps = awaitable.__await__()
    try:
        steps.send(None)
    except StopIteration as done:
        return done.value
    steps.close()
    raise RuntimeError("awaitable was not complete")


def is_local_write_failure(code, details) -> bool:
    return (code, details) == LOCAL_WRITE_FAILURE


# How grpc core words its channel's refusal of a received message over the channel's
# max_receive_message_length (backends/base.py sets it to contract.MAX_ANSWER_BYTES);
# grpc.aio reports it as "Stream removed (CLIENT: Received message larger than max (N vs. M))".
# tests/gateway/test_forwarding.py fails if grpc words it otherwise.
_OVERSIZE_MARK = "Received message larger than max"


def is_oversize_answer(code, details) -> bool:
    """True for the gateway's own channel refusing an instance's message as too large.
    (An instance that answered RESOURCE_EXHAUSTED with grpc's own text for this would
    be told apart from it by nothing, and means the same.)"""
    return code == grpc.StatusCode.RESOURCE_EXHAUSTED and _OVERSIZE_MARK in (details or "")


class FinalStatus:
    """Watches one request-streaming call for the first status that is the instance's."""

    __slots__ = ("status",)

    def __init__(self, call: grpc.aio.Call) -> None:
        self.status: tuple | None = None  # (code, details, trailing metadata)
        call.add_done_callback(self._record)

    def _record(self, call: grpc.aio.Call) -> None:
        if self.status is not None:
            return
        try:
            code, details = _now(call.code()), _now(call.details())
            if not is_local_write_failure(code, details):
                self.status = (code, details, _now(call.trailing_metadata()))
        except RuntimeError:  # not complete after all: keep what grpc reports
            pass


def instance_status(error: grpc.aio.AioRpcError, final: FinalStatus | None) -> tuple[grpc.StatusCode, str, tuple]:
    """(code, details, trailing metadata) that the instance ended the call with."""
    if final is not None and final.status is not None and is_local_write_failure(error.code(), error.details()):
        code, details, trailing = final.status
    else:
        code, details, trailing = error.code(), error.details() or "", error.trailing_metadata()
    return code, details, tuple(trailing or ())
