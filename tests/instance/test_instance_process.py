"""An instance as a real process, called directly over loopback."""
import subprocess
import sys

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from myservice.v1 import myservice_pb2 as pb
from myservice.v1 import myservice_pb2_grpc as pb_grpc

from ..conftest import BIN


@pytest.fixture
def instance():
    proc = subprocess.Popen([str(BIN / "myservice"), "instance", "--host", "127.0.0.1", "--port", "0",
                             "--pod-name", "pod-under-test", "--announce-port"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = proc.stdout.readline()
    assert line.startswith("LISTENING "), line
    channel = grpc.insecure_channel(f"127.0.0.1:{line.split()[1]}")
    yield proc, pb_grpc.MyServiceStub(channel), channel
    channel.close()
    proc.kill()
    proc.wait()


def sid(s):
    return (("session-id", s),)


def test_health_is_serving(instance):
    _, _, channel = instance
    reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


def test_echo_binds_then_conflict(instance):
    _, stub, _ = instance
    r = stub.MyServiceEcho(pb.EchoRequest(value="v"), metadata=sid("A"), timeout=5)
    assert (r.client_value, r.server_value, r.pod_name, r.server_session_id, r.client_session_id, r.index,
            r.server_method) == ("v", "my_service", "pod-under-test", "A", "A", 0, "MyServiceEcho")
    with pytest.raises(grpc.RpcError) as e:
        stub.MyServiceEcho(pb.EchoRequest(value="v"), metadata=sid("B"), timeout=5)
    assert e.value.code() == grpc.StatusCode.INTERNAL
    assert e.value.details() == "Session conflict: was=A, now=B"
    with pytest.raises(grpc.RpcError) as e:
        list(stub.MyServiceEchoStream(pb.EchoStreamRequest(value="v", count=2), metadata=sid("B"), timeout=5))
    assert (e.value.code(), e.value.details()) == (grpc.StatusCode.INTERNAL, "Session conflict: was=A, now=B")


def test_shutdown_unbound_then_mismatch_then_ok_and_exit(instance):
    proc, stub, _ = instance
    with pytest.raises(grpc.RpcError) as e:
        stub.MyServiceShutdown(pb.ShutdownRequest(), metadata=sid("A"), timeout=5)
    assert (e.value.code(), e.value.details()) == (grpc.StatusCode.PERMISSION_DENIED, "Server session is not set")
    stub.MyServiceEcho(pb.EchoRequest(value="v"), metadata=sid("A"), timeout=5)
    with pytest.raises(grpc.RpcError) as e:
        stub.MyServiceShutdown(pb.ShutdownRequest(), metadata=sid("B"), timeout=5)
    assert (e.value.code(), e.value.details()) == (
        grpc.StatusCode.PERMISSION_DENIED, "Client session mismatch: client=B, server=A")
    assert proc.poll() is None  # errors do not end the instance
    r = stub.MyServiceShutdown(pb.ShutdownRequest(), metadata=sid("A"), timeout=5)
    assert (r.pod_name, r.server_session_id, r.client_session_id, r.index, r.server_method) == (
        "pod-under-test", "A", "A", 0, "MyServiceShutdown")
    assert proc.wait(timeout=10) == 0


def test_streams_index_increase(instance):
    _, stub, _ = instance
    replies = list(stub.MyServiceEchoStream(pb.EchoStreamRequest(value="s", count=3), metadata=sid("A"), timeout=5))
    assert [(r.index, r.client_value, r.server_method) for r in replies] == [
        (0, "s", "MyServiceEchoStream"), (1, "s", "MyServiceEchoStream"), (2, "s", "MyServiceEchoStream")]
    chat = list(stub.MyServiceChat(iter([pb.EchoRequest(value="a"), pb.EchoRequest(value="b")]), metadata=sid("A"), timeout=5))
    assert [(r.index, r.client_value) for r in chat] == [(0, "a"), (1, "b")]


def test_bad_port_is_a_clear_error():
    r = subprocess.run([sys.executable, "-m", "myservice_instance", "--port", "70000"], capture_output=True, text=True)
    assert r.returncode == 2
    assert "--port must be an integer 0..65535, got '70000'" in r.stderr


def test_unix_socket_listener(tmp_path):
    path = tmp_path / "inst.sock"
    proc = subprocess.Popen([str(BIN / "myservice"), "instance", "--unix-socket", str(path), "--pod-name", "uds",
                             "--announce-port"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout.readline() == f"LISTENING unix:{path}\n"
        with grpc.insecure_channel(f"unix:{path}") as channel:
            reply = pb_grpc.MyServiceStub(channel).MyServiceEcho(pb.EchoRequest(value="u"), metadata=sid("A"), timeout=5)
        assert (reply.pod_name, reply.client_value) == ("uds", "u")
    finally:
        proc.kill()
        proc.wait()


def test_sigterm_ends_it_gracefully_with_0(instance):
    import signal
    import threading

    proc, stub, _ = instance
    stub.MyServiceEcho(pb.EchoRequest(value="v"), metadata=sid("A"), timeout=5)
    # A chat left open is in flight: SIGTERM lets it finish within the grace, then exits 0.
    requests_done = threading.Event()

    def requests():
        yield pb.EchoRequest(value="a")
        requests_done.wait(10)
    chat = stub.MyServiceChat(requests(), metadata=sid("A"), timeout=10)
    assert next(chat).client_value == "a"
    proc.send_signal(signal.SIGTERM)
    requests_done.set()  # the client ends its stream: the call completes normally
    assert [r.client_value for r in chat] == []
    assert proc.wait(timeout=10) == 0
