#!/usr/bin/env python3
"""Unary MyServiceEcho latency (p50, p99) and throughput, four ways, in one run:

  direct   straight to an instance process (`myservice instance`)
  nginx    through Debian's nginx `grpc_pass` in front of that same instance
           (no auth, no routing: the reference proxy a user might put in front)
  bare     through bench/bare_proxy.py in front of that same instance: the least
           a grpc.aio proxy can do (no auth, no routing), i.e. the floor of the
           gateway's own stack
  gateway  through `myservice up --front none` (Login first, then token + session-id
           on every call: authentication and routing on), the Python gateway alone
  front    through `myservice up --front haproxy`: HAProxy checks the token and
           sends the Ready session's calls straight to its instance (issue 18)
  front-tls  the same with TLS at HAProxy (`--tls-cert/--tls-key`, an ECDSA P-256
           certificate made here for 127.0.0.1; the worker verifies it): TLS costs
           the front's CPU only, the gateway behind it stays plain

at each concurrency of --concurrency (default 1 and 16 callers). Targets are
interleaved over --rounds rounds (the order rotates every round) and the table
reports the median over rounds of each figure, so a burst of noise from another
job on the machine hits one sample of every target rather than one target.

The load generator runs in its own process (this file with --worker), so this
orchestrating process holds no gRPC threads. Callers are threads of a *sync*
gRPC client by default (--client threads): a blocking unary call spends its wait
in C with the GIL released, and it is the client the reference figures in
docs/benchmarks.md were taken with. --client aio (N concurrent tasks of a
grpc.aio client on one event loop) is there to compare.

Everything is bounded: requests per measurement (--requests), seconds per
measurement (--max-seconds), start-up timeouts, and traffic goes to 127.0.0.1
only. Every process started here (instance, nginx, gateway and, through it, its
instance, the worker) is stopped on exit, on Ctrl-C and on SIGTERM; each also
gets PR_SET_PDEATHSIG so that even a SIGKILLed bench leaves nothing behind.

Besides latency and throughput it reports the CPU time per call of each process
on the path (from /proc), which another job on the machine disturbs far less.

    .venv/bin/python bench/echo_latency.py [--requests N] [--rounds R]
        [--concurrency 1,16] [--json PATH|-] [--client threads|aio]
        [--targets direct,nginx,bare,gateway,front,front-tls] [--compare-gateway DIR] [--profile FILE]

nginx missing: the script installs Debian's nginx-light (apt-get, needs root)
and says so; it never touches a system nginx service, it runs a private nginx
(own prefix, config, pid and temp paths in a temp dir, `daemon off`, 1 worker).
"""
from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import os
import platform
import select
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
TARGETS = ("direct", "nginx", "bare", "gateway", "front", "front-tls")
PROXIED = ("gateway", "front", "front-tls")  # the targets the ratios are about
BASELINE = "gw-base"  # --compare-gateway: a second gateway, from another source tree (A/B of a change)
METHOD = "/myservice.v1.MyService/MyServiceEcho"
ECHO_VALUE = "bench-echo-0123456789abcdefgh"  # EchoRequest(value=...) is 31 bytes on the wire
LOGIN = ("TestUser", "TestPassword")  # the dev user of `myservice up`
START_TIMEOUT = 30.0
STOP_TIMEOUT = 8.0
CALL_TIMEOUT = 10.0
FLOOR_P50_RATIO = 2.5  # gateway p50 at most 2.5x direct
FLOOR_THROUGHPUT_RATIO = 0.5  # gateway throughput at least 50% of direct (at the highest concurrency)
# Issue 18's targets for the front: +<= 0.25 ms p50 at 1 caller, >= 85 % of direct's throughput
# at the highest concurrency, HAProxy's CPU <= 150 us per call.
FRONT_P50_ADDED_MS = 0.25
FRONT_THROUGHPUT_RATIO = 0.85
FRONT_CPU_US = 150.0
# ... and with TLS at the front, >= 80 % of direct's (plaintext) throughput.
FRONT_TLS_THROUGHPUT_RATIO = 0.80


