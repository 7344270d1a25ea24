"""Token issue and strict verification."""
import time

import jwt
import pytest

from myservice_gateway import tokens

CFG = tokens.TokenConfig(key=b"k" * 32, issuer="iss-1", audience="aud-1", ttl_seconds=60)


def claims(**over):
    now = int(time.time())
    c = {"sub": "u", "role": "user", "sid": "s1", "iat": now, "exp": now + 60, "jti": "j", "iss": "iss-1", "aud": "aud-1"}
    c.update(over)
    return {k: v for k, v in c.items() if v is not None}


def test_issue_then_verify_roundtrip():
    token, exp = tokens.issue(CFG, username="alice", role="admin", session_id="s1", now=1_000_000)
    decoded = jwt.decode(token, CFG.key, algorithms=["HS256"], audience="aud-1", options={"verify_exp": False})
    assert decoded["exp"] == exp == 1_000_060
    assert {k: decoded[k] for k in ("sub", "role", "sid", "iat", "iss", "aud")} == {
        "sub": "alice", "role": "admin", "sid": "s1", "iat": 1_000_000, "iss": "iss-1", "aud": "aud-1"}
    fresh, _ = tokens.issue(CFG, username="alice", role="admin", session_id="s1")
    assert tokens.verify(CFG, fresh, session_id="s1") == tokens.Claims("alice", "admin", "s1", int(jwt.decode(
        fresh, options={"verify_signature": False})["exp"]))


def test_two_tokens_have_distinct_jti():
    a, _ = tokens.issue(CFG, username="u", role="r", session_id="s")
    b, _ = tokens.issue(CFG, username="u", role="r", session_id="s")
    assert jwt.decode(a, options={"verify_signature": False})["jti"] != jwt.decode(b, options={"verify_signature": False})["jti"]


@pytest.mark.parametrize("bad_claims", [
    claims(exp=int(time.time()) - 10),  # expired
    claims(iss="other"), claims(aud="other"),
    claims(sid=None), claims(jti=None), claims(role=None), claims(iat=None), claims(exp=None),
    claims(iss=None), claims(aud=None), claims(sub=None),
    claims(sid="s2"),  # bound to another session
])
def test_rejects_bad_claims(bad_claims):
    token = jwt.encode(bad_claims, CFG.key, algorithm="HS256")
    with pytest.raises(tokens.InvalidToken):
        tokens.verify(CFG, token, session_id="s1")


def test_rejects_wrong_key_alg_none_and_other_alg():
    with pytest.raises(tokens.InvalidToken):
        tokens.verify(CFG, jwt.encode(claims(), b"x" * 32, algorithm="HS256"), session_id="s1")
    with pytest.raises(tokens.InvalidToken):
        tokens.verify(CFG, jwt.encode(claims(), None, algorithm="none"), session_id="s1")
    with pytest.warns(jwt.warnings.InsecureKeyLengthWarning):  # same key, another algorithm: still refused
        other_alg = jwt.encode(claims(), CFG.key, algorithm="HS512")
    with pytest.raises(tokens.InvalidToken):
        tokens.verify(CFG, other_alg, session_id="s1")
    with pytest.raises(tokens.InvalidToken):
        tokens.verify(CFG, "", session_id="s1")
    with pytest.raises(tokens.InvalidToken):
        tokens.verify(CFG, "a.b.c", session_id="s1")


def test_strip_bearer():
    assert tokens.strip_bearer("Bearer abc") == "abc"
    assert tokens.strip_bearer("bearer  abc ") == "abc"
    assert tokens.strip_bearer("abc") == "abc"
