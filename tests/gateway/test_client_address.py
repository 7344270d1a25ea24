"""The client address Login's limits count (clientaddress.py): x-forwarded-for is
believed only from trusted proxies, read right to left; pure functions."""
import pytest

from myservice_api.settings import SettingsError
from myservice_gateway import clientaddress

TRUSTED = clientaddress.parse_networks("10.0.0.0/8,2001:db8:ffff::/48")


def xff(*values):
    return tuple(("x-forwarded-for", v) for v in values)


@pytest.mark.parametrize("peer,metadata,key", [
    # Not a trusted proxy: the header is ignored, whatever it says.
    ("ipv4:192.0.2.1:5555", xff("203.0.113.5"), "192.0.2.1"),
    ("ipv4:192.0.2.1:5555", (), "192.0.2.1"),
    # A trusted proxy: the address it appended (the rightmost) is the client.
    ("ipv4:10.1.2.3:5555", xff("203.0.113.5"), "203.0.113.5"),
    ("ipv4:10.1.2.3:5555", xff("198.51.100.1, 203.0.113.5"), "203.0.113.5"),  # the left one is the client's claim
    # Trusted hops are skipped, in one header or several.
    ("ipv4:10.1.2.3:5555", xff("203.0.113.5, 10.9.9.9"), "203.0.113.5"),
    ("ipv4:10.1.2.3:5555", xff("203.0.113.5", "10.9.9.9"), "203.0.113.5"),
    # All trusted: the leftmost.
    ("ipv4:10.1.2.3:5555", xff("10.7.7.7, 10.9.9.9"), "10.7.7.7"),
    # No header from a trusted proxy: the proxy itself.
    ("ipv4:10.1.2.3:5555", (), "10.1.2.3"),
    # Garbage stops the walk at the last trusted hop.
    ("ipv4:10.1.2.3:5555", xff("203.0.113.5, not-an-ip, 10.9.9.9"), "10.9.9.9"),
    ("ipv4:10.1.2.3:5555", xff("unknown"), "10.1.2.3"),
    # Ports and brackets, IPv6 /64, IPv4-mapped.
    ("ipv4:10.1.2.3:5555", xff("203.0.113.5:4711"), "203.0.113.5"),
    ("ipv4:10.1.2.3:5555", xff("[2001:db8:1:2::7]:443"), "2001:db8:1:2::/64"),
    ("ipv4:10.1.2.3:5555", xff("2001:db8:1:2::7"), "2001:db8:1:2::/64"),
    ("ipv6:[2001:db8:ffff:1::1]:5555", xff("::ffff:203.0.113.5"), "203.0.113.5"),
    ("ipv6:%5B2001:db8:ffff:1::1%5D:5555", xff("203.0.113.5"), "203.0.113.5"),
    # A Unix-socket peer is the gateway's own front: trusted by construction.
    ("unix:/run/myservice/gateway.sock", xff("203.0.113.5"), "203.0.113.5"),
    ("unix:/run/myservice/gateway.sock", (), "unix"),
])
def test_client_key(peer, metadata, key):
    assert clientaddress.client_key(peer, metadata, TRUSTED) == key


def test_no_trusted_proxies_means_the_peer_always():
    assert clientaddress.client_key("ipv4:10.1.2.3:1", xff("203.0.113.5"), ()) == "10.1.2.3"


def test_binary_or_other_metadata_is_not_read():
    metadata = (("x-forwarded-for-bin", b"\x01"), ("x-real-ip", "203.0.113.5"))
    assert clientaddress.client_key("ipv4:10.1.2.3:1", metadata, TRUSTED) == "10.1.2.3"


def test_parse_networks():
    assert [str(n) for n in clientaddress.parse_networks(" 10.0.0.0/8 , 192.0.2.7 ::1,")] == [
        "10.0.0.0/8", "192.0.2.7/32", "::1/128"]
    assert clientaddress.parse_networks("") == ()
    with pytest.raises(SettingsError, match="MYSERVICE_TRUSTED_PROXIES must be a comma-separated list of CIDRs"):
        clientaddress.parse_networks("10.0.0.0/8,proxy")
