"""A warm session's first call may reach its pool pod before the operator has labelled
it (the status, Ready on the pod, is written first; the labels follow in the
background). That is safe only if the instance needs nothing of the claim but the
call itself: it binds to the session of its first MyService call and starts its
clocks then (service_image/myservice_instance: limits.Activity.call_started, the
servicer's SessionBinding); it reads no label, no downward-API file, no Kubernetes
API, and on Kubernetes gets no claim signal (SIGUSR1 is the local backend's).

Proved on a real instance process started with exactly the env a pool pod's
manifest gives it (pool.make_member), no signal sent, no Kubernetes around: it
waits unclaimed past its idle timeout, answers the first call at once, is bound to
that session from then on, and its idle clock ran from that call.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time

import grpc
import pytest

from myservice.v1 import myservice_pb2 as pb
from myservice.v1 import myservice_pb2_grpc as pb_grpc
from myservice_operator import pool
from myservice_operator.pods import CONTAINER_NAME
from myservice_operator.settings import Settings

SETTINGS = Settings(namespace="ns", warm_pool_size=1, session_idle_timeout_seconds=1)


def member_env() -> dict[str, str]:
    """The instance container's env as kubelet would set it for a pool pod: the manifest's
    values, POD_NAME from its fieldRef; nothing of Kubernetes besides."""
    manifest = pool.make_member(SETTINGS, template="t", suffix="first")
    container = next(c for c in manifest["spec"]["containers"] if c["name"] == CONTAINER_NAME)
    env = {item["name"]: item["value"] for item in container["env"] if "value" in item}
    env["POD_NAME"] = manifest["metadata"]["name"]
    assert env[pool.WAIT_FOR_CLAIM_ENV] == "1"
    base = {k: v for k, v in os.environ.items()
            if not k.startswith(("KUBERNETES_", "MYSERVICE_")) and k != "KUBECONFIG"}
    return {**base, **env}


def echo(address: str, session: str) -> pb.EchoResponse:
    with grpc.insecure_channel(address) as channel:
        return pb_grpc.MyServiceStub(channel).MyServiceEcho(pb.EchoRequest(value="v"),
                                                             metadata=(("session-id", session),), timeout=5)


def test_an_unlabelled_pool_instance_answers_its_first_call_and_that_call_is_its_claim():
    proc = subprocess.Popen([sys.executable, "-m", "myservice_instance", "--host", "127.0.0.1", "--port", "0",
                             "--announce-port", "--termination-log", ""],
                            env=member_env(), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        line = proc.stdout.readline()
        assert line.startswith("LISTENING "), line
        address = f"127.0.0.1:{line.split()[1]}"
        time.sleep(2.5)  # over two idle timeouts in the pool: unclaimed, it does not end
        assert proc.poll() is None
        called = time.monotonic()
        reply = echo(address, "s1")  # the gateway's first call, the pod not labelled
        assert (reply.server_session_id, reply.pod_name) == ("s1", "mss-pool-first")
        with pytest.raises(grpc.RpcError) as other:
            echo(address, "s2")  # bound to the first caller's session
        assert other.value.code() == grpc.StatusCode.INTERNAL
        assert other.value.details() == "Session conflict: was=s1, now=s2"
        assert proc.wait(timeout=15) == 0  # its idle timeout, counted from the first call
        assert 0.9 < time.monotonic() - called < 12
        assert proc.stdout.read() == "ENDED IdleTimeout no call for 1s\n"
    finally:
        proc.kill()
        proc.wait()
