"""TLS on the gateway, for real over loopback: handshakes with certificates made
here, client certificates, rotation of the files without a restart, and the
configuration errors of `myservice gateway` as a subprocess."""
from __future__ import annotations

import asyncio
import dataclasses
import datetime
import ipaddress
import json
import logging
import os
import shutil
import subprocess
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from myservice import contract
from myservice.v1 import myservice_pb2 as pb
from myservice.v1 import myservice_pb2_grpc as pb_grpc
from myservice_client import tls as client_tls
from myservice_gateway import tls
from myservice_gateway.users import hash_password

from ..conftest import BIN, eventually, md

LOCAL_NAMES = ("localhost", "127.0.0.1")


# --- certificates, made here ----------------------------------------------------

@dataclasses.dataclass
class Issued:
    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate

    @property
    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    @property
    def key_pem(self) -> bytes:
        return self.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption())


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _builder(subject: str, issuer: x509.Name, public_key) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.timezone.utc)
    return (x509.CertificateBuilder().subject_name(_name(subject)).issuer_name(issuer).public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1)))


def make_ca(common_name: str) -> Issued:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (_builder(common_name, _name(common_name), key.public_key())
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
            .sign(key, hashes.SHA256()))
    return Issued(key, cert)


def issue(ca: Issued, common_name: str, names: tuple[str, ...] = LOCAL_NAMES, client: bool = False) -> Issued:
    key = ec.generate_private_key(ec.SECP256R1())
    sans = [x509.IPAddress(ipaddress.ip_address(n)) if n.replace(".", "").isdigit() else x509.DNSName(n)
            for n in names]
    usage = ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH
    builder = (_builder(common_name, ca.cert.subject, key.public_key())
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(x509.ExtendedKeyUsage([usage]), critical=False))
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return Issued(key, builder.sign(ca.key, hashes.SHA256()))


@dataclasses.dataclass
class ServerFiles:
    """The server's files as a Secret volume holds them: tls.crt, tls.key, ca.crt."""

    directory: Path

    @property
    def cert(self) -> Path:
        return self.directory / "tls.crt"

    @property
    def key(self) -> Path:
        return self.directory / "tls.key"

    @property
    def ca(self) -> Path:
        return self.directory / "ca.crt"

    def write(self, server: Issued, ca: Issued | None = None) -> None:
        """Replace the files each by an atomic rename, so a reader never sees half a file."""
        for path, data in ((self.cert, server.cert_pem), (self.key, server.key_pem)) + (
                ((self.ca, ca.cert_pem),) if ca else ()):
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(data)
            os.replace(tmp, path)


@pytest.fixture(scope="module")
def ca1() -> Issued:
    return make_ca("myservice test CA 1")


@pytest.fixture(scope="module")
def ca2() -> Issued:
    return make_ca("myservice test CA 2")


@pytest.fixture
def files(tmp_path, ca1) -> ServerFiles:
    f = ServerFiles(tmp_path / "tls")
    f.directory.mkdir()
    f.write(issue(ca1, "gateway"))
    return f


def write_pem(path: Path, *issued: Issued, key: bool = False) -> Path:
    path.write_bytes(b"".join(i.key_pem if key else i.cert_pem for i in issued))
    return path


# --- clients ----------------------------------------------------------------------

def secure_channel(port: int, ca: Issued, client: Issued | None = None, server_name: str | None = None,
                   host: str = "127.0.0.1") -> grpc.aio.Channel:
    """A fresh channel (so a fresh TLS handshake) that trusts `ca` only."""
    options = client_tls.ClientTls(root_certificates=ca.cert_pem,
                                   private_key=client.key_pem if client else None,
                                   certificate_chain=client.cert_pem if client else None,
                                   server_name=server_name)
    return grpc.aio.secure_channel(f"{host}:{port}", client_tls.credentials(options),
                                   options=client_tls.channel_options(options))


async def login(channel: grpc.aio.Channel, session_id: str) -> pb.LoginResponse:
    return await pb_grpc.MyServiceStub(channel).Login(
        pb.LoginRequest(username="TestUser", password="TestPassword", session_id=session_id), timeout=10)


async def login_error(channel: grpc.aio.Channel) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await login(channel, "refused")
    return caught.value


