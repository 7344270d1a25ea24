"""Login through a real gateway: the seed's validations and errors, exactly."""
import json
import time

import grpc
import jwt
import pytest

from myservice import errors
from myservice.v1 import myservice_pb2 as pb
from myservice_gateway import users
from myservice_gateway.backends.local import LocalBackend

from ..conftest import KEY


async def login_error(gw, **fields):
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await gw.stub.Login(pb.LoginRequest(**fields))
    return e.value.code(), e.value.details()


async def test_login_success_fields(gw):
    before = int(time.time())
    reply = await gw.login("s-1")
    claims = jwt.decode(reply.token, KEY, algorithms=["HS256"], audience="myservice")
    assert reply.role == "user"
    assert claims["sid"] == "s-1" and claims["sub"] == "TestUser" and claims["iss"] == "myservice-gateway"
    assert reply.expires_at.seconds == claims["exp"]
    assert before + 3600 <= reply.expires_at.seconds <= int(time.time()) + 3600


async def test_login_validation_errors(gw):
    assert await login_error(gw, username="", password="x", session_id="s") == (
        grpc.StatusCode.INVALID_ARGUMENT, "username is required")
    assert await login_error(gw, username="TestUser", password="TestPassword", session_id="") == (
        grpc.StatusCode.INVALID_ARGUMENT, "session_id is required")
    assert await login_error(gw, username="TestUser", password="wrong", session_id="s") == (
        grpc.StatusCode.PERMISSION_DENIED, "invalid username or password")
    assert await login_error(gw, username="Nobody", password="TestPassword", session_id="s") == (
        grpc.StatusCode.PERMISSION_DENIED, "invalid username or password")


async def test_user_store_failure_is_internal_failed_to_get_user(make_gateway, tmp_path):
    path = tmp_path / "users.json"
    path.write_text(json.dumps({"users": {"alice": {"password_hash": users.hash_password("a"), "role": "admin"}}}))
    gw = await make_gateway(users_file=str(path), dev_user=False)
    assert (await gw.login("s", "alice", "a")).role == "admin"
    path.write_text("{broken")
    assert await login_error(gw, username="alice", password="a", session_id="s") == (
        grpc.StatusCode.INTERNAL, "failed to get user")


async def test_signing_failure_is_internal_failed_to_create_token(make_gateway):
    # Not a usable HMAC key: signing raises (no front: HAProxy would refuse such a key at start).
    gw = await make_gateway(jwt_key=12345, front="none")
    assert await login_error(gw, username="TestUser", password="TestPassword", session_id="s") == (
        grpc.StatusCode.INTERNAL, "failed to create token")


async def test_login_starts_no_instance(gw):
    await gw.login("s-idle")
    assert gw.backend.live_count == 0


RULE = ("session_id must be 1 to 128 printable ASCII characters "
        "(0x21-0x7E: no spaces, no control characters)")


@pytest.mark.parametrize("session_id", ["a\nb", "sess\r\nx-injected: 1", "séance", "x" * 129, "a b", "\x7f", "tab\t"])
async def test_session_id_that_cannot_travel_as_metadata_is_refused_with_the_rule(gw, session_id):
    assert await login_error(gw, username="TestUser", password="TestPassword", session_id=session_id) == (
        grpc.StatusCode.INVALID_ARGUMENT, RULE)


async def test_session_id_rule_allows_128_printable_characters_and_keeps_the_seed_order(gw):
    longest = "".join(chr(0x21 + i % 94) for i in range(128))
    reply = await gw.login(longest)
    assert jwt.decode(reply.token, KEY, algorithms=["HS256"], audience="myservice")["sid"] == longest
    assert await login_error(gw, username="", password="x", session_id="a b") == (
        grpc.StatusCode.INVALID_ARGUMENT, "username is required")


@pytest.mark.parametrize("raw", [b"\xff\xff\xff", b"\x0a\x05ab", b"\x1a\x80"])
async def test_undecodable_request_bytes_are_invalid_argument_naming_nothing_internal(gw, raw):
    login_raw = gw.channel.unary_unary("/myservice.v1.MyService/Login")
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await login_raw(raw)
    assert (e.value.code(), e.value.details()) == (grpc.StatusCode.INVALID_ARGUMENT, "malformed request")


class PrepareFails(LocalBackend):
    def __init__(self, error: BaseException) -> None:
        super().__init__(max_instances=1)
        self.error = error

    async def prepare(self, owner):
        raise self.error


async def test_backend_failure_at_prepare_is_unavailable_without_class_names(make_gateway):
    gw = await make_gateway(backend=PrepareFails(RuntimeError("kubernetes API: connection refused")))
    assert await login_error(gw, username="TestUser", password="TestPassword", session_id="s") == (
        grpc.StatusCode.UNAVAILABLE, "backend service unavailable")


async def test_backend_error_at_prepare_is_answered_with_its_own_status(make_gateway):
    limit = errors.per_user_limit(2)
    gw = await make_gateway(backend=PrepareFails(limit))
    assert await login_error(gw, username="TestUser", password="TestPassword", session_id="s") == (
        grpc.StatusCode.RESOURCE_EXHAUSTED, "per-user limit reached: at most 2 live sessions per user")


def test_retry_status_carries_retry_info_rounded_up_to_the_millisecond():
    from google.rpc import code_pb2, error_details_pb2, status_pb2

    from myservice_gateway.login import retry_status

    for seconds, expected in ((0.0001, (0, 1_000_000)), (59.9991, (60, 0)), (1.5, (1, 500_000_000))):
        status = retry_status(errors.login_busy(), seconds)
        assert (status.code, status.details) == (grpc.StatusCode.RESOURCE_EXHAUSTED, "too many logins in progress, retry later")
        [(key, value)] = status.trailing_metadata
        detail = status_pb2.Status.FromString(value)
        info = error_details_pb2.RetryInfo()
        assert key == "grpc-status-details-bin" and detail.code == code_pb2.RESOURCE_EXHAUSTED
        assert detail.details[0].Unpack(info)
        assert (info.retry_delay.seconds, info.retry_delay.nanos) == expected