def say(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------
# The worker: the load generator, in its own process. JSON lines on stdin/stdout.
# --------------------------------------------------------------------------------------------

def _percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    if not sorted_values:
        return float("nan")
    rank = max(1, min(len(sorted_values), int(-(-q * len(sorted_values) // 1))))
    return sorted_values[rank - 1]


def _summary(latencies: list[float], errors: int, elapsed: float, first_error: str | None) -> dict:
    values = sorted(latencies)
    return {
        "calls": len(values), "errors": errors, "elapsed_s": elapsed,
        "p50_ms": _percentile(values, 0.50) * 1e3, "p99_ms": _percentile(values, 0.99) * 1e3,
        "mean_ms": (statistics.fmean(values) * 1e3) if values else float("nan"),
        "throughput_per_s": (len(values) / elapsed) if elapsed > 0 else 0.0,
        "first_error": first_error,
    }


class _Worker:
    def __init__(self, client: str) -> None:
        import grpc  # only the worker talks gRPC

        from myservice.v1 import myservice_pb2 as pb

        self.grpc, self.pb, self.client = grpc, pb, client
        self.targets: dict[str, tuple] = {}  # name -> (channel, multicallable, metadata)
        self.payload = pb.EchoRequest(value=ECHO_VALUE).SerializeToString()
        if client == "aio":
            import asyncio

            self.loop = asyncio.new_event_loop()

    # -- setup ---------------------------------------------------------------------------------
    def connect(self, name: str, address: str, session_id: str, login: bool, tls_ca: str | None = None) -> dict:
        grpc, pb = self.grpc, self.pb
        credentials = None
        if tls_ca:  # verify the server against this CA: a real TLS client, handshake included
            credentials = grpc.ssl_channel_credentials(root_certificates=Path(tls_ca).read_bytes())

        def channel_of(kind):
            return kind.secure_channel(address, credentials) if credentials else kind.insecure_channel(address)
        # Setup (readiness, Login, the checked first call) always uses a sync channel.
        with channel_of(grpc) as setup:
            grpc.channel_ready_future(setup).result(timeout=START_TIMEOUT)
            metadata: tuple[tuple[str, str], ...] = (("session-id", session_id),)
            if login:
                login_call = setup.unary_unary("/myservice.v1.MyService/Login",
                                               request_serializer=pb.LoginRequest.SerializeToString,
                                               response_deserializer=pb.LoginResponse.FromString)
                reply = login_call(pb.LoginRequest(username=LOGIN[0], password=LOGIN[1], session_id=session_id),
                                   timeout=START_TIMEOUT)
                metadata = (("authorization", reply.token), ("session-id", session_id))
            raw = setup.unary_unary(METHOD)(self.payload, metadata=metadata, timeout=START_TIMEOUT)
            echo = pb.EchoResponse.FromString(raw)
            if echo.client_value != ECHO_VALUE or echo.client_session_id != session_id:
                raise RuntimeError(f"{name}: unexpected echo {echo}")
        if self.client == "aio":
            async def make():
                return channel_of(grpc.aio)
            channel = self.loop.run_until_complete(make())
        else:
            channel = channel_of(grpc)
        # Bytes in, bytes out: the client does no protobuf work per call.
        self.targets[name] = (channel, channel.unary_unary(METHOD), metadata)
        return {"pod_name": echo.pod_name, "request_bytes": len(self.payload)}

    # -- load ----------------------------------------------------------------------------------
    def run(self, name: str, concurrency: int, requests: int, max_seconds: float) -> dict:
        return self._load(name, concurrency, requests, max_seconds)

    def _load(self, name: str, concurrency: int, requests: int, max_seconds: float) -> dict:
        if self.client == "aio":
            return self.loop.run_until_complete(self._load_aio(name, concurrency, requests, max_seconds))
        return self._load_threads(name, concurrency, requests, max_seconds)

    @staticmethod
    def _shares(requests: int, concurrency: int) -> list[int]:
        return [requests // concurrency + (1 if i < requests % concurrency else 0) for i in range(concurrency)]

    def _load_threads(self, name: str, concurrency: int, requests: int, max_seconds: float) -> dict:
        import threading

        _, call, metadata = self.targets[name]
        payload, rpc_error = self.payload, self.grpc.RpcError
        shares = self._shares(requests, concurrency)
        latencies: list[list[float]] = [[] for _ in range(concurrency)]
        errors = [0] * concurrency
        first_error: list[str] = []
        start_gate = threading.Barrier(concurrency + 1)
        deadline = [0.0]

        def caller(i: int) -> None:
            out, clock = latencies[i], time.perf_counter
            start_gate.wait()
            stop_at = deadline[0]
            for _ in range(shares[i]):
                t0 = clock()
                try:
                    call(payload, metadata=metadata, timeout=CALL_TIMEOUT)
                except rpc_error as e:
                    errors[i] += 1
                    if not first_error:
                        first_error.append(f"{e.code()}: {e.details()}")
                else:
                    out.append(clock() - t0)
                if t0 > stop_at:
                    break

        threads = [threading.Thread(target=caller, args=(i,), daemon=True) for i in range(concurrency)]
        for t in threads:
            t.start()
        deadline[0] = time.perf_counter() + max_seconds
        start_gate.wait()
        start = time.perf_counter()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - start
        return _summary([x for part in latencies for x in part], sum(errors), elapsed,
                        first_error[0] if first_error else None)

    async def _load_aio(self, name: str, concurrency: int, requests: int, max_seconds: float) -> dict:
        import asyncio

        _, call, metadata = self.targets[name]
        payload, rpc_error = self.payload, self.grpc.RpcError
        latencies: list[float] = []
        errors = [0]
        first_error: list[str] = []
        clock = time.perf_counter
        stop_at = clock() + max_seconds

        async def caller(n: int) -> None:
            for _ in range(n):
                t0 = clock()
                try:
                    await call(payload, metadata=metadata, timeout=CALL_TIMEOUT)
                except rpc_error as e:
                    errors[0] += 1
                    if not first_error:
                        first_error.append(f"{e.code()}: {e.details()}")
                else:
                    latencies.append(clock() - t0)
                if t0 > stop_at:
                    break

        start = clock()
        await asyncio.gather(*(caller(n) for n in self._shares(requests, concurrency)))
        return _summary(latencies, errors[0], clock() - start, first_error[0] if first_error else None)

    def close(self) -> None:
        for channel, _, _ in self.targets.values():
            if self.client == "aio":
                self.loop.run_until_complete(channel.close())
            else:
                channel.close()


def worker_main(client: str) -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the orchestrator decides when we stop
    import grpc

    worker = _Worker(client)
    out = sys.stdout
    out.write(json.dumps({"ok": True, "grpc": grpc.__version__}) + "\n")
    out.flush()
    for line in sys.stdin:
        command = json.loads(line)
        op = command.pop("op")
        try:
            if op == "quit":
                worker.close()
                out.write(json.dumps({"ok": True}) + "\n")
                out.flush()
                return 0
            result = getattr(worker, op)(**command)
            reply = {"ok": True, **result}
        except Exception as e:  # noqa: BLE001 - reported to the orchestrator, which stops
            reply = {"ok": False, "error": f"{type(e).__name__}: {e}"}
        out.write(json.dumps(reply) + "\n")
        out.flush()
    return 0


# --------------------------------------------------------------------------------------------
# The orchestrator: starts and stops the servers and the worker, interleaves, reports.
# --------------------------------------------------------------------------------------------

class BenchError(RuntimeError):
    pass


@contextlib.contextmanager
def bench_errors():
    """How a bench ends early: Ctrl-C says 'interrupted' (exit 130), a BenchError says
    what went wrong (exit 1); `finally` blocks inside still run."""
    try:
        yield
    except KeyboardInterrupt:
        say("interrupted")
        raise SystemExit(130) from None
    except BenchError as e:
        say(f"error: {e}")
        raise SystemExit(1) from None


def gateway_env(*layers: dict[str, str], **settings: str) -> dict[str, str]:
    """This process's environment for a gateway under test: none of our own MYSERVICE_*
    variables (a developer's shell must not change the figures), then `layers` and
    `settings` in that order."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MYSERVICE_")}
    for layer in layers:
        env.update(layer)
    env.update(settings)
    return env


def rotated(items: list, run: int) -> list:
    """`items` starting at `run`: interleaved runs, so that a burst of noise from
    another job hits every scenario alike."""
    k = run % len(items)
    return items[k:] + items[:k]


def _die_with_parent() -> None:
    """In the child between fork and exec: SIGTERM when the bench process dies.
    (Safe here: the orchestrator runs no threads.)"""
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_port(port: int, proc: subprocess.Popen, what: str, log_path: Path | None, timeout: float = START_TIMEOUT):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise BenchError(f"{what} exited with {proc.returncode} while starting{_tail(log_path)}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            return
        time.sleep(0.05)
    raise BenchError(f"{what} is not listening on 127.0.0.1:{port} after {timeout:.0f}s{_tail(log_path)}")


def _tail(path: Path | None, lines: int = 15) -> str:
    if not path or not path.exists():
        return ""
    text = path.read_text(errors="replace").splitlines()[-lines:]
    return "\n  " + "\n  ".join(text) if text else ""


def _descendants(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        for task in Path(f"/proc/{p}/task").glob("*"):
            with contextlib.suppress(OSError):
                kids = [int(x) for x in (task / "children").read_text().split()]
                found += kids
                todo += kids
    return found


_CLK_TCK = os.sysconf("SC_CLK_TCK")


def _cpu_seconds(pids: list[int | str]) -> float:
    """utime + stime from /proc of processes (pid: all their threads) or of
    single threads ("pid/task/tid")."""
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)
    return total / _CLK_TCK


class Processes:
    """Every process the bench starts; stop_all() ends them (newest first), each
    with its own stop signal, then SIGKILL after STOP_TIMEOUT, descendants too."""

    def __init__(self) -> None:
        self._procs: list[tuple[str, subprocess.Popen, int]] = []

    def start(self, name: str, argv: list[str], *, stop_signal: int = signal.SIGTERM, **kw) -> subprocess.Popen:
        proc = subprocess.Popen(argv, start_new_session=True, preexec_fn=_die_with_parent, **kw)
        self._procs.append((name, proc, stop_signal))
        return proc

    def stop_all(self) -> None:
        while self._procs:
            name, proc, stop_signal = self._procs.pop()
            kids = _descendants(proc.pid)
            if proc.poll() is None:
                say(f"stopping {name} (pid {proc.pid})")
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(stop_signal)
                try:
                    proc.wait(STOP_TIMEOUT)
                except subprocess.TimeoutExpired:
                    say(f"{name} did not stop in {STOP_TIMEOUT:.0f}s: SIGKILL")
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
            for kid in kids:  # e.g. the gateway's instance, nginx's worker: normally gone with their parent
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(kid, 0)
                    time.sleep(0.2)
                    os.kill(kid, signal.SIGKILL)
                    say(f"killed leftover pid {kid} of {name}")
            for stream in (proc.stdin, proc.stdout):
                if stream:
                    with contextlib.suppress(OSError):
                        stream.close()


# -- nginx ------------------------------------------------------------------------------------

NGINX_CONF = """\
# Private nginx for bench/echo_latency.py: the reference grpc_pass proxy.
daemon off;
master_process on;
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/client_body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    upstream instance {{
        server 127.0.0.1:{upstream_port};
        keepalive 32;
    }}
    server {{
        listen 127.0.0.1:{port} http2;
        location / {{
            grpc_pass grpc://instance;
        }}
    }}
}}
"""


def make_certificate(directory: Path) -> tuple[str, str, str]:
    """A CA and a server certificate for 127.0.0.1 signed by it (ECDSA P-256, one day), as
    PEM files in `directory`: (CA file, certificate file, key file)."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)

    def build(subject: str, issuer: str, public_key):
        return (x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
                .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
                .public_key(public_key).serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1)))
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = (build("myservice bench CA", "myservice bench CA", ca_key.public_key())
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True).sign(ca_key, hashes.SHA256()))
    cert = (build("myservice bench gateway", "myservice bench CA", key.public_key())
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                                                        x509.DNSName("localhost")]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    paths = directory / "tls-ca.pem", directory / "tls-cert.pem", directory / "tls-key.pem"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return tuple(str(p) for p in paths)


def find_nginx() -> str | None:
    return shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.access(p, os.X_OK)), None)


