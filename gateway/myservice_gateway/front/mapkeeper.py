"""What HAProxy's sessions map must hold, and the runtime API commands that make
it so. Pure: no I/O (mapsync.py sends the commands).

The map holds `<user>/<session_id>` -> `host:port` for every session whose
instance answers on TCP and is Ready, and nothing else: a session on a Unix
socket, of a user whose name could be ambiguous in the key, or not (yet) Ready
has no entry and its calls go through the Python gateway (correct, not fast).
"""
from __future__ import annotations

import dataclasses
import re
from collections.abc import Hashable

# The users the map may hold: visible ASCII without '/' (so that `<user>/<sid>`
# splits one way only) and without '%' (so that the myservice-user header HAProxy
# sets is contract.user_metadata_value(user), which encodes '%'). The front's
# configuration matches a token's user against this same pattern before any
# lookup (config.py).
KEY_USER_PATTERN = "^[!-$&-.0-~]+$"
_USER = re.compile(KEY_USER_PATTERN)
# Session ids are visible ASCII already (Login's rule); checked again, cheaply.
_SESSION_ID = re.compile("^[!-~]+$")
# host:port, IPv4 or a name; an IPv6 address unbracketed (config.py splits at the last ':').
_TCP_ADDRESS = re.compile(r"^[0-9A-Za-z.:-]+:[0-9]{1,5}$")


def map_key(username: str, session_id: str) -> str | None:
    """The session's key in the map, None when it may not have one."""
    if not _USER.match(username) or not _SESSION_ID.match(session_id):
        return None
    return f"{username}/{session_id}"


def tcp_address(address: str) -> bool:
    """True for host:port (an instance HAProxy can reach), False for unix:... and the rest."""
    return not address.startswith("unix:") and bool(_TCP_ADDRESS.match(address))


@dataclasses.dataclass(frozen=True)
class Set:
    """The entry `key` is (now) `address`; `present`: it was already in the map."""
    key: str
    address: str
    present: bool


@dataclasses.dataclass(frozen=True)
class Delete:
    key: str


Change = Set | Delete


class MapKeeper:
    """The map's wanted content, by the session table's own key of each session (a
    SessionKey locally, a resource name on Kubernetes: what EndedSessions holds)."""

    def __init__(self) -> None:
        self.entries: dict[str, str] = {}  # map key -> address: the whole wanted map
        self._keys: dict[Hashable, str] = {}  # the table's key -> map key

    def ready(self, session: Hashable, username: str, session_id: str, address: str) -> Change | None:
        """The session's instance answers at `address`: the change to make, if any."""
        key = map_key(username, session_id)
        if key is None or not tcp_address(address):
            return None
        if self.entries.get(key) == address:
            return None
        present = key in self.entries
        self.entries[key] = address
        self._keys[session] = key
        return Set(key, address, present)

    def ended(self, session: Hashable) -> Change | None:
        """The session has ended: its entry goes, if it had one."""
        key = self._keys.pop(session, None)
        if key is None or self.entries.pop(key, None) is None:
            return None
        return Delete(key)

    def user_removed(self, username: str) -> list[Change]:
        """Every entry of a user removed from the users file goes at once: Python refuses
        their calls from now on, HAProxy must not serve them while their instances end."""
        sessions = [s for s, key in self._keys.items() if key.split("/", 1)[0] == username]
        return [change for change in map(self.ended, sessions) if change is not None]

    def clear(self) -> None:
        self.entries.clear()
        self._keys.clear()


def escaped(word: str) -> str:
    """A word of a runtime API command: ';' separates commands and '\\' escapes,
    so both are escaped (management.txt); keys and addresses hold no spaces."""
    return word.replace("\\", "\\\\").replace(";", "\\;")


def command(change: Change, map_name: str) -> str:
    """The runtime API command for one change."""
    if isinstance(change, Delete):
        return f"del map {map_name} {escaped(change.key)}"
    verb = "set" if change.present else "add"
    return f"{verb} map {map_name} {escaped(change.key)} {escaped(change.address)}"


def rebuild_commands(entries: dict[str, str], map_name: str, version: str) -> list[str]:
    """Fill a prepared version of the map with `entries` (then commit it: the swap
    is atomic, calls see the old map or the new one, never half of it)."""
    return [f"add map @{version} {map_name} {escaped(k)} {escaped(v)}" for k, v in sorted(entries.items())]
