"""What an instance receives as metadata: the gateway's verified session-id and
myservice-user, never a client's own values of either, and never the token."""
import urllib.parse

from myservice import contract
from myservice_gateway.backends.base import SessionKey
from myservice_gateway.proxy import forwarded_metadata


def test_the_verified_session_replaces_whatever_the_client_sent():
    sent = (("authorization", "Bearer t"), ("session-id", "s1"), ("myservice-user", "root"),
            ("myservice-user", "admin"), ("x-trace", "abc"), ("user-agent", "grpc-python"),
            ("grpc-accept-encoding", "gzip"), ("data-bin", b"\x00\x01"))
    assert forwarded_metadata(sent, SessionKey("alice", "s1")) == (
        ("x-trace", "abc"), ("data-bin", b"\x00\x01"), ("session-id", "s1"), ("myservice-user", "alice"))


def test_a_user_name_outside_visible_ascii_is_percent_encoded():
    for name, sent in [("alice", "alice"), ("Zoë Kim", "Zo%C3%AB%20Kim"), ("50%", "50%25"), ("a/b@c", "a/b@c")]:
        assert contract.user_metadata_value(name) == sent
        assert urllib.parse.unquote(sent) == name
    assert forwarded_metadata((), SessionKey("Zoë", "s"))[-1] == ("myservice-user", "Zo%C3%AB")