async def tls_gateway(make_gateway, files: ServerFiles, client_ca: Path | None = None, **overrides):
    return await make_gateway(tls_cert_file=str(files.cert), tls_key_file=str(files.key),
                              tls_client_ca_file=str(client_ca) if client_ca else None, **overrides)


# The Python gateway looks at the files before each handshake; the HAProxy front once a
# second (front/fronttls.py). A rotation is awaited this long, on both.
ROTATION_SECONDS = 10.0


async def logs_in_once_rotated(port: int, ca: Issued, client: Issued | None = None, session_id: str = "rotated"):
    """Login on fresh connections (fresh handshakes) until one trusting `ca` succeeds."""
    last = None
    for _ in range(int(ROTATION_SECONDS / 0.1)):
        async with secure_channel(port, ca, client=client) as channel:
            try:
                return await login(channel, session_id)
            except grpc.aio.AioRpcError as e:
                last = e
        await asyncio.sleep(0.1)
    raise AssertionError(f"the rotated files were not served within {ROTATION_SECONDS:g}s: {last}")


# --- handshakes ------------------------------------------------------------------

async def test_login_echo_shutdown_over_tls(make_gateway, files, ca1):
    gw = await tls_gateway(make_gateway, files)
    async with secure_channel(gw.gateway.port, ca1) as channel:
        stub = pb_grpc.MyServiceStub(channel)
        reply = await login(channel, "tls-1")
        assert (reply.role, reply.HasField("expires_at")) == ("user", True)
        echo = await stub.MyServiceEcho(pb.EchoRequest(value="over tls"), metadata=md(reply.token, "tls-1"), timeout=30)
        assert (echo.client_value, echo.server_value, echo.client_session_id, echo.index, echo.server_method) == (
            "over tls", contract.SERVER_VALUE, "tls-1", 0, "MyServiceEcho")
        bye = await stub.MyServiceShutdown(pb.ShutdownRequest(), metadata=md(reply.token, "tls-1"), timeout=30)
        assert (bye.pod_name, bye.server_method) == (echo.pod_name, "MyServiceShutdown")


async def test_plaintext_client_cannot_talk_to_a_tls_gateway(make_gateway, files):
    gw = await tls_gateway(make_gateway, files)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{gw.gateway.port}") as channel:
        err = await login_error(channel)
    assert err.code() == grpc.StatusCode.UNAVAILABLE, err


async def test_a_client_trusting_another_ca_fails(make_gateway, files, ca2):
    gw = await tls_gateway(make_gateway, files)
    async with secure_channel(gw.gateway.port, ca2) as channel:
        err = await login_error(channel)
    assert err.code() == grpc.StatusCode.UNAVAILABLE
    assert "CERTIFICATE_VERIFY_FAILED" in err.details(), err.details()


async def test_the_name_checked_can_be_overridden(make_gateway, files, ca1):
    files.write(issue(ca1, "gateway", names=("gw.myservice.svc",)))
    gw = await tls_gateway(make_gateway, files)
    async with secure_channel(gw.gateway.port, ca1) as channel:  # dials 127.0.0.1: not in the certificate
        err = await login_error(channel)
    assert err.code() == grpc.StatusCode.UNAVAILABLE
    assert "Hostname Verification Check failed" in err.details(), err.details()
    async with secure_channel(gw.gateway.port, ca1, server_name="gw.myservice.svc") as channel:
        assert (await login(channel, "tls-name")).token


# --- client certificates ---------------------------------------------------------------

async def test_client_certificates_required(make_gateway, files, tmp_path, ca1, ca2):
    clients_ca = make_ca("myservice clients CA")
    gw = await tls_gateway(make_gateway, files, client_ca=write_pem(tmp_path / "clients-ca.pem", clients_ca))
    port = gw.gateway.port
    async with secure_channel(port, ca1) as channel:
        err = await login_error(channel)
    assert err.code() == grpc.StatusCode.UNAVAILABLE, "no client certificate"
    async with secure_channel(port, ca1, client=issue(ca2, "stranger", names=(), client=True)) as channel:
        err = await login_error(channel)
    assert err.code() == grpc.StatusCode.UNAVAILABLE, "a client certificate from another CA"
    async with secure_channel(port, ca1, client=issue(clients_ca, "alice", names=(), client=True)) as channel:
        assert (await login(channel, "mtls-1")).role == "user"


