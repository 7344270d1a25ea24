"""TLS at the HAProxy front (front/fronttls.py): the bind as rendered, HAProxy's private
combined PEM (never in an argument or a log), and a rotation given to the running HAProxy
through its runtime API. The handshakes themselves are test_tls.py's, on both fronts."""
from __future__ import annotations

import logging
import os
import shutil
import stat
import subprocess

import pytest
from cryptography import x509

from myservice_gateway import tls
from myservice_gateway.front import config, fronttls, runtime

from .test_front_config import CONFIG, KEY
from .test_tls import Issued, issue, login, logs_in_once_rotated, make_ca, secure_channel, tls_gateway, write_pem

HAPROXY = shutil.which("haproxy")
needs_haproxy = pytest.mark.skipif(
    HAPROXY is None, reason="haproxy is not installed (make test installs it: apt-get install -y haproxy)")

TLS_CONFIG = config.FrontConfig(**{**CONFIG.__dict__, "tls_cert_file": "/run/f/front.pem"})
MTLS_CONFIG = config.FrontConfig(**{**TLS_CONFIG.__dict__, "tls_client_ca_file": "/run/f/client-ca.pem"})


def test_the_bind_serves_tls_only_when_given_a_certificate():
    assert config.bind_line(CONFIG) == "    bind 127.0.0.1:10000 proto h2"
    assert config.bind_line(TLS_CONFIG) == "    bind 127.0.0.1:10000 ssl crt /run/f/front.pem alpn h2 proto h2"
    assert config.bind_line(MTLS_CONFIG) == (
        "    bind 127.0.0.1:10000 ssl crt /run/f/front.pem alpn h2 "
        "ca-file /run/f/client-ca.pem verify required proto h2")
    for rendered, bind in ((config.render(TLS_CONFIG), config.bind_line(TLS_CONFIG)),
                           (config.render(MTLS_CONFIG), config.bind_line(MTLS_CONFIG))):
        assert bind in rendered.splitlines()
        assert "    ssl-load-extra-files none" in rendered.splitlines()
    assert "ssl" not in config.render(CONFIG)


def test_pem_for_the_runtime_api_has_no_empty_line():
    # The payload of `set ssl ... <<` ends at the first empty line.
    assert fronttls.pem_text(b"-----BEGIN A-----\r\nAAA\r\n-----END A-----\r\n\r\n\n-----BEGIN B-----\nBB\n"
                             b"-----END B-----") == (
        "-----BEGIN A-----\nAAA\n-----END A-----\n-----BEGIN B-----\nBB\n-----END B-----\n")
    material = tls.TlsMaterial(b"CERT1\n\nCERT2\n", b"KEY\n", None, ())
    assert fronttls.combined_pem(material) == "CERT1\nCERT2\nKEY\n"


async def test_a_payload_haproxy_cannot_take_is_refused_before_sending(tmp_path):
    client = runtime.RuntimeClient(str(tmp_path / "nobody-listens.sock"))
    with pytest.raises(runtime.PayloadTooLarge, match=r"^set ssl cert /f.pem: 16000 bytes of PEM, more than "):
        await client.set_ssl("cert", "/f.pem", "x" * 16000)
    with pytest.raises(runtime.RuntimeApiError, match="nobody-listens.sock"):  # a fitting one is sent
        await client.set_ssl("cert", "/f.pem", "x" * 100)


@pytest.fixture
def files(tmp_path):
    from .test_tls import ServerFiles
    f = ServerFiles(tmp_path / "tls")
    f.directory.mkdir()
    return f


@pytest.fixture(scope="module")
def ca1() -> Issued:
    return make_ca("front CA 1")


@pytest.fixture(scope="module")
def ca2() -> Issued:
    return make_ca("front CA 2")


@needs_haproxy
async def test_haproxy_has_the_key_in_a_private_file_only(make_gateway, files, tmp_path, ca1, caplog):
    caplog.set_level(logging.DEBUG)
    server = issue(ca1, "gateway")
    files.write(server)
    clients = make_ca("clients")
    gw = await tls_gateway(make_gateway, files, client_ca=write_pem(tmp_path / "clients.pem", clients),
                           front="haproxy")
    front = gw.gateway.front
    combined = fronttls.combined_pem(tls.load(front.tls.files))
    with open(front.tls.cert_file) as f:
        assert f.read() == combined
    assert combined.startswith("-----BEGIN CERTIFICATE-----") and "PRIVATE KEY" in combined
    assert stat.S_IMODE(os.stat(front.tls.cert_file).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(front.tls.client_ca_file).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(front.directory).st_mode) == 0o700
    assert os.path.dirname(front.tls.cert_file) == front.directory
    key_body = server.key_pem.decode().splitlines()[1]
    pid = front.haproxy.process.pid
    for name in ("cmdline", "environ"):
        with open(f"/proc/{pid}/{name}", "rb") as f:
            seen = f.read()
        assert key_body.encode() not in seen and b"PRIVATE KEY" not in seen
    assert [r for r in caplog.records if key_body in r.getMessage() or "PRIVATE KEY" in r.getMessage()] == []
    # The Python gateway behind it is plain, on the front's private socket.
    assert front.gateway_address == f"unix:{front.gateway_socket}"


