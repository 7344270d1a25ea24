"""The gateway's one settings object, built from environment and flags at the
entry point only. Every key is documented in README.md and helm values.yaml."""
from __future__ import annotations

import dataclasses
import os
import secrets
from collections.abc import Mapping

MIN_KEY_BYTES = 32


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
    # auth
    jwt_key: bytes = b""
    jwt_key_generated: bool = False
    jwt_issuer: str = "myservice-gateway"
    jwt_audience: str = "myservice"
    token_ttl_seconds: int = 3600
    users_file: str | None = None
    dev_user: bool = False
    # kubernetes backend
    namespace: str = "default"
    session_ready_timeout: float = 120.0
    # TLS (tls.py): plaintext unless a certificate and key are given
    tls_cert_file: str | None = None
    tls_key_file: str | None = None
    tls_client_ca_file: str | None = None  # set: clients must present a certificate signed by it


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


def _float(env: Mapping[str, str], key: str, default: float) -> float:
    raw = env.get(key)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{key} must be a number, got {raw!r}") from None
    if value <= 0:
        raise SettingsError(f"{key} must be > 0, got {value}")
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
        jwt_key=key,
        jwt_key_generated=generated,
        jwt_issuer=env.get("MYSERVICE_JWT_ISSUER", "myservice-gateway"),
        jwt_audience=env.get("MYSERVICE_JWT_AUDIENCE", "myservice"),
        token_ttl_seconds=_int(env, "MYSERVICE_TOKEN_TTL_SECONDS", 3600, minimum=1),
        users_file=env.get("MYSERVICE_USERS_FILE") or None,
        dev_user=_bool(env, "MYSERVICE_DEV_USER", backend == "local"),
        namespace=env.get("MYSERVICE_NAMESPACE", "default"),
        session_ready_timeout=_float(env, "MYSERVICE_SESSION_READY_TIMEOUT", 120.0),
        tls_cert_file=env.get("MYSERVICE_TLS_CERT_FILE") or None,
        tls_key_file=env.get("MYSERVICE_TLS_KEY_FILE") or None,
        tls_client_ca_file=env.get("MYSERVICE_TLS_CLIENT_CA_FILE") or None,
    )
    values.update({k: v for k, v in overrides.items() if v is not None})
    settings = GatewaySettings(**values)  # type: ignore[arg-type]
    if not 0 <= settings.port <= 65535:
        raise SettingsError(f"port must be 0..65535, got {settings.port}")
    if settings.max_instances < 0:
        raise SettingsError(f"max instances must be >= 0, got {settings.max_instances}")
    if not settings.dev_user and not settings.users_file:
        raise SettingsError("no users: set MYSERVICE_USERS_FILE, or MYSERVICE_DEV_USER=true for local development")
    if bool(settings.tls_cert_file) != bool(settings.tls_key_file):
        given, missing = (("MYSERVICE_TLS_CERT_FILE (--tls-cert)", "MYSERVICE_TLS_KEY_FILE (--tls-key)")
                          if settings.tls_cert_file else
                          ("MYSERVICE_TLS_KEY_FILE (--tls-key)", "MYSERVICE_TLS_CERT_FILE (--tls-cert)"))
        raise SettingsError(f"{given} is set but {missing} is not: TLS needs both")
    if settings.tls_client_ca_file and not settings.tls_cert_file:
        raise SettingsError("MYSERVICE_TLS_CLIENT_CA_FILE (--tls-client-ca) needs TLS: "
                            "set MYSERVICE_TLS_CERT_FILE and MYSERVICE_TLS_KEY_FILE too")
    return settings
