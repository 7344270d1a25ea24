"""`python -m myservice_instance` / `myservice instance`: one session instance."""
from __future__ import annotations

import argparse
import asyncio
import logging
import ctypes
import os
import signal
import sys

from .server import serve

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
                        help="print 'LISTENING <port>' (or 'LISTENING unix:<path>') on stdout once serving")
    return parser


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if not 0 <= args.port <= 65535:
        print(f"error: --port must be 0..65535, got {args.port}", file=sys.stderr)
        return 2
    if args.exit_with_parent is not None:
        exit_with_parent(args.exit_with_parent)
    try:
        return asyncio.run(serve(host=args.host, port=args.port, pod_name=args.pod_name, announce=args.announce_port,
                                 unix_socket=args.unix_socket))
    except OSError as e:
        print(f"myservice instance: {e}", file=sys.stderr)
        return 1


def main(argv: list[str] | None = None) -> int:
    return run(build_parser("python -m myservice_instance").parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
