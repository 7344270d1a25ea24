"""Check 12: the gateway over TLS on the cluster. A CA and a server certificate made
here (names: localhost, 127.0.0.1 and the gateway Service's DNS names) go into a
kubernetes.io/tls Secret; `helm upgrade --reuse-values --set gateway.tls.secretName=...`
turns TLS on. Then `integrationtests basic_workflow --tls-ca` passes through a
port-forward, a plaintext client and one trusting another CA fail, the chart's
`helm test` passes over TLS, and a rotated Secret reaches the running gateway
without a restart. Finally the release goes back to plaintext for the checks after it."""
from __future__ import annotations

import dataclasses
import datetime
import ipaddress
import re
import subprocess
import sys
from pathlib import Path

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from grpc_health.v1 import health_pb2, health_pb2_grpc

import framework as fw
from framework import crd, resource_name
from myservice_client import tls as client_tls

INTEGRATIONTESTS = Path(sys.executable).parent / "integrationtests"


@dataclasses.dataclass
class Issued:
    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate

    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def key_pem(self) -> bytes:
        return self.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption())


def _certificate(subject: str, issuer: Issued | None, key, extensions) -> x509.Certificate:
    now = datetime.datetime.now(datetime.timezone.utc)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    builder = (x509.CertificateBuilder().subject_name(name)
               .issuer_name(issuer.cert.subject if issuer else name).public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1)))
    for extension, critical in extensions:
        builder = builder.add_extension(extension, critical=critical)
    return builder.sign(issuer.key if issuer else key, hashes.SHA256())


def make_ca(name: str) -> Issued:
    key = ec.generate_private_key(ec.SECP256R1())
    return Issued(key, _certificate(name, None, key, [(x509.BasicConstraints(ca=True, path_length=None), True)]))


def server_certificate(ca: Issued, dns_names: list[str]) -> Issued:
    key = ec.generate_private_key(ec.SECP256R1())
    sans = [x509.DNSName(n) for n in dns_names] + [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    return Issued(key, _certificate("myservice-gateway", ca, key, [
        (x509.BasicConstraints(ca=False, path_length=None), True),
        (x509.SubjectAlternativeName(sans), False)]))


def service_names(service: str, namespace: str) -> list[str]:
    return ["localhost", service, f"{service}.{namespace}", f"{service}.{namespace}.svc",
            f"{service}.{namespace}.svc.cluster.local"]


def apply_tls_secret(kube: fw.Kube, name: str, ca: Issued, server: Issued, directory: Path) -> None:
    """A kubernetes.io/tls Secret as cert-manager makes it: tls.crt, tls.key, ca.crt."""
    directory.mkdir(parents=True, exist_ok=True)
    for file, data in (("tls.crt", server.cert_pem()), ("tls.key", server.key_pem()), ("ca.crt", ca.cert_pem())):
        (directory / file).write_bytes(data)
    manifest = kube.kubectl("create", "secret", "generic", name, "--type=kubernetes.io/tls",
                            *[f"--from-file={f}={directory / f}" for f in ("tls.crt", "tls.key", "ca.crt")],
                            "--dry-run=client", "-o", "yaml")
    kube.run([kube.cfg.kubectl, "-n", kube.ns, "apply", "-f", "-"], input=manifest)


def helm_upgrade_gateway_tls(kube: fw.Kube, release_name: str, secret_name: str, t) -> None:
    argv = ["upgrade", release_name, str(fw.CHART), "--reuse-values", "--set", f"gateway.tls.secretName={secret_name}",
            "--wait", "--timeout", "180s"]
    fw.log("$ helm -n " + kube.ns + " " + " ".join(argv))
    kube.helm(*argv, timeout=t(240))
    kube.kubectl("rollout", "status", f"deployment/{kube.gateway_deploy}", "--timeout=180s", timeout=t(200))
    kube.wait_gateway_settled(t(180))


def run_integrationtests(*args: str, t) -> tuple[int, str]:
    argv = [str(INTEGRATIONTESTS), "basic_workflow", *args]
    fw.log("$ " + " ".join(argv))
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=t(300))
    out = proc.stdout + proc.stderr
    print(out)
    return proc.returncode, out


def health_check(address: str, ca: Issued | None, server_name: str | None = None) -> grpc.RpcError | None:
    """One grpc.health.v1 Check on a fresh channel (a fresh handshake); its error, or None."""
    options = client_tls.ClientTls(root_certificates=ca.cert_pem(), server_name=server_name) if ca else None
    with client_tls.open_channel(address, options) as channel:
        try:
            health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
        except grpc.RpcError as e:
            return e
    return None


def track_session(out: str, sessions) -> None:
    match = re.search(r"Login ok \(session_id=(\S+?),", out)
    if match:
        sessions.resources.append(resource_name("TestUser", match.group(1)))


