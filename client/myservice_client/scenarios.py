"""The scenarios of `integrationtests`. basic_workflow is the seed scenario
(shared/seed/basic_workflow.md), step by step and check by check."""
from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable

import grpc

from myservice import contract
from myservice.v1 import myservice_pb2 as pb
from myservice.v1 import myservice_pb2_grpc as pb_grpc

from .checks import check, expect_error

ECHO_VALUE = "integration-test-echo"
ECHO_CALLS = 10


@dataclasses.dataclass
class Options:
    gateway: str
    username: str
    password: str
    timeout: float = 30.0
    say: Callable[[str], None] = print


def new_session_id(prefix: str = "it") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def session_metadata(token: str, session_id: str) -> tuple[tuple[str, str], ...]:
    return ((contract.AUTHORIZATION, token), (contract.SESSION_ID, session_id))


def login(stub, opts: Options, session_id: str) -> pb.LoginResponse:
    return stub.Login(pb.LoginRequest(username=opts.username, password=opts.password, session_id=session_id),
                      timeout=opts.timeout)


def basic_workflow(channel: grpc.Channel, opts: Options) -> None:
    """The seed scenario: Login, MyServiceEcho x10 on one pod, MyServiceShutdown."""
    stub = pb_grpc.MyServiceStub(channel)
    session_id = new_session_id()
    opts.say(f"step 1: connected to {opts.gateway}")
    reply = login(stub, opts, session_id)
    check(reply.token != "", "Login: token is non-empty")
    check(reply.HasField("expires_at"), "Login: expires_at is not nil")
    check(reply.role != "", "Login: role is non-empty")
    opts.say(f"step 2: Login ok (session_id={session_id}, role={reply.role})")
    md = session_metadata(reply.token, session_id)
    pod_names = set()
    for i in range(ECHO_CALLS):
        echo = stub.MyServiceEcho(pb.EchoRequest(value=ECHO_VALUE), metadata=md, timeout=opts.timeout)
        check(echo.client_value == ECHO_VALUE, f"MyServiceEcho #{i + 1}: client_value matches the sent value")
        check(echo.server_value == contract.SERVER_VALUE, f"MyServiceEcho #{i + 1}: server_value == \"my_service\"")
        check(echo.pod_name != "", f"MyServiceEcho #{i + 1}: pod_name is non-empty")
        check(echo.server_session_id != "" and echo.client_session_id != "",
              f"MyServiceEcho #{i + 1}: server_session_id and client_session_id are non-empty")
        check(echo.index == 0, f"MyServiceEcho #{i + 1}: index == 0")
        check(echo.server_method != "", f"MyServiceEcho #{i + 1}: server_method is non-empty")
        pod_names.add(echo.pod_name)
    check(len(pod_names) == 1, f"MyServiceEcho: all {ECHO_CALLS} calls return the same pod_name (got {sorted(pod_names)})")
    pod_name = pod_names.pop()
    opts.say(f"step 3: MyServiceEcho x{ECHO_CALLS} ok, sticky on pod_name={pod_name}")
    bye = stub.MyServiceShutdown(pb.ShutdownRequest(), metadata=md, timeout=opts.timeout)
    check(bye.pod_name == pod_name, f"MyServiceShutdown: pod_name matches MyServiceEcho ({bye.pod_name!r} vs {pod_name!r})")
    check(bye.server_session_id != "" and bye.client_session_id != "",
          "MyServiceShutdown: server_session_id and client_session_id are non-empty")
    check(bye.server_method != "", "MyServiceShutdown: server_method is non-empty")
    opts.say(f"step 4: MyServiceShutdown ok (pod_name={bye.pod_name}, server_method={bye.server_method})")


