"""The gateway's Kubernetes backend on a real API server: Login creates the
session's resource, a session of another user is refused (from the cache, and on
the 409 path), the same user resumes, a first call routes once the status says
Ready, a deleted session has ended, and a missing resource gets a short grace.
Nothing runs the operator: the tests write the status it would write."""
from __future__ import annotations

import asyncio
import time

import grpc
import pytest

from myservice import contract, errors
from myservice_api import crd
from myservice_api.names import resource_name
from myservice_gateway.backends import kubernetes as kube_backend
from myservice_gateway.backends.base import SessionKey, SessionOwner

from .helpers import create_session, delete_session, eventually, names_in_api, ready

ALICE = SessionOwner(session_id="s1", username="alice", role="user")


@pytest.fixture
async def backend(api_client, namespace):
    b = kube_backend.KubernetesBackend(namespace=namespace, ready_timeout=10, api_client=api_client)
    await b.start()
    yield b
    await b.close()
    await asyncio.to_thread(b._cache.reflector.stop)


def _cached(backend, name: str) -> bool:
    return name in backend._cache.index.items


async def _refused(call, code: grpc.StatusCode, message: str) -> None:
    with pytest.raises(errors.ContractError) as refused:
        await call
    assert (refused.value.code, refused.value.message) == (code, message)


async def test_login_creates_the_session_resource(backend, custom, namespace):
    await backend.prepare(ALICE)
    resource = custom.get_namespaced_custom_object(crd.GROUP, crd.VERSION, namespace, crd.PLURAL,
                                                   resource_name("alice", "s1"))
    assert resource["spec"] == {"sessionId": "s1", "user": "alice", "role": "user"}
    assert resource["metadata"]["labels"] == {crd.LABEL_NAME: crd.APP_NAME}
    assert backend.sessions.slots.count("alice") == 1


async def test_the_same_user_resumes_the_same_session(backend, custom, namespace):
    await backend.prepare(ALICE)
    await eventually(lambda: _cached(backend, resource_name("alice", "s1")))
    await backend.prepare(ALICE)  # found in the cache: no request
    assert names_in_api(custom, namespace) == {resource_name("alice", "s1")}
    assert backend.sessions.slots.count("alice") == 1


async def test_a_session_of_another_user_is_refused_from_the_cache(backend, custom, namespace):
    name = resource_name("alice", "s1")
    create_session(custom, namespace, "mallory", "s1", name=name)
    await eventually(lambda: _cached(backend, name))
    await _refused(backend.prepare(ALICE), grpc.StatusCode.PERMISSION_DENIED, contract.SESSION_OF_ANOTHER_USER)


async def test_a_session_of_another_user_is_refused_on_409(backend, custom, namespace):
    """The resource exists but the cache does not have it yet: create answers 409,
    one GET tells whose it is."""
    await asyncio.to_thread(backend._cache.reflector.stop)  # the cache will not see it
    name = resource_name("alice", "s1")
    create_session(custom, namespace, "mallory", "s1", name=name)
    await _refused(backend.prepare(ALICE), grpc.StatusCode.PERMISSION_DENIED, contract.SESSION_OF_ANOTHER_USER)
    assert custom.get_namespaced_custom_object(crd.GROUP, crd.VERSION, namespace, crd.PLURAL,
                                               name)["spec"]["user"] == "mallory"
    assert backend.sessions.slots.count("alice") == 0  # the refused Login holds no slot of alice's


async def test_the_same_user_resumes_on_409(backend, custom, namespace):
    """Made a moment ago through another gateway, not in this one's cache yet."""
    await asyncio.to_thread(backend._cache.reflector.stop)
    create_session(custom, namespace, "alice", "s1")
    await backend.prepare(ALICE)
    assert names_in_api(custom, namespace) == {resource_name("alice", "s1")}


