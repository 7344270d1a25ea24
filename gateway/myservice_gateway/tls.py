"""TLS for the gateway: load and check the certificate, key and client CA files,
and re-read them when they change, without a restart.

gRPC asks `CertificateReloader` before every new TLS handshake (never per call:
calls on an open connection do not handshake again). It compares the files'
stat signatures (two or three `os.stat` calls) and reads and checks the files only
when a signature has changed. A Secret mounted as a directory is updated by the
kubelet with one atomic symlink swap, so certificate and key change together;
a pair caught half-written, or that does not check out, keeps the certificate
in use, and the files are read again when they change again.

The checks use the standard library's `ssl` (OpenSSL), so a bad PEM or a key
that does not match its certificate is a configuration error at start-up,
naming the setting, instead of a failed handshake for every client later.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import ssl
import threading

import grpc

from .settings import SettingsError

log = logging.getLogger("myservice.gateway.tls")

# The settings, as a person would look them up: the variable and its flag.
CERT_SETTING = "MYSERVICE_TLS_CERT_FILE (--tls-cert)"
KEY_SETTING = "MYSERVICE_TLS_KEY_FILE (--tls-key)"
CLIENT_CA_SETTING = "MYSERVICE_TLS_CLIENT_CA_FILE (--tls-client-ca)"

# One file's identity and version: (device, inode, size, mtime in ns). os.stat
# follows symlinks, so the kubelet's swap of a Secret volume changes the inode.
FileSignature = tuple[int, int, int, int]


class TlsConfigError(SettingsError):
    """A TLS file is missing, unreadable or not what its setting says; the message names the setting."""


@dataclasses.dataclass(frozen=True)
class TlsFiles:
    cert_file: str
    key_file: str
    client_ca_file: str | None = None  # set: clients must present a certificate signed by it

    @property
    def paths(self) -> tuple[str, ...]:
        return tuple(path for _, path in self.named_paths)

    @property
    def named_paths(self) -> tuple[tuple[str, str], ...]:
        """(setting, path) of each file in use."""
        named = ((CERT_SETTING, self.cert_file), (KEY_SETTING, self.key_file))
        return named + (((CLIENT_CA_SETTING, self.client_ca_file),) if self.client_ca_file else ())


@dataclasses.dataclass(frozen=True)
class TlsMaterial:
    """The files' contents, checked, and the signatures they were read at."""

    cert_chain: bytes
    private_key: bytes
    client_ca: bytes | None
    signatures: tuple[FileSignature, ...]


def signatures(files: TlsFiles) -> tuple[FileSignature, ...]:
    """The cheap test for "has anything changed"; TlsConfigError names a file that is gone."""
    result = []
    for setting, path in files.named_paths:
        try:
            st = os.stat(path)
        except OSError as e:
            raise TlsConfigError(f"{setting}: cannot read {path}: {e.strerror}") from None
        result.append((st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns))
    return tuple(result)