def error_cases(channel: grpc.Channel, opts: Options) -> None:
    """Every row of the seed's error table that a client can trigger."""
    stub = pb_grpc.MyServiceStub(channel)
    t = opts.timeout
    sid = new_session_id("err")
    code = grpc.StatusCode

    def login_with(username: str, password: str, session_id: str):
        return lambda: stub.Login(pb.LoginRequest(username=username, password=password, session_id=session_id), timeout=t)

    expect_error(login_with("", opts.password, sid), code.INVALID_ARGUMENT, contract.USERNAME_REQUIRED, "Login empty username")
    opts.say("ok: empty username -> INVALID_ARGUMENT \"username is required\"")
    expect_error(login_with(opts.username, opts.password, ""), code.INVALID_ARGUMENT, contract.SESSION_ID_REQUIRED, "Login empty session_id")
    opts.say("ok: empty session_id -> INVALID_ARGUMENT \"session_id is required\"")
    expect_error(login_with(opts.username, opts.password + "-wrong", sid), code.PERMISSION_DENIED,
                 contract.INVALID_CREDENTIALS, "Login wrong password")
    expect_error(login_with("no-such-user-" + sid, opts.password, sid), code.PERMISSION_DENIED,
                 contract.INVALID_CREDENTIALS, "Login unknown user")
    opts.say("ok: wrong password and unknown user -> PERMISSION_DENIED \"invalid username or password\"")
    echo = pb.EchoRequest(value="x")
    expect_error(lambda: stub.MyServiceEcho(echo, metadata=((contract.SESSION_ID, sid),), timeout=t),
                 code.UNAUTHENTICATED, None, "Echo without token")
    opts.say("ok: missing token -> UNAUTHENTICATED")
    expect_error(lambda: stub.MyServiceEcho(echo, metadata=session_metadata("not-a-jwt", sid), timeout=t),
                 code.UNAUTHENTICATED, None, "Echo with an invalid token")
    token = login(stub, opts, sid).token
    expect_error(lambda: stub.MyServiceEcho(echo, metadata=session_metadata(token, sid + "-other"), timeout=t),
                 code.UNAUTHENTICATED, None, "Echo with a token of another session")
    opts.say("ok: invalid token and token of another session -> UNAUTHENTICATED")
    expect_error(lambda: stub.MyServiceShutdown(pb.ShutdownRequest(), metadata=session_metadata(token, sid), timeout=t),
                 code.PERMISSION_DENIED, contract.SERVER_SESSION_NOT_SET, "Shutdown before any call")
    opts.say("ok: Shutdown on a fresh session -> PERMISSION_DENIED \"Server session is not set\"")
    # Leave nothing running: bind the instance, then end it.
    stub.MyServiceEcho(echo, metadata=session_metadata(token, sid), timeout=t)
    stub.MyServiceShutdown(pb.ShutdownRequest(), metadata=session_metadata(token, sid), timeout=t)


def streaming(channel: grpc.Channel, opts: Options) -> None:
    """Server-streaming and bidirectional calls through the gateway, index increasing."""
    stub = pb_grpc.MyServiceStub(channel)
    sid = new_session_id("stream")
    md = session_metadata(login(stub, opts, sid).token, sid)
    replies = list(stub.MyServiceEchoStream(pb.EchoStreamRequest(value="s", count=5), metadata=md, timeout=opts.timeout))
    check([r.index for r in replies] == [0, 1, 2, 3, 4], f"EchoStream: indexes 0..4 (got {[r.index for r in replies]})")
    check(all(r.client_value == "s" and r.server_method == "MyServiceEchoStream" for r in replies), "EchoStream: values and method")
    opts.say("ok: MyServiceEchoStream count=5 -> indexes 0..4")
    values = [f"chat-{i}" for i in range(4)]
    chat = list(stub.MyServiceChat(iter(pb.EchoRequest(value=v) for v in values), metadata=md, timeout=opts.timeout))
    check([r.client_value for r in chat] == values, "Chat: every message echoed back in order")
    check([r.index for r in chat] == [0, 1, 2, 3], f"Chat: index increases (got {[r.index for r in chat]})")
    check(len({r.pod_name for r in chat + replies}) == 1, "streams stay on the session's instance")
    opts.say(f"ok: MyServiceChat x4 -> indexes 0..3 on pod_name={chat[0].pod_name}")
    stub.MyServiceShutdown(pb.ShutdownRequest(), metadata=md, timeout=opts.timeout)


SCENARIOS: dict[str, Callable[[grpc.Channel, Options], None]] = {
    "basic_workflow": basic_workflow,
    "error_cases": error_cases,
    "streaming": streaming,
}
