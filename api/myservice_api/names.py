"""The Kubernetes names of a session (pure), like kubespawner's slugs.py.

A session is (user, session_id); its MyServiceSession and its pod are named
from both, so that two users' sessions of the same id never meet, and every
name is a valid RFC 1123 DNS label whatever the session id holds.
"""
from __future__ import annotations

import hashlib
import re

_NAME_PREFIX = "mss"
_POD_SUFFIX = "-pod"
# 64 bits: a session_id crafted to collide with another user's session would take
# ~2^63 tries (a collision is refused anyway: spec.user is checked).
_HASH_LEN = 16
_DNS_LABEL_MAX = 63
# Room left for the slug: "mss-" + slug + "-" + hash, and the pod name adds "-pod".
_SLUG_MAX = _DNS_LABEL_MAX - len(_POD_SUFFIX) - len(_NAME_PREFIX) - 2 - _HASH_LEN
_NON_ALNUM = re.compile(r"[^a-z0-9]+")


def session_identity(username: str, session_id: str) -> bytes:
    """An unambiguous encoding of (user, session_id): the length prefix keeps
    ("ab", "c") and ("a", "bc") apart."""
    user = username.encode("utf-8")
    return b"%d:" % len(user) + user + session_id.encode("utf-8")


def resource_name(username: str, session_id: str) -> str:
    """The MyServiceSession's metadata.name for a user's session id.

    ``mss-<slug>-<hash>``: the slug is a readable, lowercased, shortened form of
    the session id; the hash (first 16 hex digits of sha256 of the user and the
    raw id, session_identity) keeps apart two users' sessions of the same id and
    ids that slug alike (case, punctuation, truncation, unicode). Always a valid
    RFC 1123 DNS label short enough that pod_name() is one too.
    """
    digest = hashlib.sha256(session_identity(username, session_id)).hexdigest()[:_HASH_LEN]
    slug = _NON_ALNUM.sub("-", session_id.lower()).strip("-")[:_SLUG_MAX].strip("-")
    if not slug:
        return f"{_NAME_PREFIX}-{digest}"
    return f"{_NAME_PREFIX}-{slug}-{digest}"


def pod_name(resource: str) -> str:
    """The fixed name of the session's pod (fixed so a replay can never create a second one)."""
    return f"{resource}{_POD_SUFFIX}"