def ensure_nginx() -> str:
    found = find_nginx()
    if found:
        return found
    if os.geteuid() != 0:
        raise BenchError("nginx is not installed and this is not root: install it (apt-get install -y nginx-light) "
                         "or run the bench as root, which installs it")
    say("nginx is not installed: installing Debian's nginx-light with apt-get (as root; the reference grpc_pass "
        "proxy). Its system service is not started: the bench runs a private nginx.")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    # Keep the package's postinst from starting a system nginx on :80 (what Docker images do too).
    policy = Path("/usr/sbin/policy-rc.d")
    made_policy = not policy.exists()
    if made_policy:
        policy.write_text("#!/bin/sh\n# temporary, bench/echo_latency.py: no service starts during install\nexit 101\n")
        policy.chmod(0o755)
    try:
        for attempt in (["apt-get", "install", "-y", "--no-install-recommends", "nginx-light"],
                        ["apt-get", "update"],
                        ["apt-get", "install", "-y", "--no-install-recommends", "nginx-light"],
                        ["apt-get", "install", "-y", "--no-install-recommends", "nginx"]):
            say("running: " + " ".join(attempt))
            subprocess.run(attempt, env=env, stdin=subprocess.DEVNULL, timeout=600, check=False)
            if attempt[1] == "install" and find_nginx():
                break
    finally:
        if made_policy:
            policy.unlink()
    found = find_nginx()
    if not found:
        raise BenchError("could not install nginx (apt-get install -y nginx-light failed; see above)")
    say(f"nginx installed: {found}")
    return found


