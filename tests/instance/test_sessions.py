"""SessionBinding: the one-session rules of an instance, as pure logic."""
import grpc
import pytest

from myservice.errors import ContractError
from myservice_instance.sessions import SessionBinding


def test_first_call_binds_and_same_session_stays():
    b = SessionBinding()
    assert b.server_session_id is None
    assert b.bind("s1") == "s1"
    assert b.bind("s1") == "s1"


def test_other_session_is_a_conflict():
    b = SessionBinding()
    b.bind("s1")
    with pytest.raises(ContractError) as e:
        b.bind("s2")
    assert e.value.code == grpc.StatusCode.INTERNAL
    assert e.value.message == "Session conflict: was=s1, now=s2"
    assert b.server_session_id == "s1"


def test_shutdown_unbound():
    with pytest.raises(ContractError) as e:
        SessionBinding().check_shutdown("s1")
    assert (e.value.code, e.value.message) == (grpc.StatusCode.PERMISSION_DENIED, "Server session is not set")


def test_shutdown_from_other_session():
    b = SessionBinding()
    b.bind("s1")
    with pytest.raises(ContractError) as e:
        b.check_shutdown("s2")
    assert (e.value.code, e.value.message) == (
        grpc.StatusCode.PERMISSION_DENIED, "Client session mismatch: client=s2, server=s1")


def test_shutdown_of_bound_session():
    b = SessionBinding()
    b.bind("s1")
    assert b.check_shutdown("s1") == "s1"


def test_after_an_accepted_shutdown_the_session_has_ended():
    b = SessionBinding()
    b.bind("s1")
    b.check_shutdown("s1")
    ended = (grpc.StatusCode.FAILED_PRECONDITION, "session s1 has ended; log in with a new session_id")
    for attempt in (lambda: b.bind("s1"), lambda: b.check_shutdown("s1")):
        with pytest.raises(ContractError) as e:
            attempt()
        assert (e.value.code, e.value.message) == ended
    with pytest.raises(ContractError) as e:  # another session still gets the seed's conflict
        b.bind("s2")
    assert (e.value.code, e.value.message) == (grpc.StatusCode.INTERNAL, "Session conflict: was=s1, now=s2")