@needs_haproxy
async def test_a_rotation_reaches_haproxy_through_its_runtime_api(make_gateway, files, tmp_path, ca1, ca2, caplog):
    caplog.set_level(logging.INFO, logger="myservice.gateway.front")
    files.write(issue(ca1, "gateway"))
    gw = await tls_gateway(make_gateway, files, front="haproxy")
    front = gw.gateway.front
    pid = front.haproxy.process.pid
    rotated = issue(ca2, "gateway, rotated")
    files.write(rotated)
    assert (await logs_in_once_rotated(gw.gateway.port, ca2)).token
    answer = await front.haproxy.client.run(f"show ssl cert {front.tls.cert_file}")
    serial = f"{rotated.cert.serial_number:X}"
    assert f"\nSerial: {serial.zfill(len(serial) + len(serial) % 2)}\n" in answer, answer  # whole bytes
    assert front.haproxy.process.pid == pid and front.tls.commits == 1
    with open(front.tls.cert_file) as f:  # a restarted HAProxy would load the new one too
        assert x509.load_pem_x509_certificate(f.read().encode()).serial_number == rotated.cert.serial_number
    assert [r.getMessage() for r in caplog.records if "TLS" in r.getMessage()] == [
        "HAProxy serves the new TLS files to new connections (established ones keep theirs)"]


@needs_haproxy
async def test_a_restarted_haproxy_serves_the_rotated_certificate(make_gateway, files, ca1, ca2):
    import signal

    from .test_front import _restarted, until
    files.write(issue(ca1, "gateway"))
    gw = await tls_gateway(make_gateway, files, front="haproxy")
    front = gw.gateway.front
    files.write(issue(ca2, "gateway, rotated"))
    assert (await logs_in_once_rotated(gw.gateway.port, ca2)).token
    old = front.haproxy.process.pid
    os.kill(old, signal.SIGKILL)
    assert await until(lambda: _restarted(front, old), timeout=15)
    async with secure_channel(gw.gateway.port, ca2) as channel:
        assert (await login(channel, "after-restart")).token


@needs_haproxy
def test_haproxy_accepts_the_tls_configuration(tmp_path, ca1):
    from myservice_gateway.front import front
    server = issue(ca1, "gateway")
    pem = tmp_path / "front.pem"
    pem.write_text(server.cert_pem.decode() + server.key_pem.decode())
    write_pem(tmp_path / "ca.pem", ca1)
    (tmp_path / "m.map").write_text("")
    rendered = config.render(config.FrontConfig(
        bind="127.0.0.1:65000", gateway_socket=str(tmp_path / "g.sock"), runtime_socket=str(tmp_path / "r.sock"),
        map_file=str(tmp_path / "m.map"), jwt_key=KEY, issuer="i", audience="a",
        methods=front.forwarded_methods(("myservice.v1.MyService",)),
        tls_cert_file=str(pem), tls_client_ca_file=str(tmp_path / "ca.pem")))
    (tmp_path / "haproxy.cfg").write_text(rendered)
    checked = subprocess.run([HAPROXY, "-c", "-f", str(tmp_path / "haproxy.cfg")], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "WARNING" not in checked.stdout + checked.stderr


class FakeRuntime:
    """The runtime API as FrontTls sees it: set_ssl recorded, or refused as told."""

    def __init__(self):
        self.calls, self.refuse = [], {}

    async def set_ssl(self, kind, name, pem):
        if kind in self.refuse:
            raise self.refuse[kind]
        self.calls.append((kind, os.path.basename(name), pem))


async def test_a_rotation_haproxy_missed_is_given_again_and_a_too_large_cert_does_not_hold_back_the_ca(
        files, tmp_path, ca1, ca2, caplog):
    caplog.set_level(logging.INFO, logger="myservice.gateway.front")
    files.write(issue(ca1, "gateway"), ca1)
    front_dir = tmp_path / "front"
    front_dir.mkdir(mode=0o700)
    front_tls = fronttls.FrontTls.load(tls.TlsFiles(str(files.cert), str(files.key), str(files.ca)), str(front_dir))
    client = FakeRuntime()
    assert await front_tls.check(client) is False and client.calls == []  # nothing changed
    files.write(issue(ca2, "gateway, rotated"), ca2)
    client.refuse["cert"] = runtime.RuntimeApiError("HAProxy runtime API at r.sock: Connection refused")
    assert await front_tls.check(client) is False  # HAProxy restarting: the files are new already
    assert (front_dir / "front.pem").read_text() == fronttls.combined_pem(tls.load(front_tls.files))
    assert await front_tls.check(client) is False  # still away: no second warning
    del client.refuse["cert"]
    assert await front_tls.check(client) is True  # back: given again
    assert [(kind, name) for kind, name, _ in client.calls] == [("cert", "front.pem"), ("ca-file", "client-ca.pem")]
    assert await front_tls.check(client) is False and len(client.calls) == 2  # taken once
    files.write(issue(ca1, "gateway, again"), make_ca("another client CA"))
    client.refuse["cert"] = runtime.PayloadTooLarge("set ssl cert front.pem: 20000 bytes of PEM, more than ...")
    assert await front_tls.check(client) is True  # the CA went through
    assert [(kind, name) for kind, name, _ in client.calls[2:]] == [("ca-file", "client-ca.pem")]
    assert await front_tls.check(client) is False  # the cert is not tried again and again
    assert [r.getMessage() for r in caplog.records] == [
        "HAProxy did not take the new TLS files yet (tried again every 1s): "
        "HAProxy runtime API at r.sock: Connection refused",
        "HAProxy serves the new TLS files to new connections (established ones keep theirs)",
        "HAProxy keeps its TLS cert in use until it restarts: set ssl cert front.pem: 20000 bytes of PEM, more than ...",
        "HAProxy serves the new TLS files to new connections (established ones keep theirs)"]
