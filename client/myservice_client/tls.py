"""The client's side of TLS: which CA to trust, which certificate to present,
which name to check; and the channel that follows from it."""
from __future__ import annotations

import dataclasses

import grpc


class ClientTlsError(ValueError):
    """A TLS option names a file that cannot be used; the message names the option."""


@dataclasses.dataclass(frozen=True)
class ClientTls:
    root_certificates: bytes | None = None  # None: the system's trusted roots
    private_key: bytes | None = None
    certificate_chain: bytes | None = None
    server_name: str | None = None  # checked against the server's certificate instead of the dialled host


def _read(path: str, option: str) -> bytes:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise ClientTlsError(f"{option}: cannot read {path}: {e.strerror}") from None
    if b"-----BEGIN " not in data:
        raise ClientTlsError(f"{option}: {path} is not a PEM file")
    return data


def from_options(ca: str | None = None, cert: str | None = None, key: str | None = None,
                 server_name: str | None = None) -> ClientTls | None:
    """None (plaintext) unless some TLS option is given."""
    if not (ca or cert or key or server_name):
        return None
    if bool(cert) != bool(key):
        raise ClientTlsError("--tls-cert and --tls-key go together (the client certificate and its key)")
    return ClientTls(
        root_certificates=_read(ca, "--tls-ca") if ca else None,
        private_key=_read(key, "--tls-key") if key else None,
        certificate_chain=_read(cert, "--tls-cert") if cert else None,
        server_name=server_name or None)


def channel_options(tls: ClientTls | None) -> list[tuple[str, str]]:
    if tls is None or not tls.server_name:
        return []
    return [("grpc.ssl_target_name_override", tls.server_name)]


def credentials(tls: ClientTls) -> grpc.ChannelCredentials:
    return grpc.ssl_channel_credentials(root_certificates=tls.root_certificates, private_key=tls.private_key,
                                        certificate_chain=tls.certificate_chain)


def open_channel(address: str, tls: ClientTls | None) -> grpc.Channel:
    """A blocking channel: plaintext when `tls` is None."""
    if tls is None:
        return grpc.insecure_channel(address)
    return grpc.secure_channel(address, credentials(tls), options=channel_options(tls))
