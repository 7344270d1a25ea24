"""A command as a session's instance (`myservice up --instance-command CMD`): any
program that follows the instance contract (docs/instances.md), ours or not.

It gets the contract's environment (loopback TCP: 127.0.0.1 and a free port the
gateway picked; POD_NAME; the limits; its own termination log file; the session
when one is known), runs under `launch` so that it dies with the gateway, is
ready once grpc.health.v1 says SERVING for "", and says why it ended in its
termination log ("<Reason>: <message>"), which the gateway reads at its exit.
The stdout protocol of our own instance ('LISTENING', 'ENDED') is not asked of it:
its stdout and stderr are the gateway's."""
from __future__ import annotations

import asyncio
import os
import socket
import sys
from collections.abc import Mapping, Sequence

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from myservice_api import settings
from myservice_instance import settings as contract_env

from .base import SessionKey

HOST = "127.0.0.1"
# The readiness channel retries a refused connection quickly: a command binds its
# port some time after it starts, and gRPC's default first reconnect waits 1 s.
_READY_CHANNEL_OPTIONS = (("grpc.initial_reconnect_backoff_ms", 20), ("grpc.min_reconnect_backoff_ms", 20),
                          ("grpc.max_reconnect_backoff_ms", 200), ("grpc.enable_retries", 0))


def free_port(host: str = HOST) -> int:
    """A port free on `host` now. The command binds it a moment later: another process
    could take it in between (then the start fails and a later call tries again)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def launcher(command: Sequence[str], parent_pid: int) -> list[str]:
    """The argv that runs `command` under launch.py (dies with process `parent_pid`)."""
    return [sys.executable, "-m", "myservice_gateway.backends.launch", str(parent_pid), "--", *command]


def environment(base: Mapping[str, str], *, name: str, port: int, termination_log: str, wait_for_claim: bool,
                session: SessionKey | None) -> dict[str, str]:
    """`base` (the limits already in it) plus the contract's variables for this command."""
    env = dict(base)
    env.update({
        contract_env.HOST_ENV: HOST,
        settings.INSTANCE_PORT.env: str(port),
        contract_env.POD_NAME_ENV: name,
        contract_env.TERMINATION_LOG_ENV: termination_log,
    })
    if wait_for_claim:  # a pool member: claimed by its session's first call, as on Kubernetes
        env[contract_env.WAIT_FOR_CLAIM_ENV] = "1"
    if session is not None:
        env[contract_env.SESSION_ID_ENV] = session.session_id
        env[contract_env.SESSION_USER_ENV] = session.username
    return env


async def wait_serving(address: str, process: asyncio.subprocess.Process, timeout: float) -> None:
    """Return once `address` answers grpc.health.v1 Check("") with SERVING; raise
    RuntimeError if the process exits first or the health service is refused, and
    TimeoutError after `timeout` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    pause = 0.02
    async with grpc.aio.insecure_channel(address, options=_READY_CHANNEL_OPTIONS) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while True:
            if process.returncode is not None:
                raise RuntimeError(f"exited with {process.returncode} before it was ready")
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(f"not SERVING (grpc.health.v1) on {address} within {timeout:g}s")
            try:
                reply = await stub.Check(health_pb2.HealthCheckRequest(service=""), wait_for_ready=True,
                                         timeout=min(remaining, 0.5))
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.aio.AioRpcError as e:
                if e.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                    raise RuntimeError(f"its health check answered {e.code().name}: {e.details()} "
                                       "(an instance must serve grpc.health.v1.Health)") from None
            await asyncio.sleep(pause)  # listening, not SERVING yet
            pause = min(pause * 2, 0.2)


def ending_of(termination_log: str | None) -> str:
    """'Reason (message)' from the '<Reason>: <message>' a command wrote, '' for none;
    any other text as it is (its first line, at most 200 characters)."""
    if not termination_log:
        return ""
    try:
        with open(termination_log, encoding="utf-8", errors="replace") as f:
            text = f.read(4096).strip()
        os.unlink(termination_log)
    except OSError:
        return ""
    first = text.splitlines()[0][:200] if text else ""
    reason, colon, message = first.partition(": ")
    if colon and reason.isidentifier():
        return f"{reason} ({message})"
    return first
