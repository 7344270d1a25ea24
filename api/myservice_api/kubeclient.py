"""How gateway and operator reach the Kubernetes API: credentials loaded once per
process (in-cluster service account, else kubeconfig), and one factory of API
clients made from them. An adapter: with reflector.py, the only modules of the
API package that import the kubernetes client.

The operator's kopf watches log in with credentials() (handlers.py), so kopf
and the sync client share the one load too.
"""
from __future__ import annotations

import copy
import dataclasses
import threading

import kubernetes

_lock = threading.Lock()
_loaded: kubernetes.client.Configuration | None = None


def configuration() -> kubernetes.client.Configuration:
    """A copy of the process's credentials, loaded at the first call. In a pod the
    service account's token is re-read when it rotates (the client's refresh hook)."""
    global _loaded
    with _lock:
        if _loaded is None:
            loaded = kubernetes.client.Configuration()
            try:
                kubernetes.config.load_incluster_config(client_configuration=loaded)
            except kubernetes.config.ConfigException:
                kubernetes.config.load_kube_config(client_configuration=loaded)
            _loaded = loaded
        return copy.deepcopy(_loaded)


def use(loaded: kubernetes.client.Configuration | None) -> None:
    """Set the process's credentials (tests: a test API server), or forget them (None)."""
    global _loaded
    with _lock:
        _loaded = loaded


def api_client(*, pool_size: int = 0) -> kubernetes.client.ApiClient:
    """A client on the process's credentials; pool_size: keep at least this many
    connections (one per thread that calls at once, so none waits for a handshake)."""
    config = configuration()
    config.connection_pool_maxsize = max(config.connection_pool_maxsize or 0, pool_size)
    return kubernetes.client.ApiClient(config)


@dataclasses.dataclass(frozen=True)
class Credentials:
    """What a client of its own (kopf's) needs to log in as this process does."""
    server: str
    ca_path: str | None
    insecure: bool
    username: str | None
    password: str | None
    scheme: str | None
    token: str | None
    certificate_path: str | None
    private_key_path: str | None


def credentials() -> Credentials:
    """The process's credentials as plain values, the token fresh (it may have rotated)."""
    config = configuration()
    # The client stores a bearer token under 'BearerToken' (>= 36.0.1) or 'authorization';
    # reading it runs the refresh hook (service account token rotation, exec plugins).
    header = config.get_api_key_with_prefix("BearerToken") or config.get_api_key_with_prefix("authorization")
    scheme, token = split_authorization(header)
    return Credentials(server=config.host, ca_path=config.ssl_ca_cert, insecure=not config.verify_ssl,
                       username=config.username or None, password=config.password or None,
                       scheme=scheme, token=token,
                       certificate_path=config.cert_file, private_key_path=config.key_file)


def split_authorization(header: str | None) -> tuple[str | None, str | None]:
    """'Bearer abc' -> ('Bearer', 'abc'); 'abc' -> (None, 'abc'); nothing -> (None, None)."""
    parts = header.split(" ", 1) if header else []
    if len(parts) == 2:
        return parts[0], parts[1]
    return None, (parts[0] if parts else None)
