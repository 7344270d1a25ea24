"""Which status reaches the client when grpc.aio reports its own failed write."""
import grpc
from grpc.aio import AioRpcError, Metadata

from myservice_gateway.finalstatus import LOCAL_WRITE_FAILURE, instance_status


class Recorded:
    def __init__(self, status):
        self.status = status


def error(code, details, trailing=()):
    return AioRpcError(code, Metadata(), Metadata(*trailing), details)


def test_local_write_failure_gives_way_to_the_instance_status():
    recorded = Recorded((grpc.StatusCode.FAILED_PRECONDITION, "ended", Metadata(("x", "1"))))
    assert instance_status(error(*LOCAL_WRITE_FAILURE), recorded) == (
        grpc.StatusCode.FAILED_PRECONDITION, "ended", (("x", "1"),))


def test_local_write_failure_stays_when_nothing_else_was_recorded():
    assert instance_status(error(*LOCAL_WRITE_FAILURE), Recorded(None)) == (*LOCAL_WRITE_FAILURE, ())
    assert instance_status(error(*LOCAL_WRITE_FAILURE), None) == (*LOCAL_WRITE_FAILURE, ())


def test_any_other_error_is_the_instance_own():
    recorded = Recorded((grpc.StatusCode.OK, "", ()))
    assert instance_status(error(grpc.StatusCode.NOT_FOUND, "gone", [("y", "2")]), recorded) == (
        grpc.StatusCode.NOT_FOUND, "gone", (("y", "2"),))
