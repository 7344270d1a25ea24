"""Assemble the gateway: Login, the authenticating proxy, health, reflection."""
from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import signal

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from myservice import contract, reflection
from myservice.logfilters import quiet_client_cancels
from myservice.v1 import myservice_pb2

from . import finalstatus, tls, tokens
from .auth import Authenticator
from .backends.base import Backend
from .backends.local import LocalBackend
from .backends.processes import InstanceLimits
from .front import front as fronts
from .front.config import SOFT_STOP_SECONDS
from .hashproc import CheckerProcesses
from .liveness import LIVENESS_PATH, LoopLiveness
from .login import LoginHandler
from .metrics import GatewayMetrics, MetricsServer
from .proxy import Proxy
from .settings import GatewaySettings, SettingsError
from .users import UserStore
from .userwatch import UserWatch

log = logging.getLogger("myservice.gateway")

STOP_GRACE_SECONDS = 5.0


@dataclasses.dataclass
class Gateway:
    server: grpc.aio.Server
    port: int
    backend: Backend
    login: LoginHandler | None = None
    metrics: GatewayMetrics = dataclasses.field(default_factory=GatewayMetrics)
    metrics_server: MetricsServer | None = None
    front: fronts.Front | None = None  # HAProxy owns `port`; this server listens behind it
    user_watch: UserWatch | None = None

    @property
    def stop_grace(self) -> float:
        """How long calls in flight get when the gateway is told to stop. Apart from HAProxy
        (the chart's front container) that comes during HAProxy's soft stop, which gives its
        own calls up to SOFT_STOP_SECONDS: the calls it forwarded here (Logins, a session's
        first call, a stream that began as one) get as long. The chart's grace period leaves
        room for it."""
        return float(SOFT_STOP_SECONDS) if self.front and self.front.apart else STOP_GRACE_SECONDS

    async def stop(self, grace: float = STOP_GRACE_SECONDS) -> None:
        if self.user_watch:
            await self.user_watch.stop()
        if self.front:  # first: no new call reaches anything being stopped
            await self.front.stop(grace)
        await self.server.stop(grace)
        await self.backend.close()
        if self.login:
            self.login.close()
        if self.metrics_server:
            self.metrics_server.stop()


def observed_login(login: LoginHandler, metrics: GatewayMetrics):
    """Login, counted by outcome (the code it answered with)."""
    async def handle(request_bytes, context):
        call = login.login(request_bytes, context)
        del request_bytes  # a Login waiting for a hashing thread keeps only what login.py keeps
        try:
            reply = await call
        except asyncio.CancelledError:
            metrics.login_done(grpc.StatusCode.CANCELLED)
            raise
        except BaseException:
            metrics.login_done(context.code() or grpc.StatusCode.UNKNOWN)
            raise
        metrics.login_done(grpc.StatusCode.OK)
        return reply
    return handle


def make_backend(settings: GatewaySettings) -> Backend:
    if settings.backend == "kubernetes":
        from .backends.kubernetes import KubernetesBackend  # imports the kubernetes client only when used

        return KubernetesBackend(namespace=settings.namespace, ready_timeout=settings.session_ready_timeout,
                                 max_per_user=settings.max_sessions_per_user,
                                 ended_remembered=settings.ended_sessions_remembered)
    return LocalBackend(max_instances=settings.max_instances, start_timeout=settings.instance_start_timeout,
                        max_per_user=settings.max_sessions_per_user,
                        limits=InstanceLimits(settings.session_idle_timeout, settings.session_max_lifetime),
                        warm_pool=settings.warm_pool, ended_remembered=settings.ended_sessions_remembered,
                        command=settings.instance_command)


def token_config(settings: GatewaySettings) -> tokens.TokenConfig:
    return tokens.TokenConfig(settings.jwt_key, settings.jwt_issuer, settings.jwt_audience, settings.token_ttl_seconds)


def tls_files(settings: GatewaySettings) -> tls.TlsFiles | None:
    """None for plaintext."""
    if not settings.tls_cert_file or not settings.tls_key_file:
        return None
    return tls.TlsFiles(settings.tls_cert_file, settings.tls_key_file, settings.tls_client_ca_file)


def log_tls(files: tls.TlsFiles, front: fronts.Front | None) -> None:
    log.info("TLS on: certificate %s, key %s, %s (re-read when they change)%s", files.cert_file, files.key_file,
             f"client certificates required, signed by {files.client_ca_file}" if files.client_ca_file
             else "no client certificates", "; served by HAProxy, the gateway plain behind it" if front else "")


def tls_credentials(settings: GatewaySettings) -> grpc.ServerCredentials | None:
    """None for plaintext; raises tls.TlsConfigError (a SettingsError) if the files do not check out."""
    files = tls_files(settings)
    if files is None:
        return None
    credentials = tls.server_credentials(files)
    log_tls(files, None)
    return credentials


