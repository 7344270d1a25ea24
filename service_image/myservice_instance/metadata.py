"""Who a call is from, as the gateway says it: the metadata it sets on every
call it forwards (docs/instances.md). Both values are verified by the gateway and
never a client's own; a call that did not come through a gateway (a test, a
health check) has neither, and gets ""."""
from __future__ import annotations

import dataclasses
import urllib.parse

import grpc

from myservice import contract


@dataclasses.dataclass(frozen=True)
class Session:
    """The call's session: its id and its user (the token's)."""
    session_id: str
    user: str


def session_of(context: grpc.aio.ServicerContext) -> Session:
    """The session of the call being served (from `session-id` and `myservice-user`)."""
    session_id = user = None
    for key, value in context.invocation_metadata() or ():
        if key == contract.SESSION_ID and session_id is None:
            session_id = value
        elif key == contract.USER and user is None:
            user = value
    # The gateway percent-encodes the user (a metadata value is visible ASCII only).
    return Session(session_id or "", urllib.parse.unquote(user) if user else "")