async def test_a_first_call_routes_once_the_status_is_ready(backend, custom, namespace):
    await backend.prepare(ALICE)
    name = resource_name("alice", "s1")
    call = asyncio.create_task(backend.endpoint(ALICE.key, timeout=10))
    await eventually(lambda: _cached(backend, name))
    await asyncio.sleep(0.1)
    assert not call.done()  # no status yet: waits
    ready(custom, namespace, name, ip="10.9.8.7", port=50051)
    endpoint = await asyncio.wait_for(call, 5)
    assert (endpoint.address, endpoint.pod_name) == ("10.9.8.7:50051", f"{name}-pod")
    again = await backend.endpoint(ALICE.key, timeout=1)  # routed from the cache, no wait
    assert again.channel is endpoint.channel


async def test_a_deleted_session_has_ended(backend, custom, namespace):
    await backend.prepare(ALICE)
    name = resource_name("alice", "s1")
    await eventually(lambda: _cached(backend, name))
    ready(custom, namespace, name)
    await backend.endpoint(ALICE.key, timeout=5)
    delete_session(custom, namespace, name)
    await eventually(lambda: not _cached(backend, name))
    await _refused(backend.endpoint(ALICE.key, timeout=5), grpc.StatusCode.FAILED_PRECONDITION,
                   contract.session_ended("s1"))
    assert backend.sessions.slots.count("alice") == 0


async def test_a_waiting_first_call_learns_of_the_deletion_at_once(backend, custom, namespace):
    await backend.prepare(ALICE)
    name = resource_name("alice", "s1")
    await eventually(lambda: _cached(backend, name))
    call = asyncio.create_task(backend.endpoint(ALICE.key, timeout=10))
    await asyncio.sleep(0.1)
    delete_session(custom, namespace, name)
    await _refused(asyncio.wait_for(call, 3), grpc.StatusCode.FAILED_PRECONDITION, contract.session_ended("s1"))


async def test_a_resource_never_seen_has_ended_after_the_grace(backend, monkeypatch):
    monkeypatch.setattr(kube_backend, "MISSING_GRACE_SECONDS", 0.5)
    begun = time.monotonic()
    await _refused(backend.endpoint(SessionKey("alice", "never"), timeout=5), grpc.StatusCode.FAILED_PRECONDITION,
                   contract.session_ended("never"))
    assert 0.5 <= time.monotonic() - begun < 2


async def test_a_resource_that_arrives_within_the_grace_is_routed(backend, custom, namespace):
    """Login through another gateway: this one's first call may come before its watch
    has the resource; it waits for it (MISSING_GRACE_SECONDS) rather than answer 'ended'."""
    key = SessionKey("bob", "elsewhere")
    call = asyncio.create_task(backend.endpoint(key, timeout=10))
    await asyncio.sleep(0.3)
    name = create_session(custom, namespace, "bob", "elsewhere")["metadata"]["name"]
    ready(custom, namespace, name, ip="10.0.0.9", port=7000)
    endpoint = await asyncio.wait_for(call, 5)
    assert endpoint.address == "10.0.0.9:7000"


async def test_the_index_stays_right_through_a_410_relist(backend, custom, namespace):
    await backend.prepare(ALICE)
    name = resource_name("alice", "s1")
    await eventually(lambda: _cached(backend, name) and backend._cache.reflector._response is not None)
    backend._cache.reflector.resource_version = "1"  # too old: the server answers 410
    backend._cache.reflector.restart_watch()
    await eventually(lambda: backend._cache.reflector.lists == 2, what="re-list")
    ready(custom, namespace, name)
    assert (await backend.endpoint(ALICE.key, timeout=5)).address == "10.1.2.3:50051"
    assert backend.sessions.slots.count("alice") == 1


async def test_a_removed_users_sessions_are_deleted_and_only_theirs(backend, custom, namespace):
    bob = [SessionOwner(session_id=s, username="bob", role="user") for s in ("b1", "b2")]
    for owner in (ALICE, *bob):
        await backend.prepare(owner)
    everyone = {resource_name("alice", "s1"), resource_name("bob", "b1"), resource_name("bob", "b2")}
    await eventually(lambda: all(_cached(backend, n) for n in everyone))
    assert await backend.end_sessions_of("bob") == 2
    assert names_in_api(custom, namespace) == {resource_name("alice", "s1")}
    await eventually(lambda: backend.sessions.slots.count("bob") == 0)
    assert await backend.end_sessions_of("bob") == 0  # nothing left: no request
    assert backend.sessions.slots.count("alice") == 1