# --- rotation --------------------------------------------------------------------------

async def test_rotated_files_serve_new_connections_without_a_restart(make_gateway, files, ca1, ca2):
    gw = await tls_gateway(make_gateway, files)
    port = gw.gateway.port
    before = secure_channel(port, ca1)
    try:
        assert (await login(before, "rot-1")).token  # connected on the first certificate
        files.write(issue(ca2, "gateway, rotated"))
        assert (await logs_in_once_rotated(port, ca2, session_id="rot-2")).token
        async with secure_channel(port, ca1) as channel:
            err = await login_error(channel)
        assert err.code() == grpc.StatusCode.UNAVAILABLE
        assert "CERTIFICATE_VERIFY_FAILED" in err.details(), err.details()
        # an open connection is not re-handshaken: it goes on
        assert (await login(before, "rot-3")).token
    finally:
        await before.close()


@pytest.mark.parametrize("front", ["none", pytest.param("haproxy", marks=pytest.mark.skipif(
    shutil.which("haproxy") is None, reason="haproxy is not installed (make test installs it: apt-get install -y haproxy)"))])
async def test_an_established_stream_keeps_going_across_a_rotation(make_gateway, files, ca1, ca2, front):
    # A Chat open on the first certificate goes on after the files changed and were taken
    # (HAProxy: through its runtime API, no restart); a new connection sees the new one.
    gw = await tls_gateway(make_gateway, files, front=front)
    port = gw.gateway.port
    async with secure_channel(port, ca1) as before:
        stub = pb_grpc.MyServiceStub(before)
        metadata = md((await login(before, "rot-stream")).token, "rot-stream")
        first = await stub.MyServiceEcho(pb.EchoRequest(value="x"), metadata=metadata, timeout=30)
        if gw.gateway.front:
            await gw.gateway.front.map.settled()  # the Chat below goes the front's fast path
            haproxy_pid = gw.gateway.front.haproxy.process.pid
        chat = stub.MyServiceChat(metadata=metadata, timeout=60)
        await chat.write(pb.EchoRequest(value="c0"))
        assert ((await chat.read()).client_value, first.index) == ("c0", 0)
        files.write(issue(ca2, "gateway, rotated"))
        assert (await logs_in_once_rotated(port, ca2, session_id="rot-stream-new")).token
        async with secure_channel(port, ca1) as channel:
            err = await login_error(channel)
        assert err.code() == grpc.StatusCode.UNAVAILABLE
        assert "CERTIFICATE_VERIFY_FAILED" in err.details(), err.details()
        for i in range(1, 4):
            await chat.write(pb.EchoRequest(value=f"c{i}"))
            reply = await chat.read()
            assert (reply.client_value, reply.pod_name, reply.server_session_id) == (
                f"c{i}", first.pod_name, "rot-stream")
        await chat.done_writing()
        assert await chat.read() == grpc.aio.EOF
        assert await chat.code() == grpc.StatusCode.OK
        # The established connection takes new calls too, on the certificate it was made with.
        assert (await stub.MyServiceEcho(pb.EchoRequest(value="y"), metadata=metadata, timeout=30)).pod_name == (
            first.pod_name)
    if gw.gateway.front:
        assert gw.gateway.front.haproxy.process.pid == haproxy_pid  # taken live, not by a restart
        assert gw.gateway.front.tls.commits == 1


async def test_a_bad_rotation_keeps_the_current_certificate(make_gateway, files, ca1, ca2, caplog):
    gw = await tls_gateway(make_gateway, files)
    port = gw.gateway.port
    caplog.set_level(logging.WARNING, logger="myservice.gateway.tls")
    files.cert.write_bytes(b"not a certificate\n")
    async with secure_channel(port, ca1) as channel:
        assert (await login(channel, "bad-rot")).token
    # Seen at the next handshake (Python) or the next look of the front's watch (HAProxy).
    assert await eventually(lambda: caplog.records, timeout=ROTATION_SECONDS)
    async with secure_channel(port, ca1) as channel:
        assert (await login(channel, "bad-rot-2")).token
    assert [r.getMessage() for r in caplog.records] == [
        "TLS files not reloaded, the current certificate stays in use: MYSERVICE_TLS_CERT_FILE (--tls-cert): "
        f"{files.cert} holds no PEM certificate (-----BEGIN CERTIFICATE-----)"]
    files.write(issue(ca2, "gateway, fixed"))
    assert (await logs_in_once_rotated(port, ca2, session_id="fixed-rot")).token


