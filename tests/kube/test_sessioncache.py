"""The gateway's session cache on a real API server: the index follows the API
through watch restarts, a 410 re-list, and stops cleanly."""
from __future__ import annotations

import asyncio
import functools
import time

import kubernetes
import pytest

from myservice_api import crd, reflector
from myservice_gateway.backends.sessioncache import SessionCache
from myservice_gateway.backends.sessionindex import SessionIndex

from .helpers import create_session, delete_session, eventually, names_in_api, ready


@pytest.fixture
async def make_cache(custom, namespace):
    caches: list[SessionCache] = []

    async def make(**kwargs) -> SessionCache:
        cache = SessionCache(custom, namespace, asyncio.get_running_loop(), index=SessionIndex(), **kwargs)
        caches.append(cache)
        cache.start()
        await asyncio.wait_for(cache.synced.wait(), 10)
        return cache

    yield make
    for cache in caches:
        await asyncio.to_thread(cache.reflector.stop)
        assert not cache.reflector._thread.is_alive()


async def watching(cache: SessionCache) -> None:
    await eventually(lambda: cache.reflector._response is not None, what="a watch open")


def _in_step(cache: SessionCache, custom, namespace: str) -> bool:
    return set(cache.index.items) == names_in_api(custom, namespace)


async def test_the_first_listing_fills_the_index(custom, namespace, make_cache):
    a = create_session(custom, namespace, "alice", "s1")
    cache = await make_cache()
    assert set(cache.index.items) == {a["metadata"]["name"]}
    assert cache.index.table.slots.count("alice") == 1


async def test_changes_reach_the_index(custom, namespace, make_cache):
    cache = await make_cache()
    name = create_session(custom, namespace, "alice", "s1")["metadata"]["name"]
    await eventually(lambda: name in cache.index.items, what="ADDED")
    ready(custom, namespace, name)
    await eventually(lambda: (cache.index.items[name].get("status") or {}).get("phase") == crd.Phase.READY,
                     what="MODIFIED")
    delete_session(custom, namespace, name)
    await eventually(lambda: name not in cache.index.items, what="DELETED")
    assert name in cache.index.table.ended
    assert cache.reflector.lists == 1


async def test_watches_ended_by_the_server_resume_without_a_relist(custom, namespace, make_cache):
    """timeout_seconds=1: the server ends every watch after a second; the reflector
    resumes from its resourceVersion, and nothing is lost between two watches."""
    cache = await make_cache(watch_seconds=1)
    made = []
    for i in range(8):
        made.append(create_session(custom, namespace, "alice", f"s{i}")["metadata"]["name"])
        if i % 3 == 0:
            delete_session(custom, namespace, made.pop(0))
        await asyncio.sleep(0.4)  # 3.2 s: three or four watches
    await eventually(lambda: _in_step(cache, custom, namespace), what="index == API")
    assert cache.reflector.lists == 1  # resumed each time, never re-listed
    assert cache.reflector.failures == 0


async def test_a_watch_cut_by_the_client_resumes(custom, namespace, make_cache):
    cache = await make_cache()
    for i in range(3):
        await watching(cache)
        cache.reflector.restart_watch()
        create_session(custom, namespace, "bob", f"s{i}")
    await eventually(lambda: _in_step(cache, custom, namespace), what="index == API")
    assert cache.reflector.lists == 1


async def test_410_relists_and_the_index_follows(custom, namespace, make_cache):
    """Resume from a resourceVersion the server no longer has (as after a long
    disconnection, or an etcd compaction): 410 Gone, then a re-list replaces the index."""
    keep = create_session(custom, namespace, "carol", "keep")["metadata"]["name"]
    gone = create_session(custom, namespace, "carol", "gone")["metadata"]["name"]
    cache = await make_cache()
    await watching(cache)
    cache.reflector.resource_version = "1"  # older than anything the server keeps
    cache.reflector.restart_watch()
    await eventually(lambda: cache.reflector.lists == 2, what="re-list after 410")
    delete_session(custom, namespace, gone)
    new = create_session(custom, namespace, "carol", "new")["metadata"]["name"]
    await eventually(lambda: set(cache.index.items) == {keep, new}, what="index == API")
    assert gone in cache.index.table.ended
    assert cache.index.table.slots.count("carol") == 2


async def test_stop_ends_an_open_watch_at_once(custom, namespace, make_cache):
    cache = await make_cache()
    await watching(cache)
    begun = time.monotonic()
    await asyncio.to_thread(cache.reflector.stop)
    assert time.monotonic() - begun < 2
    assert not cache.reflector._thread.is_alive()
    create_session(custom, namespace, "dave", "late")
    await asyncio.sleep(0.3)
    assert cache.index.items == {}


def test_an_unreachable_api_is_retried_with_growing_waits(kube, caplog):
    """Nothing listens on the port: the reflector keeps trying, each wait longer."""
    config = kube.configuration()
    from .apiserver import free_port
    config.host = f"https://127.0.0.1:{free_port()}"
    custom = kubernetes.client.CustomObjectsApi(kubernetes.client.ApiClient(config))
    r = reflector.Reflector(
        functools.partial(custom.list_namespaced_custom_object, crd.GROUP, crd.VERSION, "default", crd.PLURAL),
        on_replace=lambda items: None, on_change=lambda *a: None,
        backoff=reflector.Backoff(initial=0.05, cap=0.2), rand=lambda: 1.0)
    r.start()
    time.sleep(1.0)
    r.stop()
    assert not r.synced.is_set() and not r._thread.is_alive()
    waits = [m.split(" in ")[1].split("s ")[0] for m in caplog.messages if "retrying in" in m]
    assert waits[:4] == ["0.05", "0.1", "0.2", "0.2"]
