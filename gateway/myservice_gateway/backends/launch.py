"""`python -m myservice_gateway.backends.launch PID -- CMD [ARG...]`: run CMD so
that it dies with the gateway (process PID).

A command of `--instance-command` is not ours, so it cannot be asked to set
PR_SET_PDEATHSIG itself (as `myservice instance --exit-with-parent` does), and
no Python may run between fork and exec in the gateway, next to gRPC's threads.
This fresh interpreter (no gRPC in it) sets the signal, then execs CMD, which
keeps it: if the gateway is killed outright, the kernel kills CMD. SIGKILL, not
SIGTERM: with the gateway gone nobody can reach the session any more, and a
command that handles SIGTERM slowly (or not at all) must not outlive it."""
from __future__ import annotations

import ctypes
import os
import signal
import sys

_PR_SET_PDEATHSIG = 1


def main(argv: list[str]) -> int:
    if len(argv) < 3 or argv[1] != "--":
        print("usage: python -m myservice_gateway.backends.launch PID -- CMD [ARG...]", file=sys.stderr)
        return 2
    parent, command = int(argv[0]), argv[2:]
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the gateway died before the signal was set
        return 0
    try:
        os.execvp(command[0], command)
    except OSError as e:
        print(f"myservice: cannot run {command[0]!r}: {e.strerror}", file=sys.stderr)
    return 127  # as a shell says "command not found"


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