def nginx_version(binary: str) -> str:
    out = subprocess.run([binary, "-v"], capture_output=True, text=True, timeout=10)
    return (out.stderr or out.stdout).strip().replace("nginx version: ", "")


# -- the run ----------------------------------------------------------------------------------

class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.procs = Processes()
        self.tmp = Path(tempfile.mkdtemp(prefix="myservice-bench-"))
        self.worker: subprocess.Popen | None = None
        self.info: dict = {}
        self.gateway_pid: int | None = None
        self.cpu_pids: dict[str, dict[str, list[int]]] = {}
        self.worker_pid = 0

    def close(self) -> None:
        self.procs.stop_all()  # the worker first (SIGTERM): it may be mid-measurement
        if self.args.keep_logs:
            say(f"logs kept in {self.tmp}")
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)

    # worker I/O
    def _ask(self, command: dict, timeout: float) -> dict:
        assert self.worker and self.worker.stdin and self.worker.stdout
        self.worker.stdin.write(json.dumps(command) + "\n")
        self.worker.stdin.flush()
        return self._reply(timeout)

    def _reply(self, timeout: float) -> dict:
        ready, _, _ = select.select([self.worker.stdout], [], [], timeout)
        line = self.worker.stdout.readline() if ready else ""
        if not line:
            raise BenchError(f"the load worker did not answer within {timeout:.0f}s (exit code {self.worker.poll()})")
        reply = json.loads(line)
        if not reply.get("ok"):
            raise BenchError(f"load worker: {reply.get('error')}")
        return reply

    def _read_announce(self, proc: subprocess.Popen, log_path: Path, what: str = "instance") -> int:
        ready, _, _ = select.select([proc.stdout], [], [], START_TIMEOUT)
        line = proc.stdout.readline() if ready else b""
        if not line.startswith(b"LISTENING "):
            raise BenchError(f"{what} did not announce its port (got {line!r}){_tail(log_path)}")
        return int(line.split()[1])

    def start(self) -> dict[str, str]:
        nginx = ensure_nginx()
        say(f"temp dir {self.tmp}")
        myservice = str(BIN / "myservice")
        # (a) the direct instance; nginx forwards to this same instance.
        log = self.tmp / "instance.log"
        instance = self.procs.start("instance", [
            myservice, "instance", "--host", "127.0.0.1", "--port", "0", "--announce-port",
            "--pod-name", "bench-direct", "--exit-with-parent", str(os.getpid())],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log.open("wb"))
        instance_port = self._read_announce(instance, log)
        say(f"instance (direct) pid {instance.pid} on 127.0.0.1:{instance_port}")
        # (b) nginx grpc_pass -> that instance.
        nginx_port = _free_port()
        conf = self.tmp / "nginx.conf"
        conf.write_text(NGINX_CONF.format(tmp=self.tmp, port=nginx_port, upstream_port=instance_port))
        nlog = self.tmp / "nginx-error.log"
        proc = self.procs.start("nginx", [nginx, "-p", str(self.tmp), "-c", str(conf), "-e", str(nlog)],
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=(self.tmp / "nginx-stderr.log").open("wb"))
        _wait_port(nginx_port, proc, "nginx", self.tmp / "nginx-stderr.log")
        say(f"nginx {nginx_version(nginx)} pid {proc.pid} on 127.0.0.1:{nginx_port} -> 127.0.0.1:{instance_port}")
        # (c) the bare grpc.aio proxy -> that instance.
        blog = self.tmp / "bare.log"
        bare = self.procs.start("bare proxy", [
            sys.executable, str(Path(__file__).resolve().parent / "bare_proxy.py"),
            "--upstream", f"127.0.0.1:{instance_port}"],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=blog.open("wb"))
        bare_port = self._read_announce(bare, blog, "bare proxy")
        say(f"bare grpc.aio proxy pid {bare.pid} on 127.0.0.1:{bare_port} -> 127.0.0.1:{instance_port}")
        # (d) the gateway, with its local backend (its instance starts at our first call).
        gw, gateway_port = self._start_gateway("gateway", None)
        self.gateway_pid = gw.pid
        gateways = {"gateway": (gw, gateway_port)}
        # (e) the gateway behind its HAProxy front.
        if "front" in self.args.targets:
            gateways["front"] = self._start_gateway("front", None, front="haproxy")
        # (f) the same with TLS at HAProxy.
        tls_ca = None
        if "front-tls" in self.args.targets:
            tls_ca, cert, key = make_certificate(self.tmp)
            gateways["front-tls"] = self._start_gateway("front-tls", None, front="haproxy",
                                                        extra=("--tls-cert", cert, "--tls-key", key))
        if self.args.compare_gateway:
            gateways[BASELINE] = self._start_gateway(BASELINE, self.args.compare_gateway)
        # The load generator.
        self.worker = self.procs.start("load worker", [
            sys.executable, str(Path(__file__).resolve()), "--worker", "--client", self.args.client],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        hello = self._reply(START_TIMEOUT)
        self.info.update(grpc=hello["grpc"], nginx=nginx_version(nginx))
        direct_sid = f"bench-direct-{uuid.uuid4().hex[:8]}"
        addresses = {"direct": f"127.0.0.1:{instance_port}", "nginx": f"127.0.0.1:{nginx_port}",
                     "bare": f"127.0.0.1:{bare_port}",
                     **{name: f"127.0.0.1:{port}" for name, (_, port) in gateways.items()}}
        for name in addresses:
            sid = f"bench-{name}-{uuid.uuid4().hex[:8]}" if name in gateways else direct_sid
            reply = self._ask({"op": "connect", "name": name, "address": addresses[name], "session_id": sid,
                               "login": name in gateways, "tls_ca": tls_ca if name == "front-tls" else None},
                              timeout=START_TIMEOUT * 2)
            say(f"{name}: echo ok (pod_name={reply['pod_name']}, {reply['request_bytes']}-byte request)")
            self.info["request_bytes"] = reply["request_bytes"]
        # Whose CPU time each path costs (the client's is the worker's, the same for all).
        self.cpu_pids = {"direct": {"instance": [instance.pid]},
                         "nginx": {"nginx": [proc.pid] + _descendants(proc.pid), "instance": [instance.pid]},
                         "bare": {"bare": [bare.pid], "instance": [instance.pid]}}
        for name, (p, _) in gateways.items():
            # "loop": the gateway's main thread alone (the asyncio loop), the rest is gRPC's own threads.
            kids = _descendants(p.pid)
            haproxy = [k for k in kids if _comm(k) == "haproxy"]
            self.cpu_pids[name] = {"gateway": [p.pid], "loop": [f"{p.pid}/task/{p.pid}"],
                                   "instance": [k for k in kids if k not in haproxy]}
            if haproxy:
                self.cpu_pids[name]["haproxy"] = haproxy
            say(f"{name}'s instance pid(s): {self.cpu_pids[name]['instance']}")
        self.worker_pid = self.worker.pid
        if self.args.profile:
            self._start_profiler(gw.pid)
        if self.args.pause_after_start:
            say(f"pausing {self.args.pause_after_start}s (attach a profiler to pid {gw.pid} now)")
            time.sleep(self.args.pause_after_start)
        return addresses

    def _start_gateway(self, name: str, source: str | None, front: str = "none",
                       extra: tuple[str, ...] = ()) -> tuple[subprocess.Popen, int]:
        port = _free_port()
        log = self.tmp / f"{name}.log"
        env = dict(os.environ)
        if source:  # its myservice_gateway package comes first on the path
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(Path(source).resolve()), env.get("PYTHONPATH")]))
        proc = self.procs.start(name, [
            str(BIN / "myservice"), "up", "--host", "127.0.0.1", "--port", str(port), "--max-instances", "2",
            "--front", front, *extra],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log.open("wb"), env=env)
        _wait_port(port, proc, name, log)
        say(f"{name} pid {proc.pid} on 127.0.0.1:{port}" + (f" (myservice_gateway from {source})" if source else ""))
        return proc, port

    def _start_profiler(self, pid: int) -> None:
        py_spy = shutil.which("py-spy") or str(BIN / "py-spy")
        if not os.access(py_spy, os.X_OK):
            raise BenchError("--profile needs py-spy: .venv/bin/pip install py-spy")
        argv = [py_spy, "record", "--pid", str(pid), "--rate", "250", "--format", "raw",
                "--output", str(Path(self.args.profile).resolve()), "--threads"]
        if self.args.profile_native:
            argv.append("--native")
        # py-spy writes its output when interrupted: SIGINT is its stop signal.
        self.procs.start("py-spy", argv, stop_signal=signal.SIGINT, stdin=subprocess.DEVNULL,
                         stdout=subprocess.DEVNULL, stderr=(self.tmp / "py-spy.log").open("wb"))
        time.sleep(1.0)
        say(f"py-spy recording gateway pid {pid} into {self.args.profile}")

    def measure(self) -> dict:
        a = self.args
        samples: dict[tuple[str, int], list[dict]] = {(t, c): [] for t in a.targets for c in a.concurrency}
        total = a.rounds * len(a.concurrency) * len(a.targets)
        done = 0
        deadline = time.monotonic() + a.time_limit
        for r in range(a.rounds):
            for c in a.concurrency:
                n = len(a.targets)
                order = a.targets[r % n:] + a.targets[:r % n]  # rotate: no target always goes first
                for target in order:
                    if time.monotonic() > deadline:
                        say(f"time limit {a.time_limit:.0f}s reached: reporting the rounds done")
                        return samples
                    limit = a.max_seconds * 2 + 60
                    if a.warmup:
                        self._ask({"op": "run", "name": target, "concurrency": c, "requests": a.warmup,
                                   "max_seconds": a.max_seconds}, timeout=limit)
                    groups = self.cpu_pids[target]
                    before = {g: _cpu_seconds(pids) for g, pids in groups.items()}
                    client_before = _cpu_seconds([self.worker_pid])
                    s = self._ask({"op": "run", "name": target, "concurrency": c, "requests": a.requests,
                                   "max_seconds": a.max_seconds}, timeout=limit)
                    calls = max(1, s["calls"] + s["errors"])
                    s["cpu_us_per_call"] = {g: (_cpu_seconds(groups[g]) - before[g]) / calls * 1e6 for g in groups}
                    s["cpu_us_per_call"]["client"] = (_cpu_seconds([self.worker_pid]) - client_before) / calls * 1e6
                    done += 1
                    samples[(target, c)].append(s)
                    err = f", {s['errors']} errors ({s['first_error']})" if s["errors"] else ""
                    say(f"[{done}/{total}] round {r + 1}/{a.rounds} c={c:<3} {target:<8} p50 {s['p50_ms']:.3f} ms  "
                        f"p99 {s['p99_ms']:.3f} ms  {s['throughput_per_s']:,.0f}/s  ({s['calls']} calls{err})")
                    if s["errors"] and not s["calls"]:
                        raise BenchError(f"every call to {target} failed: {s['first_error']}")
        return samples


