"""Kubernetes backend: sessions are MyServiceSession resources, pods are the
operator's business. Login creates the resource; calls route by its status,
read from a watch-backed cache (never an API call per request).

The only gateway module that imports the kubernetes client.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import logging
import time
from collections.abc import Callable
from typing import Any

import grpc
import kubernetes
from kubernetes.client.rest import ApiException

from myservice import errors
from myservice_api import crd, kubeclient
from myservice_api.names import resource_name

from . import routes, sessions
from .base import Endpoint, SessionKey, SessionOwner, instance_channel
from .sessioncache import SessionCache
from .sessionindex import SessionIndex

log = logging.getLogger("myservice.gateway.kubernetes")

FIRST_SYNC_TIMEOUT = 30.0
# A caller holds a token, so its session's resource was created at Login. If the
# cache still lacks it after this long, it is not "about to arrive" but gone
# (deleted after its TTL, or by hand): the session has ended.
MISSING_GRACE_SECONDS = 5.0
# Threads (and kept-alive connections) for the API calls of Logins: the creates in flight
# at once. asyncio's default executor has cores + 4 (6 on this 2-core machine), and a burst
# of 75 Logins/s at ~100 ms per create on a busy API server needs ~8: Logins queued for a
# thread (the scale run's claim burst: the create stage's p50 184 ms, its p99 475 ms).
API_THREADS = 16


class KubernetesBackend:
    def __init__(self, *, namespace: str, ready_timeout: float, max_per_user: int = 0,
                 ended_remembered: int = sessions.ENDED_REMEMBERED,
                 api_client: kubernetes.client.ApiClient | None = None):
        self.namespace = namespace
        self.sessions = sessions.SessionTable(max_per_user=max_per_user, ready_timeout=ready_timeout,
                                              ended_remembered=ended_remembered)
        self._api_client = api_client
        self._api: kubernetes.client.CustomObjectsApi | None = None
        self._cache: SessionCache | None = None
        self._channels: dict[str, grpc.aio.Channel] = {}
        # The session that last used each channel: a pod's IP can come back for another
        # session's pod while the ended one's resource stays (its TTL), and the ended one's
        # end must not close the channel the new one uses.
        self._channel_users: dict[str, str] = {}
        # Told (resource name, user, session id, pod address) of every watch event of a Ready
        # session: the front's map (front.py), which then holds every Ready session of the
        # namespace, at once and again after a restart of this gateway.
        self.on_session_ready: Callable[[str, str, str, str], None] = lambda name, user, sid, address: None
        self._executor = concurrent.futures.ThreadPoolExecutor(API_THREADS, thread_name_prefix="kube")

    async def _call(self, blocking: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """One blocking API call on the API threads."""
        return await asyncio.get_running_loop().run_in_executor(
            self._executor, functools.partial(blocking, *args, **kwargs))

    async def start(self) -> None:
        self._api_client = self._api_client or kubeclient.api_client(pool_size=API_THREADS)
        self._api = kubernetes.client.CustomObjectsApi(self._api_client)
        index = SessionIndex(self.sessions, on_finished=self._forget, on_ready=self._ready_seen)
        self._cache = SessionCache(self._api, self.namespace, asyncio.get_running_loop(), index=index)
        self._cache.start()
        try:
            await asyncio.wait_for(self._cache.synced.wait(), FIRST_SYNC_TIMEOUT)
        except asyncio.TimeoutError:
            raise RuntimeError(f"could not list {crd.PLURAL} in namespace {self.namespace} "
                               f"within {FIRST_SYNC_TIMEOUT:.0f}s (is the CRD installed, RBAC granted?)") from None
        log.info("session cache synced: %d sessions in %s", len(self._cache.index.items), self.namespace)

    async def prepare(self, owner: SessionOwner) -> None:
        """Create the session's resource (which starts its pod), or find it again:
        the same user with the same session id resumes the same session.

        The per-user limit is checked here, since on Kubernetes Login is the call
        that starts the instance; each gateway counts from its watch cache, so with
        several replicas two Logins at the same instant may both pass (soft limit)."""
        assert self._cache is not None
        index = self._cache.index
        body = routes.session_resource(owner, namespace=self.namespace)
        name = body["metadata"]["name"]
        existing = index.items.get(name)
        if existing is not None:
            self._check_owner(existing, owner)
            return
        self.sessions.admit(owner.username)
        index.reserve(owner.username, name)
        try:
            await self._call(self._api.create_namespaced_custom_object, crd.GROUP, crd.VERSION,
                             self.namespace, crd.PLURAL, body, _request_timeout=10)
            log.info("session %s -> %s created", owner.key, name)
            return
        except ApiException as e:
            if e.status != 409:
                log.error("creating %s failed: %s %s", name, e.status, e.reason)
                index.unreserve(owner.username, name)
                raise errors.backend_unavailable() from None
        except Exception as e:  # noqa: BLE001 - API unreachable
            log.error("creating %s failed: %s", name, e)
            index.unreserve(owner.username, name)
            raise errors.backend_unavailable() from None
        # 409: made a moment ago (another Login of this session, maybe through another
        # gateway) and not in our cache yet: whose is it? One GET, on this rare path only.
        try:
            existing = await self._call(self._api.get_namespaced_custom_object, crd.GROUP, crd.VERSION,
                                        self.namespace, crd.PLURAL, name, _request_timeout=10)
        except Exception as e:  # noqa: BLE001 - deleted in between, or API unreachable
            log.error("reading existing %s failed: %s", name, e)
            index.unreserve(owner.username, name)
            raise errors.backend_unavailable() from None
        try:
            self._check_owner(existing, owner)
        except errors.ContractError:
            index.unreserve(owner.username, name)  # another user's: it holds no slot of this user's
            raise

    @staticmethod
    def _check_owner(resource: dict, owner: SessionOwner) -> None:
        try:
            sessions.check_owner(routes.owner_of(resource), owner.username)
        except errors.ContractError:
            log.error("session %s: resource %s belongs to user %r", owner.key, resource["metadata"]["name"],
                      routes.owner_of(resource))
            raise

    async def endpoint(self, key: SessionKey, *, timeout: float | None) -> Endpoint:
        """Route by the cached resource; a first call waits (within its deadline and
        the ready timeout) for Ready, woken only by changes of its own session."""
        assert self._cache is not None
        name = resource_name(key.username, key.session_id)
        route = routes.decide(self._cache.index.items.get(name), key)
        if route.address:  # the common case: no wait
            return Endpoint(route.address, route.pod_name, self._channel(route.address, name))
        if route.error:
            raise route.error
        return await self.sessions.wait_for_start(self._ready(key), call_timeout=timeout)

    async def _ready(self, key: SessionKey) -> tuple[Endpoint, crd.PodSource]:
        index = self._cache.index
        name = resource_name(key.username, key.session_id)
        begun = time.monotonic()
        while True:
            resource = index.items.get(name)
            route = routes.decide(resource, key)
            if route.address:
                return (Endpoint(route.address, route.pod_name, self._channel(route.address, name)),
                        routes.pod_source(resource))
            if route.error:
                raise route.error
            wait = None
            if resource is None:
                # A caller holds a token, so its resource was created at Login: if the watch
                # saw it deleted (TTL), or it is still missing after a grace, the session has ended.
                wait = begun + MISSING_GRACE_SECONDS - time.monotonic()
                if name in self.sessions.ended or wait <= 0:
                    raise errors.session_ended(key.session_id)
            change = index.change_of(name)
            try:
                await asyncio.wait_for(change, wait)
            except asyncio.TimeoutError:
                pass
            finally:
                index.forget(name, change)

    async def end_sessions_of(self, username: str) -> int:
        """Delete the user's resources (the operator then ends their pods); one DELETE
        per live session, a 404 is already gone. Every gateway replica does it: the
        deletes are idempotent."""
        names = self.sessions.slots.held(username)
        for name in names:
            try:
                await self._call(self._api.delete_namespaced_custom_object, crd.GROUP, crd.VERSION,
                                 self.namespace, crd.PLURAL, name, _request_timeout=10)
                log.info("session %s of removed user %r deleted", name, username)
            except ApiException as e:
                if e.status != 404:
                    log.error("deleting %s of removed user %r failed: %s %s", name, username, e.status, e.reason)
            except Exception as e:  # noqa: BLE001 - API unreachable: the token is refused all the same
                log.error("deleting %s of removed user %r failed: %s", name, username, e)
        return len(names)

    def _channel(self, address: str, name: str) -> grpc.aio.Channel:
        """The channel to a pod's address, for the session of resource `name`."""
        self._channel_users[address] = name
        channel = self._channels.get(address)
        if channel is None:
            channel = self._channels[address] = instance_channel(address)
        return channel

    @staticmethod
    def table_key(key: SessionKey) -> str:
        """The session table's key of a session (slots, ended sessions): its resource name."""
        return resource_name(key.username, key.session_id)

    def _ready_seen(self, name: str, resource: dict) -> None:
        """The watch saw the session Ready (or still Ready): tell the listener (the front adds
        its route, so that even its first call through this gateway passes HAProxy alone)."""
        spec = resource.get("spec") or {}
        address = routes.ready_address(resource)
        if address and spec.get("user") and spec.get("sessionId"):
            self.on_session_ready(name, spec["user"], spec["sessionId"], address)

    def _forget(self, resource: dict | None) -> None:
        """Close the channel of a session that has ended (runs on the event loop), and tell
        the ended sessions' listener (the front drops its route): a Completed or Failed
        session's pod is gone or going, its resource stays until its TTL."""
        name = ((resource or {}).get("metadata") or {}).get("name")
        if name:
            self.sessions.ended.on_end(name)
        status = (resource or {}).get("status") or {}
        if status.get("podIP") and status.get("port"):
            address = f"{status['podIP']}:{status['port']}"
            if self._channel_users.get(address, name) != name:
                return  # another session's pod has that address now: its channel stays
            self._channel_users.pop(address, None)
            channel = self._channels.pop(address, None)
            if channel is not None:
                asyncio.get_running_loop().create_task(channel.close())

    async def close(self) -> None:
        if self._cache:
            self._cache.stop()
        for channel in self._channels.values():
            await channel.close()
        self._channels.clear()
        self._channel_users.clear()
        self._executor.shutdown(wait=False, cancel_futures=True)
