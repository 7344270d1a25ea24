"""The files HAProxy runs on, in one directory (the child's private one, or the one
shared with the front container): their names, the configuration for them, and their
writing. The supervisor (child) and the sidecar (apart) differ only in the binds."""
from __future__ import annotations

import os
import resource

from . import config as front_config
from .fronttls import FrontTls, write_private

CONFIG_NAME = "haproxy.cfg"
MAP_NAME = "sessions.map"
RUNTIME_SOCKET_NAME = "runtime.sock"
GATEWAY_SOCKET_NAME = "gateway.sock"


class HaproxyFiles:
    """haproxy.cfg, the sessions map and the runtime socket in `directory`; HAProxy
    listens on `bind` (and `metrics_bind`), the Python gateway on `gateway_socket`."""

    def __init__(self, directory: str, *, bind: str, metrics_bind: str | None, gateway_socket: str,
                 tls: FrontTls | None, jwt_key: bytes, issuer: str, audience: str, methods: tuple[str, ...],
                 trusted_proxies: tuple[str, ...], proxy_protocol: bool) -> None:
        self.directory = directory
        self.config_file = os.path.join(directory, CONFIG_NAME)
        self.map_file = os.path.join(directory, MAP_NAME)
        self.runtime_socket = os.path.join(directory, RUNTIME_SOCKET_NAME)
        self.tls = tls
        self.config = front_config.FrontConfig(
            bind=bind, gateway_socket=gateway_socket, runtime_socket=self.runtime_socket, map_file=self.map_file,
            jwt_key=jwt_key, issuer=issuer, audience=audience, methods=methods,
            tls_cert_file=tls.cert_file if tls else None, tls_client_ca_file=tls.client_ca_file if tls else None,
            trusted_proxies=trusted_proxies, proxy_protocol=proxy_protocol, metrics_bind=metrics_bind,
            max_connections=front_config.connection_limit(resource.getrlimit(resource.RLIMIT_NOFILE)[1]))

    def write(self) -> None:
        """The TLS files first, then haproxy.cfg (a front container waiting for it finds the
        rest in place), and an empty map when there is none (the runtime API fills it)."""
        if self.tls:
            self.tls.write_files()
        write_private(self.config_file, front_config.render(self.config))
        if not os.path.exists(self.map_file):
            write_private(self.map_file, "")
