"""The gateway's one settings object, built from environment and flags at the
entry point only. Every key is documented in README.md and helm values.yaml."""
from __future__ import annotations

import dataclasses
import os
import secrets
from collections.abc import Mapping

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


class SettingsError(ValueError):
    """A configuration value is missing or invalid; the message says which."""


@dataclasses.dataclass(frozen=True)
class GatewaySettings:
    host: str = "0.0.0.0"
    port: int = 10000
    backend: str = "local"  # local | kubernetes
    # local backend
    max_instances: int = 16
    instance_start_timeout: float = 20.0
    warm_pool: int = 0  # idle instances kept started for new sessions, within max_instances (0: off)
    # sessions (both backends; on Kubernetes the limits are the operator's settings)
    max_sessions_per_user: int = 10  # 0: no per-user limit
    ended_sessions_remembered: int = 100_000  # sessions whose end is remembered ("has ended" at once)
    session_idle_timeout: float = 900.0  # local: seconds without a call before an instance ends (0: off)
    session_max_lifetime: float = 86400.0  # local: seconds an instance may live at most (0: off)
    # auth
    jwt_key: bytes = b""
    jwt_key_generated: bool = False
    jwt_issuer: str = "myservice-gateway"
    jwt_audience: str = "myservice"
    token_ttl_seconds: int = 3600
    users_file: str | None = None
    dev_user: bool = False
    # Prometheus /metrics (0: not served)
    metrics_port: int = 0
    metrics_host: str = "127.0.0.1"
    # kubernetes backend
    namespace: str = "default"
    session_ready_timeout: float = 120.0
    # TLS (tls.py): plaintext unless a certificate and key are given
    tls_cert_file: str | None = None
    tls_key_file: str | None = None
    tls_client_ca_file: str | None = None  # set: clients must present a certificate signed by it
    # Login under abuse (loginguard.py, hashpool.py): bounded hashing, throttled failures
    login_hash_workers: int = dataclasses.field(default_factory=default_login_hash_workers)
    login_hash_nice: int = 10  # nice value of the hashing threads: the event loop's calls come first (0: same)
    login_queue: int = 4  # Logins that may wait for a hashing thread; beyond: RESOURCE_EXHAUSTED at once
    login_queue_max_wait: float = 5.0  # seconds a Login may wait for a hashing thread before it is refused
    login_peer_concurrency: int = 2  # hashes one client address may have queued or running (0: no cap)
    login_user_failure_burst: int = 10  # failed Logins for one username before they are slowed down (0: off)
    login_user_failures_per_minute: float = 6.0  # ... and how many of them are forgiven per minute
    login_peer_failure_burst: int = 30  # the same per client address (0: off)
    login_peer_failures_per_minute: float = 60.0


def _int(env: Mapping[str, str], key: str, default: int, minimum: int = 0) -> int:
    raw = env.get(key)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{key} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise SettingsError(f"{key} must be >= {minimum}, got {value}")
    return value


def _float(env: Mapping[str, str], key: str, default: float, *, zero_means_off: bool = False) -> float:
    """A positive number of seconds; with zero_means_off, 0 is allowed too (off)."""
    raw = env.get(key)
    if raw is None or raw == "":
        return default
    what = "a number of seconds (0: off)" if zero_means_off else "a number"
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{key} must be {what}, got {raw!r}") from None
    if value < 0 or (value == 0 and not zero_means_off):
        raise SettingsError(f"{key} must be {'>= 0 (0: off)' if zero_means_off else '> 0'}, got {value:g}")
    return value


def _bool(env: Mapping[str, str], key: str, default: bool) -> bool:
    raw = env.get(key)
    if raw is None or raw == "":
        return default
    if raw.lower() in ("1", "true", "yes", "on"):
        return True
    if raw.lower() in ("0", "false", "no", "off"):
        return False
    raise SettingsError(f"{key} must be true or false, got {raw!r}")


