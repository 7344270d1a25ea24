"""The shared contract's names: valid Kubernetes names for any session id, distinct and stable."""
import hashlib
import re

import pytest

from myservice_api.names import pod_name, resource_name, session_identity

DNS_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")

WEIRD_IDS = [
    "abc",
    "ABC",
    "Session_ID.With/Slashes:and:colons",
    "ümlaut-東京-🚀",
    "東京",
    "---",
    "",
    " ",
    "9starts-with-digit",
    "x" * 1000,
    "A" * 64 + "-" * 10 + "b",
    "a-" * 40,
]


USER = "alice"


def _hash(session_id: str, user: str = USER) -> str:
    raw = f"{len(user.encode())}:{user}{session_id}".encode("utf-8")
    return hashlib.sha256(raw).hexdigest()[:16]


def test_resource_name_of_a_plain_id_is_prefix_slug_hash():
    assert resource_name(USER, "abc") == f"mss-abc-{_hash('abc')}"


def test_resource_name_lowercases_and_replaces_runs_of_other_characters():
    session_id = "Session_ID.With/Slashes"
    assert resource_name(USER, session_id) == f"mss-session-id-with-slashes-{_hash(session_id)}"


def test_resource_name_without_any_usable_character_is_prefix_and_hash():
    assert resource_name(USER, "東京") == f"mss-{_hash('東京')}"
    assert resource_name(USER, "") == f"mss-{_hash('')}"
    assert resource_name(USER, "---") == f"mss-{_hash('---')}"


def test_resource_name_of_a_long_id_truncates_the_slug_to_38_characters():
    session_id = "x" * 1000
    assert resource_name(USER, session_id) == f"mss-{'x' * 38}-{_hash(session_id)}"


def test_truncation_never_leaves_a_dash_before_the_hash():
    session_id = "a-" * 40
    name = resource_name(USER, session_id)
    assert "--" not in name
    assert name == f"mss-{('a-' * 19)[:37]}-{_hash(session_id)}"


@pytest.mark.parametrize("session_id", WEIRD_IDS)
def test_resource_and_pod_names_are_dns_labels(session_id):
    name = resource_name(USER, session_id)
    pod = pod_name(name)
    assert DNS_LABEL.match(name), name
    assert DNS_LABEL.match(pod), pod
    assert len(name) <= 59
    assert len(pod) <= 63


def test_pod_name_is_the_resource_name_with_a_pod_suffix():
    assert pod_name("mss-abc-0123456789") == "mss-abc-0123456789-pod"


def test_ids_that_slug_alike_get_different_names():
    ids = ["abc", "ABC", "a.b.c", "a-b-c", "a_b_c", "x" * 100, "x" * 101, "", " ", "東京", "大阪"]
    names = [resource_name(USER, i) for i in ids]
    assert len(set(names)) == len(ids)


def test_two_users_with_one_session_id_get_two_names():
    assert resource_name("alice", "shared") != resource_name("bob", "shared")
    assert resource_name("alice", "shared").startswith("mss-shared-")


def test_user_and_session_id_cannot_be_shifted_into_each_other():
    # ("ab", "c") and ("a", "bc") concatenate alike; the length prefix keeps them apart.
    assert resource_name("ab", "c") != resource_name("a", "bc")
    assert session_identity("ab", "c") != session_identity("a", "bc")


def test_resource_name_is_stable():
    assert resource_name(USER, "Stable-Session") == resource_name(USER, "Stable-Session")
    assert resource_name(USER, "Stable-Session") == f"mss-stable-session-{_hash('Stable-Session')}"