async def test_the_client_ca_is_rotated_too(make_gateway, files, tmp_path, ca1):
    old_clients, new_clients = make_ca("clients CA old"), make_ca("clients CA new")
    client_ca = write_pem(tmp_path / "clients-ca.pem", old_clients)
    gw = await tls_gateway(make_gateway, files, client_ca=client_ca)
    new_client = issue(new_clients, "bob", names=(), client=True)
    async with secure_channel(gw.gateway.port, ca1, client=new_client) as channel:
        assert (await login_error(channel)).code() == grpc.StatusCode.UNAVAILABLE
    tmp = tmp_path / "clients-ca.tmp"
    write_pem(tmp, new_clients)
    os.replace(tmp, client_ca)
    assert (await logs_in_once_rotated(gw.gateway.port, ca1, client=new_client, session_id="mtls-rot")).token


async def test_files_are_looked_at_per_handshake_not_per_call(make_gateway, files, ca1, monkeypatch):
    asked = []
    real_check = tls.CertificateReloader.check
    monkeypatch.setattr(tls.CertificateReloader, "check", lambda self: asked.append(1) or real_check(self))
    gw = await tls_gateway(make_gateway, files)
    front = gw.gateway.front
    started = asyncio.get_running_loop().time()
    async with secure_channel(gw.gateway.port, ca1) as channel:
        stub = pb_grpc.MyServiceStub(channel)
        token = (await login(channel, "per-handshake")).token
        for _ in range(50):
            await stub.MyServiceEcho(pb.EchoRequest(value="x"), metadata=md(token, "per-handshake"), timeout=30)
        await stub.MyServiceShutdown(pb.ShutdownRequest(), metadata=md(token, "per-handshake"), timeout=30)
    if front is None:
        assert len(asked) == 1, "one connection, one handshake, one look at the files"
        async with secure_channel(gw.gateway.port, ca1) as channel:
            await login(channel, "second-connection")
        assert len(asked) == 2
    else:  # HAProxy handshakes: the front's watch looks once a period, whatever the calls
        elapsed = asyncio.get_running_loop().time() - started
        assert len(asked) <= elapsed / front.tls.period + 1, (len(asked), elapsed)


# --- the reloader on its own ---------------------------------------------------------------

def test_the_reloader_reads_files_only_when_they_change(files, ca2, monkeypatch):
    tls_files = tls.TlsFiles(str(files.cert), str(files.key))
    reloader = tls.CertificateReloader(tls_files, tls.load(tls_files))
    loads = []
    real_load = tls.load
    monkeypatch.setattr(tls, "load", lambda f: loads.append(f) or real_load(f))
    assert [reloader() for _ in range(1000)] == [None] * 1000
    assert (loads, reloader.reloads) == ([], 0)
    files.write(issue(ca2, "next"))
    assert isinstance(reloader(), grpc.ServerCertificateConfiguration)
    assert [reloader() for _ in range(10)] == [None] * 10
    assert (len(loads), reloader.reloads) == (1, 1)
    files.key.write_bytes(issue(ca2, "other").key_pem)  # key of another certificate: a half-done rotation
    assert [reloader() for _ in range(10)] == [None] * 10
    assert (len(loads), reloader.reloads) == (2, 1)  # tried once, not once per handshake


def test_the_reloader_survives_files_that_are_gone(files):
    tls_files = tls.TlsFiles(str(files.cert), str(files.key))
    reloader = tls.CertificateReloader(tls_files, tls.load(tls_files))
    files.cert.unlink()
    assert reloader() is None


# --- configuration errors -----------------------------------------------------------------

