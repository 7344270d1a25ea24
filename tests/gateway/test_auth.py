"""Every bad-token variant is UNAUTHENTICATED, and no instance ever sees it."""
import time

import grpc
import jwt
import pytest

from myservice.v1 import myservice_pb2 as pb

from ..conftest import KEY, md


def forged(**over):
    now = int(time.time())
    claims = {"sub": "TestUser", "role": "user", "sid": "S", "iat": now, "exp": now + 60, "jti": "j",
              "iss": "myservice-gateway", "aud": "myservice"}
    claims.update(over)
    return claims


BAD_METADATA = {
    "no metadata": (),
    "no token": (("session-id", "S"),),
    "token without session-id": (("authorization", jwt.encode(forged(), KEY, algorithm="HS256")),),
    "not a jwt": md("garbage", "S"),
    "bearer garbage": md("Bearer garbage", "S"),
    "expired": md(jwt.encode(forged(exp=int(time.time()) - 5), KEY, algorithm="HS256"), "S"),
    "wrong key": md(jwt.encode(forged(), b"w" * 32, algorithm="HS256"), "S"),
    "alg none": md(jwt.encode(forged(), None, algorithm="none"), "S"),
    "other session": md(jwt.encode(forged(sid="OTHER"), KEY, algorithm="HS256"), "S"),
    "wrong audience": md(jwt.encode(forged(aud="x"), KEY, algorithm="HS256"), "S"),
    "missing jti": md(jwt.encode({k: v for k, v in forged().items() if k != "jti"}, KEY, algorithm="HS256"), "S"),
}


@pytest.mark.parametrize("case", list(BAD_METADATA))
async def test_bad_tokens_are_unauthenticated_on_every_kind(gw, case):
    metadata = BAD_METADATA[case]
    calls = [
        lambda: gw.stub.MyServiceEcho(pb.EchoRequest(value="v"), metadata=metadata),
        lambda: gw.stub.MyServiceShutdown(pb.ShutdownRequest(), metadata=metadata),
        lambda: _drain(gw.stub.MyServiceEchoStream(pb.EchoStreamRequest(value="v", count=2), metadata=metadata)),
        lambda: _drain(gw.stub.MyServiceChat(_one(), metadata=metadata)),
    ]
    for call in calls:
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await call()
        assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert e.value.details() in ("missing authorization token", "missing session-id", "invalid token")
    assert gw.backend.live_count == 0  # nothing was started for, or forwarded to, an instance


async def test_valid_token_with_bearer_prefix_is_accepted(gw):
    token = (await gw.login("S")).token
    reply = await gw.stub.MyServiceEcho(pb.EchoRequest(value="v"), metadata=md("Bearer " + token, "S"))
    assert reply.client_session_id == "S"


async def test_token_of_session_a_cannot_reach_session_b(gw):
    token_a = (await gw.login("A")).token
    await gw.stub.MyServiceEcho(pb.EchoRequest(value="v"), metadata=md(token_a, "A"))
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await gw.stub.MyServiceEcho(pb.EchoRequest(value="v"), metadata=md(token_a, "B"))
    assert (e.value.code(), e.value.details()) == (grpc.StatusCode.UNAUTHENTICATED, "invalid token")
    assert gw.backend.live_count == 1


async def _drain(call):
    return [r async for r in call]


async def _one():
    yield pb.EchoRequest(value="v")