def make_front(settings: GatewaySettings) -> fronts.Front | None:
    """HAProxy in front of this gateway, or None (MYSERVICE_FRONT, and what can run here).
    With TLS, HAProxy serves it; raises tls.TlsConfigError if the files do not check out."""
    try:
        choice = fronts.choose(settings.front, backend=settings.backend, key=settings.jwt_key,
                               apart=settings.front_directory)
    except ValueError as e:
        raise SettingsError(str(e)) from None
    log.info("front: %s (%s)", choice.front, choice.why)
    if choice.front != fronts.HAPROXY:
        if settings.front_proxy_protocol:  # the Python gateway cannot read it: every call would fail
            raise SettingsError("MYSERVICE_FRONT_PROXY_PROTOCOL (--front-proxy-protocol) needs the HAProxy "
                                f"front (MYSERVICE_FRONT=haproxy); the front is none: {choice.why}")
        if settings.front_metrics_port:  # nobody would answer on it: say so rather than be silent
            raise SettingsError("MYSERVICE_FRONT_METRICS_PORT needs the HAProxy front (MYSERVICE_FRONT=haproxy); "
                                f"the front is none: {choice.why}")
        return None
    if settings.front_directory and not os.path.isdir(settings.front_directory):
        raise SettingsError(f"MYSERVICE_FRONT_DIRECTORY: {settings.front_directory} is not a directory (the one "
                            "shared with HAProxy: the chart's front volume)")
    # The forwarded services: MYSERVICE_SERVICES once that setting exists, else ours.
    services = getattr(settings, "services", (contract.SERVICE,))
    front = fronts.Front(haproxy=choice.haproxy, host=settings.host, port=settings.port, jwt_key=settings.jwt_key,
                         issuer=settings.jwt_issuer, audience=settings.jwt_audience, services=services,
                         tls_files=tls_files(settings), trusted_proxies=settings.trusted_proxies,
                         proxy_protocol=settings.front_proxy_protocol, metrics_host=settings.metrics_host,
                         metrics_port=settings.front_metrics_port, shared_directory=settings.front_directory)
    if front.tls:
        log_tls(front.tls.files, front)
    if front.metrics_port:
        log.info("HAProxy's metrics on http://%s:%d/metrics", settings.metrics_host, front.metrics_port)
    return front


async def start_gateway(settings: GatewaySettings, backend: Backend | None = None) -> Gateway:
    finalstatus.require_tested_grpcio()  # the proxy relies on grpc.aio internals
    quiet_client_cancels()
    backend = backend or make_backend(settings)
    front = make_front(settings)
    # Hashes in child processes at the hashing nice value (hashproc.py), or on the hashing threads.
    checker = (CheckerProcesses(size=settings.login_hash_workers, nice=settings.login_hash_nice)
               if settings.login_hash_process else None)
    users = UserStore(users_file=settings.users_file, dev_user=settings.dev_user,
                      verify=checker.verify if checker else None)
    config = token_config(settings)
    server = grpc.aio.server()
    login = LoginHandler.from_settings(settings, users=users, token_config=config, backend=backend,
                                       checker=checker)
    metrics = GatewayMetrics()
    metrics.observe_live_sessions(lambda: backend.sessions.slots.total)
    if isinstance(backend, LocalBackend):  # on Kubernetes the pool is the operator's (its own metrics)
        metrics.observe_warm_idle(lambda: backend.warm_idle_count)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(contract.SERVICE, {
        "Login": grpc.unary_unary_rpc_method_handler(
            observed_login(login, metrics),
            request_deserializer=None,  # raw bytes: Login decodes them (malformed: INVALID_ARGUMENT)
            response_serializer=myservice_pb2.LoginResponse.SerializeToString,
        ),
    }),))
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable(server, (contract.SERVICE, health.SERVICE_NAME))
    proxied = front.observe(backend) if front else backend
    user_watch = UserWatch(users, proxied)  # the front's too: a removed user's routes go first
    if front:
        front.user_exists = user_watch.exists
    authenticator = Authenticator(config, user_watch.exists)
    server.add_generic_rpc_handlers((Proxy(proxied, authenticator, services=settings.services,
                                           metrics=metrics),))
    backend.sessions.on_session_start = metrics.session_started
    try:
        credentials = None if front else tls_credentials(settings)  # the front serves TLS itself
        address = front.gateway_address if front else f"{settings.host}:{settings.port}"
        port = (server.add_secure_port(address, credentials) if credentials
                else server.add_insecure_port(address))
    except RuntimeError:  # grpc's "Failed to bind": say it plainly
        port = 0
    if port == 0:
        raise OSError(f"cannot listen on {settings.host}:{settings.port} (address in use or not available)")
    if front:
        port = front.port
    metrics_server = (metrics.serve(settings.metrics_host, settings.metrics_port,
                                    live=LoopLiveness(asyncio.get_running_loop()))
                      if settings.metrics_port else None)
    await backend.start()
    user_watch.start()
    await server.start()
    if front:
        await front.start()
    await health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    await health_servicer.set(contract.SERVICE, health_pb2.HealthCheckResponse.SERVING)
    if metrics_server:
        log.info("metrics on http://%s:%d/metrics (the gateway's liveness: %s)", settings.metrics_host,
                 metrics_server.port, LIVENESS_PATH)
    return Gateway(server, port, backend, login, metrics, metrics_server, front, user_watch)


async def serve(settings: GatewaySettings) -> int:
    if settings.jwt_key_generated:
        log.warning("no JWT key configured: using a random key for this process (tokens end with it)")
    if settings.dev_user:
        log.warning("DEVELOPMENT USER ENABLED: anyone who can reach %s:%s logs in as TestUser / TestPassword "
                    "(role user); set MYSERVICE_USERS_FILE for real users", settings.host, settings.port)
    gateway = await start_gateway(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    log.info("gateway listening on %s:%d (backend: %s)", settings.host, gateway.port, settings.backend)
    await stop.wait()
    log.info("gateway stopping (calls in flight get up to %g s)", gateway.stop_grace)
    await gateway.stop(gateway.stop_grace)
    return 0