def _read(path: str, setting: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise TlsConfigError(f"{setting}: cannot read {path}: {e.strerror}") from None


def _check_certificates(data: bytes, path: str, setting: str) -> None:
    """`data` holds one or more PEM certificates (OpenSSL parses them as trust anchors)."""
    text = data.decode("ascii", errors="replace")
    if "-----BEGIN CERTIFICATE-----" not in text:
        raise TlsConfigError(f"{setting}: {path} holds no PEM certificate (-----BEGIN CERTIFICATE-----)")
    try:
        ssl.create_default_context(cadata=text)
    except (ssl.SSLError, ValueError) as e:
        raise TlsConfigError(f"{setting}: {path} is not a valid PEM certificate ({e})") from None


def _check_private_key(data: bytes, path: str) -> None:
    text = data.decode("ascii", errors="replace")
    if "-----BEGIN ENCRYPTED PRIVATE KEY-----" in text or "Proc-Type: 4,ENCRYPTED" in text:  # PKCS#8, or PEM's own
        raise TlsConfigError(f"{KEY_SETTING}: {path} is an encrypted private key; give an unencrypted one")
    if "PRIVATE KEY-----" not in text:
        raise TlsConfigError(f"{KEY_SETTING}: {path} holds no PEM private key (-----BEGIN ... PRIVATE KEY-----)")


def _no_password() -> bytes:
    # OpenSSL would otherwise prompt on the terminal for an encrypted key.
    raise TlsConfigError(f"{KEY_SETTING}: the private key is encrypted; give an unencrypted one")


def _check_pair(files: TlsFiles) -> None:
    """The key parses and belongs to the first certificate of the chain."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(files.cert_file, files.key_file, password=_no_password)
    except ssl.SSLError as e:
        raise TlsConfigError(
            f"{KEY_SETTING}: {files.key_file} is not a valid private key for the certificate in "
            f"{files.cert_file} ({e.reason or e})") from None


def load(files: TlsFiles) -> TlsMaterial:
    """Read and check every file; TlsConfigError names the setting at fault. Raises
    TlsConfigError too if the files changed while being read (read them again)."""
    before = signatures(files)
    cert_chain = _read(files.cert_file, CERT_SETTING)
    private_key = _read(files.key_file, KEY_SETTING)
    client_ca = _read(files.client_ca_file, CLIENT_CA_SETTING) if files.client_ca_file else None
    _check_certificates(cert_chain, files.cert_file, CERT_SETTING)
    _check_private_key(private_key, files.key_file)
    if client_ca is not None:
        _check_certificates(client_ca, files.client_ca_file or "", CLIENT_CA_SETTING)
    _check_pair(files)  # by path: the ssl module reads no certificate from memory
    if signatures(files) != before:
        raise TlsConfigError("the TLS files changed while they were being read")
    return TlsMaterial(cert_chain, private_key, client_ca, before)


def certificate_configuration(material: TlsMaterial) -> grpc.ServerCertificateConfiguration:
    return grpc.ssl_server_certificate_configuration(
        [(material.private_key, material.cert_chain)], root_certificates=material.client_ca)


class CertificateReloader:
    """The `certificate_configuration_fetcher` of grpc.dynamic_ssl_server_credentials:
    called on a gRPC thread before each new handshake; returns a new configuration
    when the files changed and check out, else None (keep the current one).

    `check()` is the same decision without gRPC: the HAProxy front asks it once a
    period (front/fronttls.py) and hands the new material to HAProxy."""

    def __init__(self, files: TlsFiles, loaded: TlsMaterial) -> None:
        self._files = files
        self._seen: tuple[FileSignature, ...] | None = loaded.signatures
        self._lock = threading.Lock()  # gRPC may handshake on several threads at once
        self._last_problem = ""
        self.reloads = 0  # configurations handed to gRPC after the first

    def __call__(self) -> grpc.ServerCertificateConfiguration | None:
        material = self.check()
        return None if material is None else certificate_configuration(material)

    def check(self) -> TlsMaterial | None:
        """The files' new content when they changed and check out, else None."""
        try:
            now = signatures(self._files)
        except TlsConfigError as e:
            self._report(str(e))
            return None
        if now == self._seen:
            return None
        with self._lock:
            if now == self._seen:
                return None
            try:
                material = load(self._files)
            except TlsConfigError as e:
                # A half-written pair settles with the next write, which changes a
                # signature again; until then no file is re-read per handshake.
                self._seen = now
                self._report(str(e))
                return None
            except Exception as e:  # noqa: BLE001 - never let a reload error reach gRPC's thread
                self._seen = now
                self._report(f"{type(e).__name__}: {e}")
                return None
            self._seen = material.signatures
            self._last_problem = ""
            self.reloads += 1
        log.info("TLS certificate reloaded from %s", ", ".join(self._files.paths))
        return material

    def _report(self, problem: str) -> None:
        if problem != self._last_problem:  # once per distinct problem, not once per handshake
            self._last_problem = problem
            log.warning("TLS files not reloaded, the current certificate stays in use: %s", problem)


def server_credentials(files: TlsFiles) -> grpc.ServerCredentials:
    """Credentials for add_secure_port that follow the files; raises TlsConfigError
    at once if they do not check out now."""
    material = load(files)
    return grpc.dynamic_ssl_server_credentials(
        certificate_configuration(material), CertificateReloader(files, material),
        require_client_authentication=files.client_ca_file is not None)