def test_basic_workflow_over_tls(release, installed, gateway, kube, sessions, t, tmp_path):
    service = kube.gateway_deploy  # the Service has the Deployment's name
    secret = f"{service}-e2e-tls"
    ca = make_ca("myservice e2e CA")
    apply_tls_secret(kube, secret, ca, server_certificate(ca, service_names(service, kube.ns)), tmp_path / "first")
    ca_file = tmp_path / "ca.pem"
    ca_file.write_bytes(ca.cert_pem())
    other_ca_file = tmp_path / "other-ca.pem"
    other_ca_file.write_bytes(make_ca("a stranger CA").cert_pem())
    try:
        helm_upgrade_gateway_tls(kube, release.name, secret, t)
        gateway.reset()  # its port-forward went to the replaced pod
        env = kube.deployment_env(kube.gateway_deploy, "gateway")
        assert (env.get("MYSERVICE_TLS_CERT_FILE"), env.get("MYSERVICE_TLS_KEY_FILE")) == (
            "/etc/myservice/tls/tls.crt", "/etc/myservice/tls/tls.key"), env
        containers = kube.get("deployment", kube.gateway_deploy)["spec"]["template"]["spec"]["containers"]
        container = next(c for c in containers if c["name"] == "front")
        # HAProxy serves TLS (the front container, the chart's default): the port for liveness, and
        # for readiness HAProxy's /ready (Ready only while HAProxy and the Python gateway answer;
        # the upgrade above waited for it)
        assert container["livenessProbe"]["tcpSocket"] == {"port": "grpc"}, container["livenessProbe"]
        ready = container["readinessProbe"].get("httpGet", {})
        assert (ready.get("path"), ready.get("port")) == ("/ready", "front-metrics"), container["readinessProbe"]

        with fw.PortForward(kube, f"svc/{service}", 10000) as forward:
            code, out = run_integrationtests("--gateway", forward.address, "--tls-ca", str(ca_file),
                                             "--timeout", "90", t=t)
            track_session(out, sessions)
            assert code == 0, f"integrationtests over TLS exited {code}:\n{out}"
            assert "PASS basic_workflow" in out, out

            # the name a client inside the cluster checks, through the port-forward
            assert health_check(forward.address, ca, server_name=f"{service}.{kube.ns}.svc") is None

            code, out = run_integrationtests("--gateway", forward.address, "--timeout", "10", t=t)
            assert code == 1 and "FAIL basic_workflow: unexpected UNAVAILABLE:" in out, \
                f"a plaintext client must fail against the TLS gateway; exit {code}:\n{out}"
            code, out = run_integrationtests("--gateway", forward.address, "--tls-ca", str(other_ca_file),
                                             "--timeout", "10", t=t)
            assert code == 1 and "FAIL basic_workflow: unexpected UNAVAILABLE:" in out, out
            assert "CERTIFICATE_VERIFY_FAILED" in out, out

            _helm_test_over_tls(release, kube, sessions, t)

            # rotation: a new certificate from a new CA reaches the running pod (no restart)
            pods_before = {p["metadata"]["uid"] for p in kube.component_pods("gateway")}
            new_ca = make_ca("myservice e2e CA, rotated")
            apply_tls_secret(kube, secret, new_ca, server_certificate(new_ca, service_names(service, kube.ns)),
                             tmp_path / "rotated")
            fw.wait_until("the gateway to serve the rotated certificate on a new connection",
                          lambda: health_check(forward.address, new_ca) is None, t(180), interval=3,
                          describe=lambda: str(health_check(forward.address, new_ca)))
            err = health_check(forward.address, ca)
            assert err is not None and err.code() == grpc.StatusCode.UNAVAILABLE, err
            assert {p["metadata"]["uid"] for p in kube.component_pods("gateway")} == pods_before, \
                "the gateway pod was replaced: the rotation must reach the running pod"
    finally:
        helm_upgrade_gateway_tls(kube, release.name, "", t)  # back to plaintext for the checks after this one
        gateway.reset()
        kube.kubectl("delete", "secret", secret, "--ignore-not-found", check=False)
    assert health_check(gateway.address, None) is None, "the gateway is plaintext again"


def _helm_test_over_tls(release, kube, sessions, t) -> None:
    """The chart's `helm test` (trusting the Secret's ca.crt) passes over TLS."""
    if kube.run([kube.cfg.kubectl, "-n", "kube-system", "get", "service", "kube-dns"], check=False).returncode != 0:
        fw.log("no kube-system/kube-dns Service: the helm test pod cannot resolve the gateway; helm test not run")
        return
    proc = kube.run([kube.cfg.helm, "-n", kube.ns, "test", release.name, "--logs", "--timeout", "180s"],
                    check=False, timeout=t(240))
    print(proc.stdout, proc.stderr)
    kube.kubectl("delete", "pod", f"{kube.cfg.fullname()}-test", "--ignore-not-found", "--wait=false", check=False)
    track_session(proc.stdout, sessions)
    assert proc.returncode == 0, f"helm test over TLS failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    assert "PASS basic_workflow" in proc.stdout, proc.stdout
