"""The gateway's one settings object, built from environment and flags at the
entry point only. Each setting is declared once, below (myservice_api.settings:
its variable, flag, default, rule and help); README.md's table and the chart are
checked against these declarations (tests/gateway/test_settings.py)."""
from __future__ import annotations

import dataclasses
import os
import re
import secrets
import shlex
from collections.abc import Mapping
from typing import Any

from myservice import contract
from myservice_api import settings
from myservice_api.settings import SettingsError as SettingsError  # raised and caught as this module's
from myservice_api.settings import declare

from . import clientaddress

MIN_KEY_BYTES = 32


def default_login_hash_workers(cgroup_root: str = "/sys/fs/cgroup") -> int:
    """One password-hashing thread per usable core minus one (the event loop's),
    at least 1 and at most 4: each holds 64 MiB while it hashes, and Login is
    not meant to be the gateway's main work. Usable: the CPUs this process may
    run on, and no more than its cgroup's CPU quota (a pod's CPU limit)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    quota = cgroup_cpu_quota(cgroup_root)
    if quota is not None:
        cores = min(cores, max(1, int(-(-quota // 1))))
    return max(1, min(4, cores - 1))


def cgroup_cpu_quota(cgroup_root: str = "/sys/fs/cgroup") -> float | None:
    """The CPU limit in cores from cgroup v2 (cpu.max) or v1 (cpu.cfs_quota_us and
    cpu.cfs_period_us), None when there is none or it cannot be read."""
    try:
        with open(os.path.join(cgroup_root, "cpu.max")) as f:
            quota, period = f.read().split()[:2]
    except (OSError, ValueError):
        try:
            with open(os.path.join(cgroup_root, "cpu", "cpu.cfs_quota_us")) as f:
                quota = f.read().strip()
            with open(os.path.join(cgroup_root, "cpu", "cpu.cfs_period_us")) as f:
                period = f.read().strip()
        except OSError:
            return None
    try:
        if quota in ("max", "-1") or int(period) <= 0:
            return None
        return int(quota) / int(period)
    except ValueError:
        return None


# A protobuf full name: dot-separated identifiers ("myservice.v1.MyService").
_SERVICE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")


def parse_services(raw: str) -> tuple[str, ...]:
    """MYSERVICE_SERVICES (or the --service flags, joined): full service names,
    comma-separated, at least one, each once, in the order given."""
    names = [name.strip() for name in raw.split(",") if name.strip()]
    bad = [name for name in names if not _SERVICE_NAME.fullmatch(name)]
    if bad or not names:
        raise SettingsError("MYSERVICE_SERVICES (--service) must be full gRPC service names such as "
                            f"{contract.SERVICE}, comma-separated, got {raw!r}")
    return tuple(dict.fromkeys(names))


def parse_command(raw: str) -> tuple[str, ...]:
    """MYSERVICE_INSTANCE_COMMAND (--instance-command): split as a shell would
    (quotes, backslashes), never run by one."""
    try:
        return tuple(shlex.split(raw))
    except ValueError as e:
        raise SettingsError(f"MYSERVICE_INSTANCE_COMMAND (--instance-command) must be a command line "
                            f"(split as a shell would: {e}), got {raw!r}") from None


@dataclasses.dataclass(frozen=True)
class GatewaySettings:
    host: str = declare(
        "0.0.0.0", env="MYSERVICE_HOST", flag="--host",
        help="listen address")
    port: int = declare(
        10000, env="MYSERVICE_PORT", flag="--port", minimum=0, maximum=65535,
        help="listen port")
    backend: str = declare(
        "local", env="MYSERVICE_BACKEND", flag="--backend", choices=("local", "kubernetes"),
        help="where instances come from: local (child processes) or kubernetes (MyServiceSession "
             "resources, pods made by the operator)")
    services: tuple[str, ...] = declare(
        (contract.SERVICE,), env="MYSERVICE_SERVICES", flag="--service", metavar="NAME", repeated=True,
        parse=parse_services, default_text=contract.SERVICE,
        help="the gRPC services whose calls are forwarded to the session's instance, by full name "
             "(comma-separated; the flag may be repeated); a method of any other service, or one "
             "not in the descriptor of ours, is UNIMPLEMENTED and starts no instance")
    front: str | None = declare(
        None, env="MYSERVICE_FRONT", flag="--front", choices=("haproxy", "none"),
        default_text="haproxy when HAProxy 3.0+ is on PATH, else none (the start log says which and why)",
        help="haproxy: HAProxy owns the port, checks tokens and sends a Ready session's calls "
             "straight to its instance, the Python gateway behind it on a private socket; none: "
             "the Python gateway serves the port alone. HAProxy runs as the gateway's child, or apart "
             "(MYSERVICE_FRONT_DIRECTORY: the chart's front container). HAProxy 2.6 is refused "
             "(it can turn a status into CANCELLED): hack/haproxy/install.sh installs 3.0")
    front_directory: str | None = declare(
        None, env="MYSERVICE_FRONT_DIRECTORY", default_text="unset: HAProxy is the gateway's child",
        help="with the HAProxy front: HAProxy runs apart (the chart's front container), on the haproxy.cfg "
             "the gateway writes into this directory, shared with it (HAProxy's runtime socket and the "
             "gateway's own socket are there too); the gateway does not start HAProxy, it keeps its map "
             "and gives it the whole map whenever a new HAProxy answers. A gateway that stops or dies leaves "
             "HAProxy serving the Ready sessions")
    front_proxy_protocol: bool = declare(
        False, env="MYSERVICE_FRONT_PROXY_PROTOCOL", flag="--front-proxy-protocol",
        help="the front's public port expects a PROXY protocol header (v1 or v2, HAProxy's accept-proxy) "
             "on every connection, from a load balancer that sends it: its source address is the client's "
             "(Login's limits, x-forwarded-for); a connection without one is refused. Needs --front haproxy")
    # local backend
    max_instances: int = declare(
        16, env="MYSERVICE_MAX_INSTANCES", flag="--max-instances", minimum=0,
        help="local: most live instances at once, warm pool members included")
    instance_start_timeout: float = declare(
        20.0, env="MYSERVICE_INSTANCE_START_TIMEOUT", positive=True, unit="seconds",
        help="local: how long an instance may take to start")
    instance_command: tuple[str, ...] = declare(
        (), env="MYSERVICE_INSTANCE_COMMAND", flag="--instance-command", metavar="CMD", parse=parse_command,
        default_text="myservice instance",
        help="local: each session's instance is this command (split as a shell would, run without one) on "
             "loopback TCP, with the environment of docs/instances.md; ready once its grpc.health.v1 says "
             "SERVING, ended when it exits")
    warm_pool: int = declare(
        0, env="MYSERVICE_WARM_POOL_SIZE", flag="--warm-pool", metavar="N", minimum=0, zero="off",
        aliases=("MYSERVICE_WARM_POOL",),  # its name before it was the operator's too
        help="local: keep N idle instances started, so a new session's first call does not wait "
             "for a process start; refilled in the background within --max-instances, which "
             "bounds idle and bound processes together (a new session takes a pool member "
             "first, so the pool never keeps one out)")
    # sessions (both backends; on Kubernetes the limits are the operator's settings)
    max_sessions_per_user: int = declare(
        10, env="MYSERVICE_MAX_SESSIONS_PER_USER", flag="--max-sessions-per-user", metavar="N",
        minimum=0, zero="no limit",
        help="most live sessions of one user")
    ended_sessions_remembered: int = declare(
        100_000, env="MYSERVICE_ENDED_SESSIONS_REMEMBERED", minimum=1,
        help="sessions whose end the gateway remembers, so their calls are told 'has ended' "
             "at once (about 100 bytes each)")
    session_idle_timeout: float = settings.SESSION_IDLE_TIMEOUT.field(
        flag="--idle-timeout",
        help="local: end an instance after this long without a call (on Kubernetes: the operator's)")
    session_max_lifetime: float = settings.SESSION_MAX_LIFETIME.field(
        flag="--max-lifetime",
        help="local: end an instance this long after it started (on Kubernetes: the operator's)")
    # auth
    jwt_key: bytes = declare(
        b"", env="MYSERVICE_JWT_KEY", parse=str.encode, default_text="random per process",
        help="HS256 signing key, at least 32 bytes (MYSERVICE_JWT_KEY_FILE wins); without one, "
             "a random key per process: tokens die with it")
    jwt_key_file: str | None = declare(
        None, env="MYSERVICE_JWT_KEY_FILE",
        help="file holding the HS256 signing key")
    jwt_key_generated: bool = False  # no key given: jwt_key is the random one
    jwt_issuer: str = declare(
        "myservice-gateway", env="MYSERVICE_JWT_ISSUER",
        help="the tokens' required iss claim")
    jwt_audience: str = declare(
        "myservice", env="MYSERVICE_JWT_AUDIENCE",
        help="the tokens' required aud claim")
    token_ttl_seconds: int = declare(
        3600, env="MYSERVICE_TOKEN_TTL_SECONDS", minimum=1,
        help="token lifetime")
    users_file: str | None = declare(
        None, env="MYSERVICE_USERS_FILE",
        help="JSON users file (argon2id or bcrypt hashes), re-read when it changes")
    # Only `myservice up` turns the development user on (from_env's dev_user), and only
    # without a users file; the variable may only say false.
    dev_user: bool = declare(
        False, env="MYSERVICE_DEV_USER",
        help="the development user TestUser/TestPassword: in `myservice up` without "
             "MYSERVICE_USERS_FILE only; true anywhere else is refused")
    # Prometheus /metrics
    metrics_port: int = declare(
        0, env="MYSERVICE_METRICS_PORT", minimum=0, maximum=65535, zero="off",
        help="port of the Prometheus /metrics over HTTP")
    metrics_host: str = declare(
        "127.0.0.1", env="MYSERVICE_METRICS_HOST",
        help="address /metrics listens on (the gateway's, and the front's)")
    front_metrics_port: int = declare(
        0, env="MYSERVICE_FRONT_METRICS_PORT", minimum=0, maximum=65535, zero="off",
        help="port of HAProxy's own Prometheus /metrics (its built-in exporter: the calls of Ready "
             "sessions, which the gateway's /metrics no longer sees; docs/metrics.md). Needs --front haproxy")
    # kubernetes backend
    namespace: str = declare(
        "default", env="MYSERVICE_NAMESPACE",
        help="kubernetes: namespace of the sessions")
    session_ready_timeout: float = settings.SESSION_READY_TIMEOUT.field(
        help="kubernetes: longest a call waits for its session's pod to turn Ready (the operator "
             "fails a session not Ready after as long)")
    # TLS (tls.py): plaintext unless a certificate and key are given
    tls_cert_file: str | None = declare(
        None, env="MYSERVICE_TLS_CERT_FILE", flag="--tls-cert", metavar="FILE", default_text="plaintext",
        help="serve TLS with this PEM certificate chain, re-read when it changes (with the front, HAProxy "
             "serves it)")
    tls_key_file: str | None = declare(
        None, env="MYSERVICE_TLS_KEY_FILE", flag="--tls-key", metavar="FILE",
        help="the PEM private key of --tls-cert")
    tls_client_ca_file: str | None = declare(
        None, env="MYSERVICE_TLS_CLIENT_CA_FILE", flag="--tls-client-ca", metavar="FILE",
        help="require client certificates signed by these PEM CA certificates")
    # Login under abuse (loginguard.py, hashpool.py): bounded hashing, throttled failures
    login_hash_workers: int = declare(
        env="MYSERVICE_LOGIN_HASH_WORKERS", factory=default_login_hash_workers, minimum=1,
        default_text="cores − 1",
        help="password-hashing threads (64 MiB each while they hash): usable cores (CPU affinity, cgroup "
             "limit) minus one, 1..4, unless set")
    login_hash_nice: int = declare(
        10, env="MYSERVICE_LOGIN_HASH_NICE", minimum=0, maximum=19,
        help="nice value of the hashing threads: the event loop's calls come first (0: same)")
    login_hash_process: bool = declare(
        True, env="MYSERVICE_LOGIN_HASH_PROCESS",
        help="compute each hash in a child process of its own session at the hashing nice value (one per "
             "hashing thread), so that the nice value also holds against other processes under Linux's "
             "autogroup scheduling; false: on the hashing threads themselves")
    login_queue: int = declare(
        1000, env="MYSERVICE_LOGIN_QUEUE", minimum=0,
        help="Logins that may wait for a hashing thread, served in a fair order (each holds only its "
             "request, at most 2 KiB of credentials); beyond: RESOURCE_EXHAUSTED at once")
    login_queue_max_wait: float = declare(
        10.0, env="MYSERVICE_LOGIN_QUEUE_MAX_WAIT_SECONDS", positive=True, unit="seconds",
        help="how long a Login may wait for a hashing thread before it is refused")
    login_cache_seconds: float = declare(
        300.0, env="MYSERVICE_LOGIN_CACHE_SECONDS", minimum=0, zero="off", unit="seconds",
        help="a Login whose password passed a real check this recently (same user, same stored "
             "hash) is answered without hashing again (recentlogins.py)")
    login_user_failure_burst: int = declare(
        10, env="MYSERVICE_LOGIN_USER_FAILURE_BURST", minimum=0, zero="off",
        help="failed Logins for one username before they are slowed down")
    login_user_failures_per_minute: float = declare(
        6.0, env="MYSERVICE_LOGIN_USER_FAILURES_PER_MINUTE", positive=True,
        help="failed Logins for one username forgiven per minute")
    login_peer_failure_burst: int = declare(
        30, env="MYSERVICE_LOGIN_PEER_FAILURE_BURST", minimum=0, zero="off",
        help="failed Logins from one client address before they are slowed down")
    login_peer_failures_per_minute: float = declare(
        60.0, env="MYSERVICE_LOGIN_PEER_FAILURES_PER_MINUTE", positive=True,
        help="failed Logins from one client address forgiven per minute")
    trusted_proxies: tuple = declare(
        (), env="MYSERVICE_TRUSTED_PROXIES", parse=clientaddress.parse_networks, default_text="none",
        help="CIDRs of proxies whose x-forwarded-for names the client address Login's limits count "
             "(a peer on a Unix socket, the gateway's own front, is always trusted)")


def from_env(env: Mapping[str, str] | None = None, *, dev_user: bool = False, **flags: Any) -> GatewaySettings:
    """Settings from MYSERVICE_* variables; `flags` (by field name) win when not None.
    `dev_user`: the entry point allows the development user (`myservice up` without
    a users file)."""
    parsed = settings.parse(GatewaySettings, os.environ if env is None else env, flags=flags)
    parsed = with_jwt_key(parsed)
    if parsed.dev_user and not dev_user:
        # Refused rather than ignored: whoever sets it expects a user that will not be there.
        raise SettingsError("MYSERVICE_DEV_USER: the development user exists only in `myservice up` "
                            "without MYSERVICE_USERS_FILE")
    parsed = dataclasses.replace(parsed, dev_user=dev_user)
    check_users(parsed)
    check_tls(parsed)
    if parsed.instance_command and parsed.backend != "local":
        raise SettingsError("MYSERVICE_INSTANCE_COMMAND (--instance-command) is for the local backend: "
                            "on Kubernetes the instance is the chart's instance.image")
    return parsed


def with_jwt_key(parsed: GatewaySettings) -> GatewaySettings:
    """The signing key: from MYSERVICE_JWT_KEY_FILE, else MYSERVICE_JWT_KEY, else a
    fresh random one (tokens then die with the process: fine for local mode)."""
    key = parsed.jwt_key
    if parsed.jwt_key_file:
        try:
            with open(parsed.jwt_key_file, "rb") as f:
                key = f.read().strip()
        except OSError as e:
            raise SettingsError(
                f"MYSERVICE_JWT_KEY_FILE: cannot read {parsed.jwt_key_file}: {e.strerror}") from None
    elif not key:
        key = secrets.token_bytes(MIN_KEY_BYTES)
        while b"\0" in key:  # drawn again: HAProxy's jwt_verify (the front) cannot take a NUL
            key = secrets.token_bytes(MIN_KEY_BYTES)
        return dataclasses.replace(parsed, jwt_key=key, jwt_key_generated=True)
    if len(key) < MIN_KEY_BYTES:
        raise SettingsError(f"the JWT key must be at least {MIN_KEY_BYTES} bytes, got {len(key)}")
    return dataclasses.replace(parsed, jwt_key=key, jwt_key_generated=False)


def check_users(parsed: GatewaySettings) -> None:
    if not parsed.dev_user and not parsed.users_file:
        raise SettingsError("no users: set MYSERVICE_USERS_FILE "
                            "(the development user exists only in `myservice up` without one)")


def check_tls(parsed: GatewaySettings) -> None:
    """A certificate needs its key and the other way round; a client CA needs both."""
    if bool(parsed.tls_cert_file) != bool(parsed.tls_key_file):
        given, missing = (("MYSERVICE_TLS_CERT_FILE (--tls-cert)", "MYSERVICE_TLS_KEY_FILE (--tls-key)")
                          if parsed.tls_cert_file else
                          ("MYSERVICE_TLS_KEY_FILE (--tls-key)", "MYSERVICE_TLS_CERT_FILE (--tls-cert)"))
        raise SettingsError(f"{given} is set but {missing} is not: TLS needs both")
    if parsed.tls_client_ca_file and not parsed.tls_cert_file:
        raise SettingsError("MYSERVICE_TLS_CLIENT_CA_FILE (--tls-client-ca) needs TLS: "
                            "set MYSERVICE_TLS_CERT_FILE and MYSERVICE_TLS_KEY_FILE too")
