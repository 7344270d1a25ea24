"""The shared contract's names: valid Kubernetes names for any session id, distinct and stable."""
import hashlib
import re

import pytest

from myservice import crd

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
    assert crd.resource_name(USER, "abc") == f"mss-abc-{_hash('abc')}"


def test_resource_name_lowercases_and_replaces_runs_of_other_characters():
    session_id = "Session_ID.With/Slashes"
    assert crd.resource_name(USER, session_id) == f"mss-session-id-with-slashes-{_hash(session_id)}"


def test_resource_name_without_any_usable_character_is_prefix_and_hash():
    assert crd.resource_name(USER, "東京") == f"mss-{_hash('東京')}"
    assert crd.resource_name(USER, "") == f"mss-{_hash('')}"
    assert crd.resource_name(USER, "---") == f"mss-{_hash('---')}"


def test_resource_name_of_a_long_id_truncates_the_slug_to_38_characters():
    session_id = "x" * 1000
    assert crd.resource_name(USER, session_id) == f"mss-{'x' * 38}-{_hash(session_id)}"


def test_truncation_never_leaves_a_dash_before_the_hash():
    session_id = "a-" * 40
    name = crd.resource_name(USER, session_id)
    assert "--" not in name
    assert name == f"mss-{('a-' * 19)[:37]}-{_hash(session_id)}"


@pytest.mark.parametrize("session_id", WEIRD_IDS)
def test_resource_and_pod_names_are_dns_labels(session_id):
    name = crd.resource_name(USER, session_id)
    pod = crd.pod_name(name)
    assert DNS_LABEL.match(name), name
    assert DNS_LABEL.match(pod), pod
    assert len(name) <= 59
    assert len(pod) <= 63


def test_pod_name_is_the_resource_name_with_a_pod_suffix():
    assert crd.pod_name("mss-abc-0123456789") == "mss-abc-0123456789-pod"


def test_ids_that_slug_alike_get_different_names():
    ids = ["abc", "ABC", "a.b.c", "a-b-c", "a_b_c", "x" * 100, "x" * 101, "", " ", "東京", "大阪"]
    names = [crd.resource_name(USER, i) for i in ids]
    assert len(set(names)) == len(ids)


def test_two_users_with_one_session_id_get_two_names():
    assert crd.resource_name("alice", "shared") != crd.resource_name("bob", "shared")
    assert crd.resource_name("alice", "shared").startswith("mss-shared-")


def test_user_and_session_id_cannot_be_shifted_into_each_other():
    # ("ab", "c") and ("a", "bc") concatenate alike; the length prefix keeps them apart.
    assert crd.resource_name("ab", "c") != crd.resource_name("a", "bc")
    assert crd.session_identity("ab", "c") != crd.session_identity("a", "bc")


def test_resource_name_is_stable():
    assert crd.resource_name(USER, "Stable-Session") == crd.resource_name(USER, "Stable-Session")
    assert crd.resource_name(USER, "Stable-Session") == f"mss-stable-session-{_hash('Stable-Session')}"


@pytest.mark.parametrize("reason", [
    "CapacityExceeded", "Unschedulable", "ImagePullFailed", "StartFailed", "ReadyTimeout",
])
def test_start_failures(reason):
    assert crd.is_start_failure(reason) is True


@pytest.mark.parametrize("reason", [
    "PodFailed", "Evicted", "PodDeleted", "InstanceExited", "PodReady", "PodCreated", "", None,
])
def test_not_start_failures(reason):
    assert crd.is_start_failure(reason) is False


def test_contract_constants():
    assert (crd.GROUP, crd.VERSION, crd.KIND, crd.PLURAL) == (
        "myservice.io", "v1alpha1", "MyServiceSession", "myservicesessions")
    assert crd.API_VERSION == "myservice.io/v1alpha1"
    assert crd.PHASES == ("Pending", "Starting", "Ready", "Completed", "Failed")
    assert crd.is_terminal("Completed") and crd.is_terminal("Failed")
    assert not crd.is_terminal("Ready") and not crd.is_terminal(None)
