"""The instance's command line, the same for `myservice instance` and every
service built with the SDK (Instance.run): its settings' flags (settings.py) and
the local backend's own (--unix-socket, --announce-port, --exit-with-parent)."""
from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from typing import TYPE_CHECKING

from myservice_api import settings

from .settings import DEFAULT_TERMINATION_LOG, InstanceSettings

if TYPE_CHECKING:
    from .app import Instance

_PR_SET_PDEATHSIG = 1


def exit_with_parent(parent_pid: int) -> None:
    """Ask the kernel for SIGTERM when our parent dies, so a killed gateway leaves
    no orphan; if it is already gone, leave at once."""
    import ctypes  # here: only the local backend asks for it, and every start would pay its import

    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent_pid:
        sys.exit(0)


def build_parser(prog: str, description: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog, description=description or "Serve one session; exit 0 when it ends (docs/instances.md).")
    settings.add_flags(parser, InstanceSettings)
    parser.add_argument("--exit-with-parent", type=int, metavar="PID", default=None,
                        help="exit when process PID (our parent) dies (used by the local backend)")
    parser.add_argument("--unix-socket", metavar="PATH", default=None,
                        help="listen on this Unix socket instead of --host/--port (used by the local backend)")
    parser.add_argument("--announce-port", action="store_true",
                        help="print 'LISTENING <port>' (or 'LISTENING unix:<path>') on stdout once serving, "
                             "and 'ENDED <Reason> <message>' when a limit ends the instance")
    return parser


def run(args: argparse.Namespace, instance: Instance, *, prog: str | None = None) -> int:
    """Serve `instance` with the parsed flags (and the environment): its exit status."""
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        own = settings.parse(InstanceSettings, os.environ, flags=settings.flag_values(args, InstanceSettings))
    except settings.SettingsError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.exit_with_parent is not None:
        exit_with_parent(args.exit_with_parent)
    try:
        return asyncio.run(instance.serve(own, unix_socket=args.unix_socket, announce=args.announce_port))
    except OSError as e:
        print(f"{prog or os.path.basename(sys.argv[0])}: {e}", file=sys.stderr)
        return 1


__all__ = ["DEFAULT_TERMINATION_LOG", "build_parser", "exit_with_parent", "run"]