@pytest.fixture
def bad(tmp_path, ca1, ca2):
    """Files that are wrong in one way each."""
    good = issue(ca1, "gateway")
    encrypted = good.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.BestAvailableEncryption(b"secret"))
    paths = {
        "cert": write_pem(tmp_path / "cert.pem", good),
        "key": write_pem(tmp_path / "key.pem", good, key=True),
        "other_key": write_pem(tmp_path / "other-key.pem", issue(ca2, "other"), key=True),
        "garbage": tmp_path / "garbage.pem",
        "broken_cert": tmp_path / "broken.pem",
        "encrypted_key": tmp_path / "encrypted-key.pem",
        "missing": tmp_path / "missing.pem",
        "directory": tmp_path,
    }
    paths["garbage"].write_bytes(b"hello\n")
    paths["broken_cert"].write_bytes(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
    paths["encrypted_key"].write_bytes(encrypted)
    return {k: str(v) for k, v in paths.items()}


@pytest.mark.parametrize("cert,key,client_ca,message", [
    ("missing", "key", None, "MYSERVICE_TLS_CERT_FILE (--tls-cert): cannot read {missing}: No such file or directory"),
    ("cert", "directory", None, "MYSERVICE_TLS_KEY_FILE (--tls-key): cannot read {directory}: Is a directory"),
    ("garbage", "key", None,
     "MYSERVICE_TLS_CERT_FILE (--tls-cert): {garbage} holds no PEM certificate (-----BEGIN CERTIFICATE-----)"),
    ("broken_cert", "key", None, "MYSERVICE_TLS_CERT_FILE (--tls-cert): {broken_cert} is not a valid PEM certificate"),
    ("cert", "garbage", None,
     "MYSERVICE_TLS_KEY_FILE (--tls-key): {garbage} holds no PEM private key (-----BEGIN ... PRIVATE KEY-----)"),
    ("cert", "encrypted_key", None,
     "MYSERVICE_TLS_KEY_FILE (--tls-key): {encrypted_key} is an encrypted private key; give an unencrypted one"),
    ("cert", "other_key", None,
     "MYSERVICE_TLS_KEY_FILE (--tls-key): {other_key} is not a valid private key for the certificate in {cert}"),
    ("cert", "key", "garbage",
     "MYSERVICE_TLS_CLIENT_CA_FILE (--tls-client-ca): {garbage} holds no PEM certificate"),
    ("cert", "key", "missing",
     "MYSERVICE_TLS_CLIENT_CA_FILE (--tls-client-ca): cannot read {missing}: No such file or directory"),
])
def test_load_names_the_setting_at_fault(bad, cert, key, client_ca, message):
    with pytest.raises(tls.TlsConfigError) as caught:
        tls.load(tls.TlsFiles(bad[cert], bad[key], bad[client_ca] if client_ca else None))
    assert str(caught.value).startswith(message.format(**bad)), str(caught.value)


def test_good_files_load(bad, ca1, tmp_path):
    material = tls.load(tls.TlsFiles(bad["cert"], bad["key"], str(write_pem(tmp_path / "ca.pem", ca1))))
    assert (material.cert_chain, material.private_key, material.client_ca) == (
        Path(bad["cert"]).read_bytes(), Path(bad["key"]).read_bytes(), ca1.cert_pem)


def run_gateway(*args: str, env: dict | None = None, tmp_path: Path) -> subprocess.CompletedProcess:
    """`myservice gateway` that would start (a users file, a free port) but for its TLS settings."""
    users = tmp_path / "users.json"
    users.write_text(json.dumps({"users": {"u": {"password_hash": hash_password("p"), "role": "user"}}}))
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MYSERVICE_")}
    return subprocess.run(
        [str(BIN / "myservice"), "gateway", "--host", "127.0.0.1", "--port", "0", *args],
        env={**clean, "MYSERVICE_USERS_FILE": str(users), "MYSERVICE_DEV_USER": "false", **(env or {})},
        capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("args,env,message", [
    (["--tls-cert", "{cert}"], {},
     "MYSERVICE_TLS_CERT_FILE (--tls-cert) is set but MYSERVICE_TLS_KEY_FILE (--tls-key) is not: TLS needs both"),
    ([], {"MYSERVICE_TLS_KEY_FILE": "{key}"},
     "MYSERVICE_TLS_KEY_FILE (--tls-key) is set but MYSERVICE_TLS_CERT_FILE (--tls-cert) is not: TLS needs both"),
    (["--tls-client-ca", "{cert}"], {}, "MYSERVICE_TLS_CLIENT_CA_FILE (--tls-client-ca) needs TLS"),
    (["--tls-cert", "{missing}", "--tls-key", "{key}"], {},
     "MYSERVICE_TLS_CERT_FILE (--tls-cert): cannot read {missing}: No such file or directory"),
    ([], {"MYSERVICE_TLS_CERT_FILE": "{garbage}", "MYSERVICE_TLS_KEY_FILE": "{key}"},
     "MYSERVICE_TLS_CERT_FILE (--tls-cert): {garbage} holds no PEM certificate"),
    (["--tls-cert", "{cert}", "--tls-key", "{other_key}"], {},
     "MYSERVICE_TLS_KEY_FILE (--tls-key): {other_key} is not a valid private key for the certificate in {cert}"),
])
def test_bad_tls_configuration_exits_2_naming_the_setting(bad, tmp_path, args, env, message):
    result = run_gateway(*[a.format(**bad) for a in args], env={k: v.format(**bad) for k, v in env.items()},
                         tmp_path=tmp_path)
    assert result.returncode == 2, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("myservice: configuration error: " + message.format(**bad)), result.stderr
    assert "Traceback" not in result.stderr


# --- the real commands: myservice up and integrationtests -----------------------------------

def integrationtests(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "integrationtests"), *args], capture_output=True, text=True, timeout=120)


