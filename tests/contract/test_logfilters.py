"""myservice.logfilters: grpc.aio's "client gone" ERROR, as gateway and instance log it."""
import logging
import sys

import pytest

from myservice import logfilters

METHOD = "/myservice.v1.MyService/MyServiceEchoStream"


def record(level: int, msg: str) -> logging.LogRecord:
    try:
        raise RuntimeError("execute_batch failed")
    except RuntimeError:
        exc_info = sys.exc_info()
    return logging.LogRecord(logfilters.GRPC_AIO_LOGGER, level, "server.pyx", 1, msg, (METHOD,), exc_info)


def test_the_gateway_gets_one_info_line_without_the_traceback():
    r = record(logging.ERROR, "ExecuteBatchError raised in core by servicer method [%s]")
    assert logfilters.ClientGoneLogFilter().filter(r)
    assert (r.levelno, r.levelname, r.exc_info, r.getMessage()) == (
        logging.INFO, "INFO", None, f"call {METHOD} ended while it was being answered: the client cancelled or went away")


def test_the_instance_drops_it_its_call_guard_says_it():
    r = record(logging.ERROR, "ExecuteBatchError raised in core by servicer method [%s]")
    assert not logfilters.ClientGoneLogFilter(drop=True).filter(r)


@pytest.mark.parametrize("drop", [False, True])
def test_other_records_pass_untouched(drop):
    for r in (record(logging.ERROR, "Unexpected [%s]"), record(logging.DEBUG, "ExecuteBatchError raised in core by servicer method [%s]")):
        before = (r.levelno, r.msg, r.exc_info)
        assert logfilters.ClientGoneLogFilter(drop=drop).filter(r)
        assert (r.levelno, r.msg, r.exc_info) == before


def test_installed_once_the_first_stays():
    logger = logging.getLogger("test.logfilters.once")
    logfilters.quiet_client_cancels(logger, drop=True)
    logfilters.quiet_client_cancels(logger)
    [f] = logger.filters
    assert f.drop
