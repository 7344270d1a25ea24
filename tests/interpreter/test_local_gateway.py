"""The interpreter behind a real gateway in local mode, as `myservice up
--instance-command 'python -m myservice_interpreter' --service
interpreter.v1.Interpreter` runs it: one interpreter process per session."""
from __future__ import annotations

import sys

import grpc
import pytest

from interpreter.v1 import interpreter_pb2 as pb
from interpreter.v1 import interpreter_pb2_grpc as pb_grpc
from myservice.v1 import myservice_pb2 as ms_pb

from ..conftest import error_of
from .conftest import EXAMPLE

SERVICE = "interpreter.v1.Interpreter"


@pytest.fixture
async def interp_gw(make_gateway, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(EXAMPLE))  # the instance command's environment is the gateway's
    return await make_gateway(services=(SERVICE,), instance_command=(sys.executable, "-m", "myservice_interpreter"))


async def run(stub, metadata, code: str) -> tuple[str, str, str]:
    reply = await stub.Run(pb.RunRequest(code=code), metadata=metadata, timeout=30)
    return reply.stdout, reply.stderr, reply.error


async def test_sessions_keep_their_own_variables(interp_gw):
    stub = pb_grpc.InterpreterStub(interp_gw.channel)
    one, two = await interp_gw.session("one"), await interp_gw.session("two")
    assert await run(stub, one, "x = 1") == ("", "", "")
    assert await run(stub, two, "x = 2") == ("", "", "")
    for _ in range(10):
        await run(stub, one, "x += 10")
    assert await run(stub, one, "x") == ("101\n", "", "")
    assert await run(stub, two, "x") == ("2\n", "", "")
    pid_one = (await run(stub, one, "import os\nos.getpid()"))[0]
    pid_two = (await run(stub, two, "import os\nos.getpid()"))[0]
    assert pid_one != pid_two


async def test_myservice_is_not_forwarded(interp_gw):
    session = await interp_gw.session("echo")
    code, details = await error_of(interp_gw.stub.MyServiceEcho(ms_pb.EchoRequest(value="v"), metadata=session))
    # grpc's own answer for a service the gateway does not serve (contract.METHOD_NOT_FOUND)
    assert (code, details) == (grpc.StatusCode.UNIMPLEMENTED, "Method not found!")


async def test_shutdown_ends_the_session(interp_gw):
    stub = pb_grpc.InterpreterStub(interp_gw.channel)
    session = await interp_gw.session("bye")
    await run(stub, session, "x = 1")
    reply = await stub.Shutdown(pb.ShutdownRequest(), metadata=session, timeout=30)
    assert reply.pod_name.startswith("myservice-local-")
    code, details = await error_of(stub.Run(pb.RunRequest(code="x"), metadata=session, timeout=30))
    assert code in (grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.UNAVAILABLE), details
    if code == grpc.StatusCode.FAILED_PRECONDITION:
        assert details == "session bye has ended; log in with a new session_id"
    else:  # the call raced the exit (README: never CANCELLED)
        assert details == "backend service unavailable"
