"""The real client address of a Login, which its limits are counted per.

A gateway behind a proxy (a load balancer, an ingress, the HAProxy front) sees the
proxy's address on every connection: counted per that, one flood would throttle
everyone. So the address a proxy says it received the call from, in
`x-forwarded-for`, is believed, but only from proxies we trust:
`MYSERVICE_TRUSTED_PROXIES` (CIDRs), and a peer on a Unix socket (the gateway
listens on one only for its own front, on this machine). From anyone else the
header is ignored: a client cannot pick the address it is counted as.

The rule is the usual one: read the header's addresses from the right (the one
our proxy appended) and skip those of trusted proxies; the first one left is the
client. A malformed entry stops the walk: the last trusted hop, who wrote it, is
then the client.

Pure functions, no I/O.
"""
from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence

from myservice_api.settings import SettingsError

from . import loginguard

FORWARDED_FOR = "x-forwarded-for"

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def parse_networks(text: str, source: str = "MYSERVICE_TRUSTED_PROXIES") -> tuple[Network, ...]:
    """'10.0.0.0/8, 2001:db8::/32, 192.0.2.7' -> networks (a bare address is a /32 or /128)."""
    networks = []
    for item in text.replace(" ", ",").split(","):
        if not item:
            continue
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise SettingsError(f"{source} must be a comma-separated list of CIDRs "
                                f"(e.g. 10.0.0.0/8,2001:db8::/32), got {item!r}") from None
    return tuple(networks)


def _address(text: str) -> Address | None:
    text = text.strip()
    if text.startswith("[") and "]" in text:  # [v6]:port
        text = text[1:text.index("]")]
    elif text.count(":") == 1:  # v4:port
        text = text.partition(":")[0]
    try:
        address = ipaddress.ip_address(text.partition("%")[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _peer_address(peer: str) -> Address | None:
    """The address of grpc's context.peer() ('ipv4:1.2.3.4:5', 'ipv6:[::1]:5'), None otherwise."""
    kind, _, rest = peer.partition(":")
    if kind not in ("ipv4", "ipv6"):
        return None
    return _address(rest.replace("%5B", "[").replace("%5D", "]"))


def _trusted(address: Address, networks: Sequence[Network]) -> bool:
    return any(address.version == n.version and address in n for n in networks)


def forwarded_for(metadata: Iterable[tuple[str, str | bytes]] | None) -> list[str]:
    """Every address of every x-forwarded-for value, left to right."""
    found: list[str] = []
    for key, value in metadata or ():
        if key == FORWARDED_FOR and isinstance(value, str):
            found.extend(part for part in value.split(",") if part.strip())
    return found


def client_key(peer: str, metadata, trusted: Sequence[Network]) -> str:
    """The key Login's limits count this call under (loginguard.peer_key's form)."""
    direct = _peer_address(peer)
    from_front = peer.startswith(("unix:", "unix-abstract:"))
    if not from_front and (direct is None or not _trusted(direct, trusted)):
        return loginguard.peer_key(peer)
    client = peer
    for entry in reversed(forwarded_for(metadata)):
        address = _address(entry)
        if address is None:
            break  # garbage: the hop that wrote it is as far as we can believe
        client = f"ipv{address.version}:{'[' + str(address) + ']' if address.version == 6 else address}:0"
        if not _trusted(address, trusted):
            break
    return loginguard.peer_key(client)