def load_jwt_key(env: Mapping[str, str]) -> tuple[bytes, bool]:
    """The signing key: from MYSERVICE_JWT_KEY_FILE, else MYSERVICE_JWT_KEY, else a
    fresh random one (tokens then die with the process: fine for local mode)."""
    path = env.get("MYSERVICE_JWT_KEY_FILE")
    if path:
        try:
            with open(path, "rb") as f:
                key = f.read().strip()
        except OSError as e:
            raise SettingsError(f"MYSERVICE_JWT_KEY_FILE: cannot read {path}: {e.strerror}") from None
    elif env.get("MYSERVICE_JWT_KEY"):
        key = env["MYSERVICE_JWT_KEY"].encode()
    else:
        return secrets.token_bytes(MIN_KEY_BYTES), True
    if len(key) < MIN_KEY_BYTES:
        raise SettingsError(f"the JWT key must be at least {MIN_KEY_BYTES} bytes, got {len(key)}")
    return key, False


def from_env(env: Mapping[str, str] | None = None, **overrides: object) -> GatewaySettings:
    """Settings from MYSERVICE_* variables; `overrides` (from flags) win when not None."""
    env = os.environ if env is None else env
    backend = env.get("MYSERVICE_BACKEND", "local")
    if backend not in ("local", "kubernetes"):
        raise SettingsError(f"MYSERVICE_BACKEND must be 'local' or 'kubernetes', got {backend!r}")
    key, generated = load_jwt_key(env)
    values: dict[str, object] = dict(
        host=env.get("MYSERVICE_HOST", "0.0.0.0"),
        port=_int(env, "MYSERVICE_PORT", 10000),
        backend=backend,
        max_instances=_int(env, "MYSERVICE_MAX_INSTANCES", 16),
        instance_start_timeout=_float(env, "MYSERVICE_INSTANCE_START_TIMEOUT", 20.0),
        warm_pool=_int(env, "MYSERVICE_WARM_POOL", GatewaySettings.warm_pool),
        max_sessions_per_user=_int(env, "MYSERVICE_MAX_SESSIONS_PER_USER", GatewaySettings.max_sessions_per_user),
        ended_sessions_remembered=_int(env, "MYSERVICE_ENDED_SESSIONS_REMEMBERED",
                                       GatewaySettings.ended_sessions_remembered, minimum=1),
        session_idle_timeout=_float(env, "MYSERVICE_SESSION_IDLE_TIMEOUT_SECONDS",
                                     GatewaySettings.session_idle_timeout, zero_means_off=True),
        session_max_lifetime=_float(env, "MYSERVICE_SESSION_MAX_LIFETIME_SECONDS",
                                     GatewaySettings.session_max_lifetime, zero_means_off=True),
        jwt_key=key,
        jwt_key_generated=generated,
        jwt_issuer=env.get("MYSERVICE_JWT_ISSUER", "myservice-gateway"),
        jwt_audience=env.get("MYSERVICE_JWT_AUDIENCE", "myservice"),
        token_ttl_seconds=_int(env, "MYSERVICE_TOKEN_TTL_SECONDS", 3600, minimum=1),
        users_file=env.get("MYSERVICE_USERS_FILE") or None,
        # Only `myservice up` turns the development user on (cli.py), and only without a users file.
        dev_user=False,
        metrics_port=_int(env, "MYSERVICE_METRICS_PORT", GatewaySettings.metrics_port),
        metrics_host=env.get("MYSERVICE_METRICS_HOST", GatewaySettings.metrics_host),
        namespace=env.get("MYSERVICE_NAMESPACE", "default"),
        session_ready_timeout=_float(env, "MYSERVICE_SESSION_READY_TIMEOUT", 120.0),
        tls_cert_file=env.get("MYSERVICE_TLS_CERT_FILE") or None,
        tls_key_file=env.get("MYSERVICE_TLS_KEY_FILE") or None,
        tls_client_ca_file=env.get("MYSERVICE_TLS_CLIENT_CA_FILE") or None,
        login_hash_workers=_int(env, "MYSERVICE_LOGIN_HASH_WORKERS", default_login_hash_workers(), minimum=1),
        login_hash_nice=_int(env, "MYSERVICE_LOGIN_HASH_NICE", GatewaySettings.login_hash_nice),
        login_queue=_int(env, "MYSERVICE_LOGIN_QUEUE", GatewaySettings.login_queue),
        login_queue_max_wait=_float(env, "MYSERVICE_LOGIN_QUEUE_MAX_WAIT_SECONDS", GatewaySettings.login_queue_max_wait),
        login_peer_concurrency=_int(env, "MYSERVICE_LOGIN_PEER_CONCURRENCY", GatewaySettings.login_peer_concurrency),
        login_user_failure_burst=_int(env, "MYSERVICE_LOGIN_USER_FAILURE_BURST",
                                      GatewaySettings.login_user_failure_burst),
        login_user_failures_per_minute=_float(env, "MYSERVICE_LOGIN_USER_FAILURES_PER_MINUTE",
                                              GatewaySettings.login_user_failures_per_minute),
        login_peer_failure_burst=_int(env, "MYSERVICE_LOGIN_PEER_FAILURE_BURST",
                                      GatewaySettings.login_peer_failure_burst),
        login_peer_failures_per_minute=_float(env, "MYSERVICE_LOGIN_PEER_FAILURES_PER_MINUTE",
                                              GatewaySettings.login_peer_failures_per_minute),
    )
    values.update({k: v for k, v in overrides.items() if v is not None})
    settings = GatewaySettings(**values)  # type: ignore[arg-type]
    if not 0 <= settings.port <= 65535:
        raise SettingsError(f"port must be 0..65535, got {settings.port}")
    if not 0 <= settings.metrics_port <= 65535:
        raise SettingsError(f"MYSERVICE_METRICS_PORT must be 0..65535 (0: off), got {settings.metrics_port}")
    if settings.max_instances < 0:
        raise SettingsError(f"max instances must be >= 0, got {settings.max_instances}")
    if settings.warm_pool < 0:
        raise SettingsError(f"warm pool must be >= 0 (0: off), got {settings.warm_pool}")
    for name in ("max_sessions_per_user", "session_idle_timeout", "session_max_lifetime"):
        if getattr(settings, name) < 0:
            raise SettingsError(f"{name.replace('_', ' ')} must be >= 0 (0: off), got {getattr(settings, name):g}")
    if _bool(env, "MYSERVICE_DEV_USER", False) and not settings.dev_user:
        # Refused rather than ignored: whoever sets it expects a user that will not be there.
        raise SettingsError("MYSERVICE_DEV_USER: the development user exists only in `myservice up` "
                            "without MYSERVICE_USERS_FILE")
    if not settings.dev_user and not settings.users_file:
        raise SettingsError("no users: set MYSERVICE_USERS_FILE "
                            "(the development user exists only in `myservice up` without one)")
    if settings.login_hash_workers < 1 or not 0 <= settings.login_hash_nice <= 19:
        raise SettingsError(f"login hash workers must be >= 1 and their nice value 0..19, got "
                            f"{settings.login_hash_workers} and {settings.login_hash_nice}")
    if bool(settings.tls_cert_file) != bool(settings.tls_key_file):
        given, missing = (("MYSERVICE_TLS_CERT_FILE (--tls-cert)", "MYSERVICE_TLS_KEY_FILE (--tls-key)")
                          if settings.tls_cert_file else
                          ("MYSERVICE_TLS_KEY_FILE (--tls-key)", "MYSERVICE_TLS_CERT_FILE (--tls-cert)"))
        raise SettingsError(f"{given} is set but {missing} is not: TLS needs both")
    if settings.tls_client_ca_file and not settings.tls_cert_file:
        raise SettingsError("MYSERVICE_TLS_CLIENT_CA_FILE (--tls-client-ca) needs TLS: "
                            "set MYSERVICE_TLS_CERT_FILE and MYSERVICE_TLS_KEY_FILE too")
    return settings
