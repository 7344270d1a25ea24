"""`python -m myservice_instance` / `myservice instance`: one session instance."""
from __future__ import annotations

import argparse
import asyncio
import ctypes
import dataclasses
import logging
import os
import signal
import sys

from myservice_api import settings
from myservice_api.settings import declare

from .limits import Limits
from .server import DEFAULT_TERMINATION_LOG, default_termination_log, serve

# Set to 1 in a Kubernetes pool pod's env (the operator's pool, pods.make_pool_pod).
WAIT_FOR_CLAIM_ENV = "MYSERVICE_INSTANCE_WAIT_FOR_CLAIM"


@dataclasses.dataclass(frozen=True)
class InstanceSettings:
    """What an instance reads from its flags and environment (a flag wins)."""
    port: int = settings.INSTANCE_PORT.field(
        flag="--port", help="port to listen on; 0 picks a free one")
    idle_timeout: float = settings.SESSION_IDLE_TIMEOUT.field(
        flag="--idle-timeout",
        help="end after this long without a MyService call (an open stream is a call; health checks are not)")
    max_lifetime: float = settings.SESSION_MAX_LIFETIME.field(
        flag="--max-lifetime", help="end this long after the start, calls or not")
    wait_for_claim: bool = declare(
        False, env=WAIT_FOR_CLAIM_ENV, flag="--wait-for-claim", parse=lambda raw: raw.strip() == "1",
        help="a warm pool member: the idle and lifetime clocks start at SIGUSR1 (the local backend's "
             "claim for a session) or at the first MyService call, not at the start (the variable: "
             "on if 1, as in a Kubernetes pool pod)")

    @property
    def limits(self) -> Limits:
        return Limits(idle_timeout=self.idle_timeout, max_lifetime=self.max_lifetime)

_PR_SET_PDEATHSIG = 1


def exit_with_parent(parent_pid: int) -> None:
    """Ask the kernel for SIGTERM when our parent dies, so a killed gateway leaves
    no orphan; if it is already gone, leave at once."""
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent_pid:
        sys.exit(0)


def build_parser(prog: str = "myservice instance") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Run one MyService instance: serves exactly one session, exits 0 after MyServiceShutdown.",
    )
    parser.add_argument("--host", default="0.0.0.0", help="address to listen on (default: %(default)s)")
    settings.add_flags(parser, InstanceSettings)
    parser.add_argument("--pod-name", default=None, help="identity reported as pod_name (default: $POD_NAME, $HOSTNAME)")
    parser.add_argument("--exit-with-parent", type=int, metavar="PID", default=None,
                        help="exit when process PID (our parent) dies (used by the local backend)")
    parser.add_argument("--unix-socket", metavar="PATH", default=None,
                        help="listen on this Unix socket instead of --host/--port (used by the local backend)")
    parser.add_argument("--announce-port", action="store_true",
                        help="print 'LISTENING <port>' (or 'LISTENING unix:<path>') on stdout once serving, "
                             "and 'ENDED <Reason> <message>' when a limit ends the instance")
    parser.add_argument("--termination-log", metavar="PATH", default=None,
                        help="write '<Reason>: <message>' here when a limit ends the instance; '' = nowhere "
                             f"(default: {DEFAULT_TERMINATION_LOG} if it exists and is writable, as in a pod)")
    return parser


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        own = settings.parse(InstanceSettings, os.environ, flags=settings.flag_values(args, InstanceSettings))
    except settings.SettingsError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    termination_log = default_termination_log() if args.termination_log is None else (args.termination_log or None)
    if args.exit_with_parent is not None:
        exit_with_parent(args.exit_with_parent)
    try:
        return asyncio.run(serve(host=args.host, port=own.port, pod_name=args.pod_name, announce=args.announce_port,
                                 unix_socket=args.unix_socket, limits=own.limits, termination_log=termination_log,
                                 wait_for_claim=own.wait_for_claim))
    except OSError as e:
        print(f"myservice instance: {e}", file=sys.stderr)
        return 1


def main(argv: list[str] | None = None) -> int:
    return run(build_parser("python -m myservice_instance").parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