def aggregate(samples: dict) -> list[dict]:
    rows = []
    for (target, c), runs in samples.items():
        if not runs:
            continue
        rows.append({
            "target": target, "concurrency": c, "rounds": len(runs),
            "p50_ms": statistics.median(s["p50_ms"] for s in runs),
            "p99_ms": statistics.median(s["p99_ms"] for s in runs),
            "throughput_per_s": statistics.median(s["throughput_per_s"] for s in runs),
            "cpu_us_per_call": {g: statistics.median(s["cpu_us_per_call"][g] for s in runs)
                                for g in runs[0]["cpu_us_per_call"]},
            "calls": sum(s["calls"] for s in runs), "errors": sum(s["errors"] for s in runs),
            "p50_ms_rounds": [round(s["p50_ms"], 4) for s in runs],
            "throughput_rounds": [round(s["throughput_per_s"], 1) for s in runs],
        })
    return rows


def ratios(rows: list[dict], samples: dict) -> list[dict]:
    """target/base for the gateway and the front: the ratio of the medians, and the
    median of the per-round ratios (targets of one round ran back to back, under the
    same noise)."""
    by = {(r["target"], r["concurrency"]): r for r in rows}

    def paired(target: str, base: str, c: int, key: str) -> float:
        pairs = list(zip(samples[(target, c)], samples[(base, c)]))
        return statistics.median(g[key] / b[key] for g, b in pairs) if pairs else float("nan")

    out = []
    for target in PROXIED:
        for c in sorted({r["concurrency"] for r in rows}):
            g = by.get((target, c))
            if not g:
                continue
            for base in ("direct", "nginx", "bare", BASELINE, "gateway"):
                b = by.get((base, c))
                if b and base != target:
                    out.append({"target": target, "concurrency": c, "vs": base,
                                "p50_ratio": g["p50_ms"] / b["p50_ms"], "p50_added_ms": g["p50_ms"] - b["p50_ms"],
                                "throughput_ratio": g["throughput_per_s"] / b["throughput_per_s"],
                                "p50_ratio_paired": paired(target, base, c, "p50_ms"),
                                "throughput_ratio_paired": paired(target, base, c, "throughput_per_s")})
    return out


