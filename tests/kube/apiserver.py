"""A real Kubernetes API server for tests, as kubebuilder's envtest: etcd and
kube-apiserver only (no kubelet, no scheduler, no controllers), on loopback with
free ports and a temporary data dir, a static token in system:masters. Nothing
runs pods: a test writes the status a controller would write.

The binaries are the e2e build's (`build.sh etcd kube-apiserver`, make test runs
it when they are missing): $MYSERVICE_KUBE_BIN, else the build's output folder.
Both processes die with the test process (PR_SET_PDEATHSIG), even if it is killed.
"""
from __future__ import annotations

import os
import re
import secrets
import shutil
import socket
import subprocess
import time
from pathlib import Path

import kubernetes

ROOT = Path(__file__).resolve().parents[2]
# The cluster toolchain may live in hack/ or e2e/ (issue 14, item 9): whichever exists.
BUILD_SCRIPTS = ("hack/cluster/build.sh", "e2e/cluster/build.sh")
BINARIES = ("etcd", "kube-apiserver")
START_TIMEOUT = 90.0


def build_script() -> Path | None:
    return next((ROOT / p for p in BUILD_SCRIPTS if (ROOT / p).exists()), None)


def build_script_shown() -> str:
    script = build_script()
    return str(script.relative_to(ROOT)) if script else BUILD_SCRIPTS[0]


def bin_dir() -> Path:
    """Where the build puts the binaries: ${MYSERVICE_CACHE}/k8s/<K8S_VERSION>/bin (its header)."""
    if os.environ.get("MYSERVICE_KUBE_BIN"):
        return Path(os.environ["MYSERVICE_KUBE_BIN"])
    script = build_script()
    match = script and re.search(r'^K8S_VERSION="\$\{K8S_VERSION:-([^}]+)\}"', script.read_text(), re.M)
    version = os.environ.get("K8S_VERSION") or (match.group(1) if match else "v1.34.4")
    return Path(os.environ.get("MYSERVICE_CACHE") or "/var/cache/myservice") / "k8s" / version / "bin"


def missing() -> list[Path]:
    return [bin_dir() / name for name in BINARIES if not os.access(bin_dir() / name, os.X_OK)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _with_parent(argv: list[str]) -> list[str]:
    """argv, killed when pytest dies: util-linux's setpriv sets PR_SET_PDEATHSIG and execs.
    Not a preexec_fn: Python code between fork and exec is unsafe next to gRPC's threads
    (its fork handlers aborted etcd's child so: SIGABRT, "epoll_wait error")."""
    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", "KILL", "--", *argv] if setpriv else argv


class APIServer:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.token = secrets.token_hex(16)
        self.etcd_url = ""
        self.host = ""
        self.ca_path = workdir / "certs" / "apiserver.crt"  # self-signed, made by the server
        self.kubeconfig = workdir / "kubeconfig"
        self.started_in = 0.0
        self._processes: list[subprocess.Popen] = []

    def start(self) -> None:
        begun = time.monotonic()
        bins = bin_dir()
        etcd_port, peer_port, port = free_port(), free_port(), free_port()
        self.etcd_url = f"http://127.0.0.1:{etcd_port}"
        peer_url = f"http://127.0.0.1:{peer_port}"
        self._spawn("etcd", [
            bins / "etcd", "--name=envtest", f"--data-dir={self.workdir / 'etcd'}",
            f"--listen-client-urls={self.etcd_url}", f"--advertise-client-urls={self.etcd_url}",
            f"--listen-peer-urls={peer_url}", f"--initial-advertise-peer-urls={peer_url}",
            f"--initial-cluster=envtest={peer_url}", "--unsafe-no-fsync", "--log-level=warn"])
        (self.workdir / "tokens.csv").write_text(f"{self.token},envtest-admin,envtest-admin,system:masters\n")
        sa_key = self.workdir / "sa.key"
        sa_key.write_bytes(_rsa_key_pem())
        self._spawn("kube-apiserver", [
            bins / "kube-apiserver", f"--etcd-servers={self.etcd_url}",
            "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", f"--secure-port={port}",
            f"--cert-dir={self.workdir / 'certs'}", f"--token-auth-file={self.workdir / 'tokens.csv'}",
            "--authorization-mode=RBAC", "--service-cluster-ip-range=10.0.0.0/24",
            "--service-account-issuer=https://kubernetes.default.svc",
            f"--service-account-key-file={sa_key}", f"--service-account-signing-key-file={sa_key}",
            # No controllers run: a pod needs no service account, priority and fairness
            # has nothing to share between.
            "--disable-admission-plugins=ServiceAccount", "--enable-priority-and-fairness=false",
            "--allow-privileged=true"])
        self.host = f"https://127.0.0.1:{port}"
        self._wait_ready(begun + START_TIMEOUT)
        self.kubeconfig.write_text(self._kubeconfig())
        self.started_in = time.monotonic() - begun

    def stop(self) -> None:
        for process in reversed(self._processes):  # the API server before its etcd
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        self._processes.clear()

    def configuration(self) -> kubernetes.client.Configuration:
        config = kubernetes.client.Configuration()
        config.host = self.host
        config.ssl_ca_cert = str(self.ca_path)
        config.api_key = {"BearerToken": f"Bearer {self.token}"}
        return config

    def api_client(self) -> kubernetes.client.ApiClient:
        return kubernetes.client.ApiClient(self.configuration())

    def log_tail(self, name: str, lines: int = 30) -> str:
        path = self.workdir / f"{name}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    def _spawn(self, name: str, argv: list) -> None:
        log = open(self.workdir / f"{name}.log", "wb")  # noqa: SIM115 - the child keeps it
        with log:
            self._processes.append(subprocess.Popen(_with_parent([str(a) for a in argv]), stdout=log,
                                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL))

    def _wait_ready(self, deadline: float) -> None:
        """Until /readyz says ok: storage, the bootstrap RBAC and CRD handling are up."""
        import ssl
        import urllib.request
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE  # the server writes its cert once it listens
        request = urllib.request.Request(f"{self.host}/readyz", headers={"Authorization": f"Bearer {self.token}"})
        while True:
            for process, name in zip(self._processes, ("etcd", "kube-apiserver")):
                if process.poll() is not None:
                    raise RuntimeError(f"{name} exited {process.returncode}:\n{self.log_tail(name)}")
            try:
                with urllib.request.urlopen(request, timeout=2, context=context) as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"kube-apiserver not ready after {START_TIMEOUT:.0f}s:\n"
                                   f"{self.log_tail('kube-apiserver')}")
            time.sleep(0.2)

    def _kubeconfig(self) -> str:
        return (f"apiVersion: v1\nkind: Config\ncurrent-context: envtest\n"
                f"clusters:\n- name: envtest\n  cluster:\n    server: {self.host}\n"
                f"    certificate-authority: {self.ca_path}\n"
                f"users:\n- name: envtest\n  user:\n    token: {self.token}\n"
                f"contexts:\n- name: envtest\n  context:\n    cluster: envtest\n    user: envtest\n")


def _rsa_key_pem() -> bytes:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                             serialization.NoEncryption())
