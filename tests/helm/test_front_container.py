"""The chart's front container, run for real: its command as rendered (`/bin/sh -c` and the
script of the myservice.frontScript helper), with HAProxy 3.0 on PATH and
MYSERVICE_FRONT_DIRECTORY a directory of the test's, on a small haproxy.cfg of the test's
(a TCP frontend forwarding to an echo server the test runs).

What it must do in the pod: wait for the haproxy.cfg the gateway container writes, run
HAProxy on it, turn Kubernetes' SIGTERM into HAProxy's SOFT stop (listeners closed,
established connections served to their end: a hard stop would cut them), and exit with
HAProxy's status. SIGTERM goes to the script alone, as the kubelet sends it to the
container's first process, never to its process group.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import socketserver
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest

from .conftest import find_helm

HAPROXY_SBIN = Path("/var/cache/myservice/haproxy/current/sbin")
HAPROXY = HAPROXY_SBIN / "haproxy"

if not os.access(HAPROXY, os.X_OK):
    pytest.skip(f"no HAProxy 3.0 at {HAPROXY}: `make test` installs it (hack/haproxy/install.sh)",
                allow_module_level=True)
if find_helm() is None:  # conftest's helm fixture fails the chart tests for it: nothing to add here
    pytest.skip("no helm to render the front container's command", allow_module_level=True)


# --- the script, as rendered ----------------------------------------------------

@pytest.fixture(scope="module")
def command(render) -> list[str]:
    from .test_front_values import front_of

    rendered = front_of(render())["command"]
    assert rendered[:2] == ["/bin/sh", "-c"] and len(rendered) == 3
    return rendered


@pytest.fixture
def directory():
    # short: HAProxy's runtime socket lives there (a Unix socket path has at most 107 bytes)
    path = Path(tempfile.mkdtemp(prefix="front-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


class Front:
    """The front container's process: its command, started in a process group of its own."""

    def __init__(self, command: list[str], directory: Path) -> None:
        self.directory = directory
        self.log = open(directory.parent / f"{directory.name}.log", "w+b")
        env = {**os.environ, "PATH": f"{HAPROXY_SBIN}:{os.environ.get('PATH', '/usr/bin:/bin')}",
               "MYSERVICE_FRONT_DIRECTORY": str(directory)}
        self.process = subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL, stdout=self.log,
                                        stderr=subprocess.STDOUT, start_new_session=True)

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read().decode(errors="replace")

    def terminate(self) -> None:
        """The kubelet's stop: SIGTERM to the container's first process (the script) only."""
        os.kill(self.process.pid, signal.SIGTERM)

    def wait(self, timeout: float) -> int:
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the front script still runs after {timeout} s; its output:\n{self.output()}")

    def children(self) -> list[tuple[int, str]]:
        """(pid, name) of the script's child processes (sleep while it waits, then haproxy)."""
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            name, rest = stat[stat.index("(") + 1:stat.rindex(")")], stat[stat.rindex(")") + 2:].split()
            if int(rest[1]) == self.process.pid:  # ppid
                found.append((int(entry.name), name))
        return found

    def kill(self) -> None:
        try:
            os.killpg(self.process.pid, signal.SIGKILL)  # the script and any haproxy it started
        except ProcessLookupError:
            pass
        self.process.wait(timeout=5)
        self.log.close()
        os.unlink(self.log.name)


@pytest.fixture
def start(command, directory):
    started: list[Front] = []

    def _start() -> Front:
        front = Front(command, directory)
        started.append(front)
        return front

    yield _start
    for front in started:
        front.kill()


# --- what HAProxy fronts: an echo server -------------------------------------------

class EchoHandler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        while data := self.request.recv(65536):
            self.request.sendall(data)


@pytest.fixture
def echo():
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), EchoHandler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_config(directory: Path, text: str) -> None:
    """As the gateway writes it (fronttls.write_private): whole, in one rename."""
    tmp = directory / "haproxy.cfg.tmp"
    tmp.write_text(text)
    os.replace(tmp, directory / "haproxy.cfg")


def config(directory: Path, port: int, backend_port: int) -> str:
    return f"""\
global
    stats socket {directory}/runtime.sock mode 600 level admin

defaults
    mode tcp
    timeout connect 2s
    timeout client 30s
    timeout server 30s

frontend public
    bind 127.0.0.1:{port}
    default_backend echo

backend echo
    server echo 127.0.0.1:{backend_port}
"""


def connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=2)


def answers(port: int) -> bool:
    try:
        connect(port).close()
        return True
    except OSError:
        return False


def wait_until(condition, timeout: float, what: str, front: Front) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"not within {timeout} s: {what}; the front script's output:\n{front.output()}")
        if front.process.poll() is not None:
            pytest.fail(f"the front script ended ({front.process.returncode}) before: {what}\n{front.output()}")
        time.sleep(0.02)


def echoes(conn: socket.socket, data: bytes) -> bool:
    conn.sendall(data)
    received = b""
    while len(received) < len(data):
        chunk = conn.recv(65536)
        if not chunk:
            break
        received += chunk
    return received == data


def waiting(front: Front) -> bool:
    """The script is in its wait loop (its trap set): a `sleep` child, no haproxy."""
    names = [name for _, name in front.children()]
    return "sleep" in names and "haproxy" not in names


# --- the tests ------------------------------------------------------------------------

def test_it_waits_for_the_configuration_then_runs_haproxy_on_it(start, directory, echo):
    port = free_port()
    front = start()
    wait_until(lambda: waiting(front), 3, "the script waits for haproxy.cfg", front)
    time.sleep(0.6)  # a few of its 0.2 s rounds: still waiting, nothing bound, no HAProxy
    assert front.process.poll() is None, front.output()
    assert waiting(front)
    assert not answers(port)
    assert not (directory / "runtime.sock").exists()

    write_config(directory, config(directory, port, echo))
    wait_until(lambda: answers(port), 5, f"HAProxy answers on {port}", front)
    assert "haproxy" in [name for _, name in front.children()]
    with connect(port) as conn:
        assert echoes(conn, b"through HAProxy\n")
    assert (directory / "runtime.sock").is_socket()


def test_sigterm_is_haproxys_soft_stop_established_calls_end_then_status_0(start, directory, echo):
    port = free_port()
    write_config(directory, config(directory, port, echo))
    front = start()
    wait_until(lambda: answers(port), 5, f"HAProxy answers on {port}", front)
    established = connect(port)
    try:
        assert echoes(established, b"before\n")
        front.terminate()
        # listeners closed: a new connection is refused...
        wait_until(lambda: not answers(port), 2, "new connections refused after SIGTERM", front)
        # ...while the established one is served on (a hard stop would have cut it), and HAProxy waits for it
        assert echoes(established, b"after SIGTERM, still served\n")
        time.sleep(0.3)
        assert echoes(established, b"and still\n")
        assert front.process.poll() is None, front.output()
    finally:
        established.close()
    # its last connection gone, HAProxy ends, and the script with its status
    assert front.wait(timeout=5) == 0, front.output()


def test_sigterm_with_no_connection_open_ends_haproxy_and_the_script_with_status_0(start, directory, echo):
    port = free_port()
    write_config(directory, config(directory, port, echo))
    front = start()
    wait_until(lambda: answers(port), 5, f"HAProxy answers on {port}", front)
    front.terminate()
    assert front.wait(timeout=3) == 0, front.output()
    assert not answers(port)


def test_sigterm_while_waiting_for_the_configuration_exits_0_promptly(start, directory):
    front = start()
    wait_until(lambda: waiting(front), 3, "the script waits for haproxy.cfg", front)
    began = time.monotonic()
    front.terminate()
    assert front.wait(timeout=3) == 0, front.output()
    assert time.monotonic() - began < 1.5
    assert not (directory / "runtime.sock").exists()


def test_its_exit_status_is_haproxys_for_a_configuration_haproxy_refuses(start, directory, echo):
    port = free_port()
    write_config(directory, config(directory, port, echo) + "    no-such-keyword here\n")
    # HAProxy's own verdict on that file, run as the script runs it
    refused = subprocess.run([str(HAPROXY), "-db", "-f", str(directory / "haproxy.cfg")],
                             capture_output=True, text=True, timeout=10)
    assert refused.returncode != 0 and "no-such-keyword" in refused.stdout + refused.stderr
    front = start()
    status = front.wait(timeout=5)
    assert status == refused.returncode, front.output()
    assert "no-such-keyword" in front.output()
    assert not answers(port)