def test_integrationtests_over_tls_against_myservice_up(up_process, files, tmp_path, ca1, ca2):
    up = up_process("--tls-cert", str(files.cert), "--tls-key", str(files.key))
    assert any("TLS on: certificate" in line for line in up.lines), up.lines
    ca_file = str(write_pem(tmp_path / "ca.pem", ca1))
    result = integrationtests("basic_workflow", "--gateway", up.address, "--tls-ca", ca_file)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "PASS basic_workflow" in result.stdout
    result = integrationtests("basic_workflow", "--gateway", up.address, "--timeout", "5",
                              "--tls-ca", str(write_pem(tmp_path / "ca2.pem", ca2)))
    assert result.returncode == 1
    assert "FAIL basic_workflow: unexpected UNAVAILABLE:" in result.stdout
    assert "CERTIFICATE_VERIFY_FAILED" in result.stdout
    result = integrationtests("basic_workflow", "--gateway", up.address, "--timeout", "5")  # plaintext
    assert result.returncode == 1
    assert "FAIL basic_workflow: unexpected UNAVAILABLE:" in result.stdout


def test_integrationtests_with_a_client_certificate(up_process, files, tmp_path, ca1):
    clients_ca = make_ca("clients")
    client = issue(clients_ca, "it", names=(), client=True)
    up = up_process("--tls-cert", str(files.cert), "--tls-key", str(files.key),
                    "--tls-client-ca", str(write_pem(tmp_path / "clients.pem", clients_ca)))
    ca_file = str(write_pem(tmp_path / "ca.pem", ca1))
    result = integrationtests("basic_workflow", "--gateway", up.address, "--tls-ca", ca_file,
                              "--tls-cert", str(write_pem(tmp_path / "client.pem", client)),
                              "--tls-key", str(write_pem(tmp_path / "client-key.pem", client, key=True)))
    assert result.returncode == 0, result.stdout + result.stderr
    result = integrationtests("basic_workflow", "--gateway", up.address, "--tls-ca", ca_file, "--timeout", "5")
    assert result.returncode == 1
    assert "FAIL basic_workflow: unexpected UNAVAILABLE:" in result.stdout


@pytest.mark.parametrize("args,message", [
    (["--tls-ca", "/nonexistent/ca.pem"], "--tls-ca: cannot read /nonexistent/ca.pem: No such file or directory"),
    (["--tls-cert", "{cert}"], "--tls-cert and --tls-key go together"),
    (["--tls-ca", "{garbage}"], "--tls-ca: {garbage} is not a PEM file"),
])
def test_integrationtests_tls_option_errors(bad, args, message):
    result = integrationtests("basic_workflow", *[a.format(**bad) for a in args])
    assert result.returncode == 2
    assert f"integrationtests: error: {message.format(**bad)}" in result.stderr