def render(rows: list[dict], rats: list[dict], floor_concurrency: int) -> str:
    lines = [f"{'target':<9} {'callers':>7} {'p50 ms':>8} {'p99 ms':>8} {'calls/s':>9} {'rounds':>6}   "
             "CPU us/call (median): proxy + instance | client", "-" * 98]
    for r in sorted(rows, key=lambda r: (r["concurrency"], (TARGETS + (BASELINE,)).index(r["target"]))):
        cpu = r["cpu_us_per_call"]
        proxy = next((f"{g} {cpu[g]:.0f}" for g in ("nginx", "bare", "gateway") if g in cpu), "-")
        if "haproxy" in cpu:
            proxy = f"haproxy {cpu['haproxy']:.0f} + python {cpu['gateway']:.0f}"
        elif "loop" in cpu:
            proxy += f" (loop thread {cpu['loop']:.0f})"
        lines.append(f"{r['target']:<9} {r['concurrency']:>7} {r['p50_ms']:>8.3f} {r['p99_ms']:>8.3f} "
                     f"{r['throughput_per_s']:>9,.0f} {r['rounds']:>6}   {proxy} + instance {cpu['instance']:.0f} "
                     f"| client {cpu['client']:.0f}")
    failed = [f"{r['target']}@{r['concurrency']}: {r['errors']}" for r in rows if r["errors"]]
    if failed:
        lines.append("failed calls (not in the figures): " + ", ".join(failed))
    lines += ["", f"{'ratio':<18} {'callers':>7} {'p50':>7} {'throughput':>11}   "
              "(median of per-round ratios: p50, throughput)", "-" * 90]
    for x in rats:
        lines.append(f"{x['target'] + '/' + x['vs']:<18} {x['concurrency']:>7} {x['p50_ratio']:>6.2f}x {x['throughput_ratio']:>10.1%}"
                     f"   ({x['p50_ratio_paired']:.2f}x, {x['throughput_ratio_paired']:.1%})")
    lines.append("")
    for x in rats:
        if x["vs"] == "direct" and x["target"] in ("front", "front-tls"):
            tls = x["target"] == "front-tls"
            line = f"{'front-tls' if tls else 'front targets'} at {x['concurrency']} caller(s): " \
                   f"p50 +{x['p50_added_ms']:.3f} ms over direct{' (plaintext)' if tls else ''}"
            if x["concurrency"] == 1 and not tls:
                line += f" (<= +{FRONT_P50_ADDED_MS} ms: {'PASS' if x['p50_added_ms'] <= FRONT_P50_ADDED_MS else 'MISS'})"
            if x["concurrency"] == floor_concurrency:
                floor = FRONT_TLS_THROUGHPUT_RATIO if tls else FRONT_THROUGHPUT_RATIO
                line += (f"; throughput {x['throughput_ratio']:.1%} of direct (>= {floor:.0%}: "
                         f"{'PASS' if x['throughput_ratio'] >= floor else 'MISS'})")
            cpu = next((r["cpu_us_per_call"].get("haproxy") for r in rows
                        if r["target"] == x["target"] and r["concurrency"] == x["concurrency"]), None)
            if cpu is not None:
                line += f"; haproxy {cpu:.0f} us/call"
                if not tls:
                    line += f" (<= {FRONT_CPU_US:.0f}: {'PASS' if cpu <= FRONT_CPU_US else 'MISS'})"
            lines.append(line)
        elif x["vs"] == "direct" and x["target"] == "gateway":
            p50_ok = x["p50_ratio"] <= FLOOR_P50_RATIO
            line = (f"floor at {x['concurrency']} caller(s): p50 {x['p50_ratio']:.2f}x direct "
                    f"(<= {FLOOR_P50_RATIO}x: {'PASS' if p50_ok else 'FAIL'})")
            if x["concurrency"] == floor_concurrency:
                tp_ok = x["throughput_ratio"] >= FLOOR_THROUGHPUT_RATIO
                line += (f"; throughput {x['throughput_ratio']:.1%} of direct "
                         f"(>= {FLOOR_THROUGHPUT_RATIO:.0%}: {'PASS' if tp_ok else 'FAIL'})")
            lines.append(line)
    return "\n".join(lines)


