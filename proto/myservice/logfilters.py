"""Log filters for grpc's own records, shared by gateway and instance.

grpc.aio logs a call whose client went away while a streamed answer was being sent
(a client's cancel, a lost connection, a passed deadline) as an ERROR with a
traceback: "ExecuteBatchError raised in core by servicer method [...]". For a server
of ours that is an ordinary end of a call, not an error of its own. (When grpc
cancels the handler first, it logs the same end at DEBUG.)"""
from __future__ import annotations

import logging

GRPC_AIO_LOGGER = "grpc._cython.cygrpc"


class ClientGoneLogFilter(logging.Filter):
    """Turns grpc.aio's "client gone" ERROR into one INFO line without the traceback, or
    drops it (`drop`) where the server logs that end itself (the instance's call guard
    says "cancelled by the client" for the same call, when grpc closes its handler)."""

    MESSAGE = "ExecuteBatchError raised in core by servicer method"

    def __init__(self, *, drop: bool = False) -> None:
        super().__init__()
        self.drop = drop

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.ERROR and str(record.msg).startswith(self.MESSAGE):
            if self.drop:
                return False
            record.levelno, record.levelname = logging.INFO, logging.getLevelName(logging.INFO)
            record.exc_info, record.exc_text, record.stack_info = None, None, None
            record.msg = "call %s ended while it was being answered: the client cancelled or went away"
        return True


def quiet_client_cancels(logger: logging.Logger | None = None, *, drop: bool = False) -> None:
    """Install ClientGoneLogFilter on grpc.aio's logger, once per process (the first
    one installed stays: a process holds one gateway or one instance)."""
    logger = logger or logging.getLogger(GRPC_AIO_LOGGER)
    if not any(isinstance(f, ClientGoneLogFilter) for f in logger.filters):
        logger.addFilter(ClientGoneLogFilter(drop=drop))
