"""The front assembled for server.py: which front runs, HAProxy started in front
of the Python gateway, and the session table's news turned into map changes.

When a session is Ready: the moment the Python gateway resolves a call's
instance (Backend.endpoint returns), it is, on both backends and for warm pool
members alike; the entry is added then, so a session's first call goes through
Python (which starts the instance) and the following ones do not. On Kubernetes
also when the watch sees the resource Ready (at start, after a relist, and from
the calls of other replicas): every replica's map holds every Ready session. When it ends:
the session table's ended sessions (sessions.EndedSessions.on_end), where both
backends record every end (Shutdown, limits, crash, resource deleted).
"""
from __future__ import annotations

import dataclasses
import logging
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Hashable

from google.protobuf import descriptor_pool

from myservice import contract

from .. import tls
from ..backends.base import Backend, Endpoint, SessionKey
from . import files
from . import supervisor as supervisors
from .fronttls import FrontTls
from .mapsync import MapSync
from .sidecar import HaproxySidecar

log = logging.getLogger("myservice.gateway.front")

HAPROXY = "haproxy"
NONE = "none"
# HAProxy 2.6 (Debian bookworm's) ends a stream answered while its client still sends (a
# Chat the instance ends, a call racing a Shutdown) with RST_STREAM(CANCEL): the client
# reads CANCELLED instead of the status (haproxy/haproxy#1219), against the contract. 3.0
# forwards it: hack/haproxy/install.sh installs Debian trixie's for bookworm.
MIN_VERSION = (3, 0)
INSTALL_HINT = "hack/haproxy/install.sh installs HAProxy 3.0; make run and make test do"


@dataclasses.dataclass(frozen=True)
class Choice:
    front: str  # HAPROXY or NONE
    haproxy: str | None  # the binary
    why: str  # for the one log line