def _comm(pid: int) -> str:
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/comm").read_text().strip()
    return ""


def machine_info() -> dict:
    cpu = ""
    with contextlib.suppress(OSError):
        cpu = next((l.split(":", 1)[1].strip() for l in Path("/proc/cpuinfo").read_text().splitlines()
                    if l.startswith("model name")), "")
    return {"cpus": os.cpu_count(), "cpu_model": cpu, "kernel": platform.release(),
            "python": platform.python_version(), "loadavg_start": os.getloadavg()}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog="See docs/benchmarks.md.")
    p.add_argument("--requests", type=int, default=2000, help="calls per measurement, split over the callers (default %(default)s)")
    p.add_argument("--warmup", type=int, default=200, help="unmeasured calls before each measurement (default %(default)s)")
    p.add_argument("--rounds", type=int, default=5, help="interleaved rounds; the table shows medians (default %(default)s)")
    p.add_argument("--concurrency", default="1,16", help="comma-separated caller counts (default %(default)s)")
    p.add_argument("--client", choices=("threads", "aio"), default="threads",
                   help="threads: N threads of a sync client; aio: N tasks of a grpc.aio client (default %(default)s)")
    p.add_argument("--max-seconds", type=float, default=20.0, help="cap on one measurement (default %(default)s)")
    p.add_argument("--time-limit", type=float, default=900.0, help="cap on all measurements (default %(default)s s)")
    p.add_argument("--json", metavar="PATH", help="also write the results as JSON to PATH ('-': stdout, table to stderr)")
    p.add_argument("--targets", default=",".join(TARGETS),
                   help="comma-separated subset of %(default)s (all are always started)")
    p.add_argument("--compare-gateway", metavar="DIR",
                   help=f"A/B: also run a gateway whose myservice_gateway package is imported from DIR "
                        f"(e.g. a copy of the previous version), as target {BASELINE!r}, interleaved with the rest")
    p.add_argument("--profile", metavar="FILE",
                   help="record the gateway with py-spy during the measurements into FILE (raw collapsed stacks; "
                        "needs .venv/bin/pip install py-spy); profiled figures are not comparable to plain runs")
    p.add_argument("--profile-native", action="store_true", help="with --profile: include native (C/Cython) frames")
    p.add_argument("--keep-logs", action="store_true", help="keep the temp dir (server logs, nginx.conf)")
    p.add_argument("--pause-after-start", type=float, default=0, metavar="S", help=argparse.SUPPRESS)
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.worker:
        return a
    try:
        a.concurrency = sorted({int(x) for x in a.concurrency.split(",") if x.strip()})
    except ValueError:
        p.error("--concurrency: comma-separated integers, e.g. 1,16")
    if not a.concurrency or min(a.concurrency) < 1 or max(a.concurrency) > 256:
        p.error("--concurrency: callers must be 1..256")
    a.targets = tuple(t for t in TARGETS if t in {x.strip() for x in a.targets.split(",")})
    if a.compare_gateway:
        if not (Path(a.compare_gateway) / "myservice_gateway" / "__init__.py").exists():
            p.error("--compare-gateway: DIR must contain the myservice_gateway package")
        a.targets += (BASELINE,)
    if not a.targets:
        p.error(f"--targets: some of {','.join(TARGETS)}")
    if a.requests < 1 or a.rounds < 1 or a.warmup < 0:
        p.error("--requests and --rounds must be >= 1, --warmup >= 0")
    return a


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        return worker_main(args.client)

    def terminate(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started with SIGINT ignored
    signal.signal(signal.SIGTERM, terminate)
    signal.signal(signal.SIGHUP, terminate)
    bench = Bench(args)
    info = machine_info()
    say(f"{info['cpus']} CPU(s) {info['cpu_model']}, load average {info['loadavg_start'][0]:.2f}; "
        f"{args.rounds} rounds x concurrency {args.concurrency} x {len(args.targets)} targets, "
        f"{args.requests} calls each (+{args.warmup} warm-up), {args.client} client")
    try:
        bench.start()
        samples = bench.measure()
    except KeyboardInterrupt:
        say("interrupted: cleaning up")
        return 130
    except BenchError as e:
        say(f"error: {e}")
        return 1
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)  # cleanup is not interrupted
        bench.close()
        say("all processes stopped")
    info.update(bench.info, loadavg_end=os.getloadavg())
    rows = aggregate(samples)
    rats = ratios(rows, samples)
    table = render(rows, rats, max(args.concurrency))
    header = (f"MyServiceEcho, {info.get('request_bytes')}-byte requests, {args.client} client in its own process, "
              f"medians over {args.rounds} interleaved rounds of {args.requests} calls; "
              f"{info['cpus']} CPUs, load average {info['loadavg_start'][0]:.1f} -> {info['loadavg_end'][0]:.1f}; "
              f"grpcio {info.get('grpc')}, nginx {info.get('nginx')}")
    to_stdout_json = args.json == "-"
    print(header + "\n\n" + table, file=sys.stderr if to_stdout_json else sys.stdout, flush=True)
    if args.json:
        doc = json.dumps({"machine": info, "args": {k: v for k, v in vars(args).items() if k not in ("worker",)},
                          "results": rows, "ratios": rats, "samples": {f"{t}@{c}": v for (t, c), v in samples.items()}},
                         indent=2)
        if to_stdout_json:
            print(doc)
        else:
            Path(args.json).write_text(doc + "\n")
            say(f"JSON written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
