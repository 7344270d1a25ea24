"""`python -m myservice_instance` / `myservice instance`: one session instance."""
from __future__ import annotations

import argparse
import asyncio
import logging
import ctypes
import os
import signal
import sys

from . import limits as limits_module
from .server import DEFAULT_TERMINATION_LOG, default_termination_log, serve

# Set to 1 in a Kubernetes pool pod's env (the operator's pool, pods.make_pool_pod).
WAIT_FOR_CLAIM_ENV = "MYSERVICE_INSTANCE_WAIT_FOR_CLAIM"

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
    parser.add_argument(
        "--port", type=int, default=int(os.environ.get("MYSERVICE_INSTANCE_PORT", "50051")),
        help="port to listen on; 0 picks a free one (default: $MYSERVICE_INSTANCE_PORT or 50051)",
    )
    parser.add_argument("--pod-name", default=None, help="identity reported as pod_name (default: $POD_NAME, $HOSTNAME)")
    parser.add_argument("--exit-with-parent", type=int, metavar="PID", default=None,
                        help="exit when process PID (our parent) dies (used by the local backend)")
    parser.add_argument("--unix-socket", metavar="PATH", default=None,
                        help="listen on this Unix socket instead of --host/--port (used by the local backend)")
    parser.add_argument("--announce-port", action="store_true",
                        help="print 'LISTENING <port>' (or 'LISTENING unix:<path>') on stdout once serving, "
                             "and 'ENDED <Reason> <message>' when a limit ends the instance")
    # Text, parsed in run(): a bad value is reported naming the flag or the variable it came from.
    parser.add_argument("--idle-timeout", metavar="SECONDS", default=None,
                        help="end after this long without a call (an open stream is a call); 0 = off "
                             f"(default: ${limits_module.IDLE_TIMEOUT_ENV} or 900)")
    parser.add_argument("--max-lifetime", metavar="SECONDS", default=None,
                        help="end this long after the start, calls or not; 0 = off "
                             f"(default: ${limits_module.MAX_LIFETIME_ENV} or 86400)")
    parser.add_argument("--wait-for-claim", action="store_true",
                        default=os.environ.get(WAIT_FOR_CLAIM_ENV, "") == "1",
                        help="a warm pool member: the idle and lifetime clocks start at SIGUSR1 (the local "
                             "backend's claim for a session) or at the first MyService call, not at the start "
                             f"(default: on if ${WAIT_FOR_CLAIM_ENV}=1, as in a Kubernetes pool pod)")
    parser.add_argument("--termination-log", metavar="PATH", default=None,
                        help="write '<Reason>: <message>' here when a limit ends the instance; '' = nowhere "
                             f"(default: {DEFAULT_TERMINATION_LOG} if it exists and is writable, as in a pod)")
    return parser


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if not 0 <= args.port <= 65535:
        print(f"error: --port must be 0..65535, got {args.port}", file=sys.stderr)
        return 2
    try:
        limits = limits_module.Limits.resolve(idle_timeout=args.idle_timeout, max_lifetime=args.max_lifetime,
                                              env=os.environ)
    except limits_module.LimitError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    termination_log = default_termination_log() if args.termination_log is None else (args.termination_log or None)
    if args.exit_with_parent is not None:
        exit_with_parent(args.exit_with_parent)
    try:
        return asyncio.run(serve(host=args.host, port=args.port, pod_name=args.pod_name, announce=args.announce_port,
                                 unix_socket=args.unix_socket, limits=limits, termination_log=termination_log,
                                 wait_for_claim=args.wait_for_claim))
    except OSError as e:
        print(f"myservice instance: {e}", file=sys.stderr)
        return 1


def main(argv: list[str] | None = None) -> int:
    return run(build_parser("python -m myservice_instance").parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