def haproxy_version(binary: str) -> tuple[int, ...] | None:
    """(major, minor) of `binary` from `haproxy -v`, None when it does not answer."""
    try:
        out = subprocess.run([binary, "-v"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    found = re.search(r"version (\d+)\.(\d+)", out)
    return (int(found[1]), int(found[2])) if found else None


def choose(wanted: str | None, *, backend: str, which: Callable[[str], str | None] = shutil.which,
           version: Callable[[str], tuple[int, ...] | None] = haproxy_version, key: bytes = b"",
           apart: str | None = None) -> Choice:
    """The front to run: `wanted` (MYSERVICE_FRONT); unset: haproxy when a binary of at
    least MIN_VERSION is found on PATH, else none (the log line says why). Raises
    ValueError when haproxy is asked for and cannot serve. The same on every `backend`
    (local: loopback TCP instances; kubernetes: pod IPs, the session table keyed by
    resource name: Front.observe). With `apart` (MYSERVICE_FRONT_DIRECTORY), HAProxy is
    run by another process (its container carries the binary): only the key is checked."""
    if wanted == NONE:
        return Choice(NONE, None, "MYSERVICE_FRONT=none")
    key_problem = "the JWT key holds a NUL byte, which HAProxy's jwt_verify cannot take" if b"\0" in key else None
    if apart:
        if wanted != HAPROXY:
            raise ValueError("MYSERVICE_FRONT_DIRECTORY needs MYSERVICE_FRONT=haproxy (it names the directory "
                             "shared with an HAProxy run apart)")
        if key_problem:
            raise ValueError(f"MYSERVICE_FRONT=haproxy: {key_problem}")
        return Choice(HAPROXY, None, f"HAProxy run apart on {apart}/haproxy.cfg (MYSERVICE_FRONT_DIRECTORY)")
    binary = which(HAPROXY)
    found = version(binary) if binary else None
    problem = None
    if not binary:
        problem = f"the haproxy binary is not found on PATH ({INSTALL_HINT})"
    elif found is None:
        problem = f"{binary} -v does not tell its version"
    elif found < MIN_VERSION:
        problem = (f"{binary} is HAProxy {'.'.join(map(str, found))}; the front needs "
                   f"{'.'.join(map(str, MIN_VERSION))} or newer ({INSTALL_HINT})")
    elif key_problem:
        problem = key_problem
    if problem is None:
        return Choice(HAPROXY, binary, f"{binary}, HAProxy {'.'.join(map(str, found))}"
                      + ("" if wanted else ": the default when found"))
    if wanted == HAPROXY:
        raise ValueError(f"MYSERVICE_FRONT=haproxy: {problem}")
    return Choice(NONE, None, problem)


def forwarded_methods(services: tuple[str, ...]) -> tuple[str, ...]:
    """'/pkg.Service/Method' of every method of `services` but Login: what the front
    checks and routes itself. A service unknown to this gateway's protobufs has none
    (its calls all go to Python)."""
    methods = []
    for name in services:
        try:
            service = descriptor_pool.Default().FindServiceByName(name)
        except KeyError:
            continue
        methods.extend(f"/{name}/{m.name}" for m in service.methods)
    return tuple(m for m in methods if m != contract.LOGIN_METHOD)


class ObservedBackend:
    """The backend as the proxy and the user watch see it, telling the front each Ready
    session's address, and each user removed from the users file (userwatch.py)."""

    def __init__(self, backend: Backend, on_ready: Callable[[SessionKey, str], None],
                 on_user_removed: Callable[[str], None] = lambda username: None) -> None:
        self._backend = backend
        self._on_ready = on_ready
        self._on_user_removed = on_user_removed

    def __getattr__(self, name):
        return getattr(self._backend, name)

    async def endpoint(self, key: SessionKey, *, timeout: float | None) -> Endpoint:
        endpoint = await self._backend.endpoint(key, timeout=timeout)
        self._on_ready(key, endpoint.address)
        return endpoint

    async def end_sessions_of(self, username: str) -> int:
        # The routes first: the user's calls are Python's (refused) before their instances end.
        self._on_user_removed(username)
        return await self._backend.end_sessions_of(username)


class Front:
    """HAProxy in front of a Python gateway listening on `gateway_socket`; with `tls_files`,
    HAProxy serves TLS (the Python gateway stays plain behind it: fronttls.py). The peers
    in `trusted_proxies` (networks) keep their x-forwarded-for; `proxy_protocol`: the
    public port expects a PROXY protocol header on every connection (config.py);
    `metrics_port`: HAProxy's Prometheus exporter listens there (0: none).

    HAProxy is this process's child (supervisor.py), or, with `shared_directory`, run
    apart on the files written there (sidecar.py: the chart's front container)."""

    def __init__(self, *, haproxy: str | None, host: str, port: int, jwt_key: bytes, issuer: str, audience: str,
                 services: tuple[str, ...] = (contract.SERVICE,),
                 table_key: Callable[[SessionKey], Hashable] = lambda key: key,
                 tls_files: tls.TlsFiles | None = None, trusted_proxies: tuple = (),
                 proxy_protocol: bool = False, metrics_host: str = "127.0.0.1", metrics_port: int = 0,
                 shared_directory: str | None = None) -> None:
        common = dict(jwt_key=jwt_key, issuer=issuer, audience=audience, methods=forwarded_methods(services),
                      on_start=self._haproxy_started,
                      trusted_proxies=tuple(str(network) for network in trusted_proxies),
                      proxy_protocol=proxy_protocol)
        if shared_directory:
            self.directory = shared_directory
            self.tls = FrontTls.load(tls_files, self.directory) if tls_files else None
            self.haproxy: supervisors.HaproxySupervisor | HaproxySidecar = HaproxySidecar(
                directory=shared_directory, host=host, port=port, tls=self.tls, metrics_host=metrics_host,
                metrics_port=metrics_port, **common)
            self.gateway_socket = self.haproxy.config.gateway_socket
        else:
            self.directory = tempfile.mkdtemp(prefix="myservice-front-")  # 0700: sockets, config, map, TLS
            try:
                # First: files that do not check out stop the start before any socket is bound.
                self.tls = FrontTls.load(tls_files, self.directory) if tls_files else None
                metrics = supervisors.listening_socket(metrics_host, metrics_port) if metrics_port else None
                try:
                    listener = supervisors.listening_socket(host, port)
                except BaseException:
                    if metrics:
                        metrics.close()
                    raise
            except BaseException:
                shutil.rmtree(self.directory, ignore_errors=True)
                raise
            self.gateway_socket = os.path.join(self.directory, files.GATEWAY_SOCKET_NAME)
            self.haproxy = supervisors.HaproxySupervisor(
                haproxy=haproxy, listener=listener, gateway_socket=self.gateway_socket,
                directory=self.directory, tls=self.tls, metrics_listener=metrics, **common)
        self.map = MapSync(self.haproxy.client, self.haproxy.map_file)
        self._table_key = table_key
        self._ended: Callable[[Hashable], bool] = lambda key: False
        # Whether a user is in the users file (userwatch.py; server.py sets it): the watch's
        # Ready sessions of a removed user get no route.
        self.user_exists: Callable[[str], bool] = lambda username: True

    @property
    def port(self) -> int:
        return self.haproxy.port

    @property
    def apart(self) -> bool:
        """HAProxy runs in a container of its own (not this process's child)."""
        return isinstance(self.haproxy, HaproxySidecar)

    @property
    def metrics_port(self) -> int | None:
        """The port of HAProxy's Prometheus exporter, None when it has none."""
        return self.haproxy.metrics_port

    @property
    def gateway_address(self) -> str:
        """Where the Python gateway listens (gRPC's form)."""
        return f"unix:{self.gateway_socket}"

    def observe(self, backend: Backend) -> ObservedBackend:
        """Hook the front to the backend's session table; the proxy uses what this returns."""
        # Local instances on loopback TCP (HAProxy reaches host:port only). LocalBackend has
        # no argument for it yet (backends/local.py is being reworked): its supervisor's switch.
        processes = getattr(backend, "_processes", None)
        if processes is not None:
            processes.loopback_tcp = True
        # The session table's key, when the backend's is not the SessionKey itself (Kubernetes:
        # the resource name, which its ended sessions are told by).
        self._table_key = getattr(backend, "table_key", self._table_key)
        ended = backend.sessions.ended
        ended.on_end = self.map.ended
        self._ended = ended.__contains__
        if hasattr(backend, "on_session_ready"):  # Kubernetes: Ready as the watch sees it
            backend.on_session_ready = self._watched_ready
        return ObservedBackend(backend, self._session_ready, self.map.user_removed)

    def _watched_ready(self, session: Hashable, username: str, session_id: str, address: str) -> None:
        # Not a removed user's (its sessions are being deleted: until then Python refuses its calls).
        if self.user_exists(username) and not self._ended(session):
            self.map.ready(session, username, session_id, address)

    def _session_ready(self, key: SessionKey, address: str) -> None:
        session = self._table_key(key)
        if not self._ended(session):  # its end was seen while the call resumed: no entry again
            self.map.ready(session, key.username, key.session_id, address)

    def _haproxy_started(self) -> None:
        # A new HAProxy has an empty map: replace it whole with what the gateway knows.
        self.map.rebuild()

    async def start(self) -> None:
        # HAProxy first: the changes queued meanwhile (the watch's Ready sessions at start) then
        # go with the rebuild its start asks for, not one by one to an HAProxy not yet there.
        await self.haproxy.start()
        self.map.start()
        if self.tls:
            self.tls.start(self.haproxy.client)

    async def stop(self, grace: float = 5.0) -> None:
        if self.tls:
            await self.tls.stop()
        await self.haproxy.stop(grace)
        await self.map.close()
