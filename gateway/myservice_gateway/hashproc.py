"""Password checks in child processes of their own, at a low priority across the
whole machine (MYSERVICE_LOGIN_HASH_PROCESS, on by default).

Why not on the hashing thread itself, at a lower nice value: measured during a
Login storm (docs/benchmarks.md, "Why the storm cost Echo its p99"), a hashing
thread costs other sessions' calls their p99 (2.4x quiet) whatever its nice value
(0, 10, 19; SCHED_IDLE is worse). With kernel.sched_autogroup_enabled=1 (the default
of most distributions) and no cpu cgroup of its own (a gateway started from a
shell, `myservice up`, the benches), the scheduler shares the CPUs between sessions
first, and a thread's nice value only weighs against the threads of its own
session: the gateway's event loop among them. The same check in a child process in
a session of its own, with the process and its autogroup at the hashing nice value,
leaves the gateway's session and weighs what its nice value says against every
other process (in a cgroup, a pod, the process's nice value does the same): the
storm's Echo p99 went to 1.7-1.8x quiet.

One child per hashing thread at most (`size`), started when first needed (Python,
argon2 and bcrypt: ~0.15 s of CPU once, ~20 MB), reused for every check after,
ended when the gateway stops, or dies (PR_SET_PDEATHSIG, tied to the hashing thread
that started it; and it ends when its stdin closes). A check is one line each way
over the child's stdin and stdout (the password never leaves the gateway's own
pipes). A child that dies is replaced once for the same check; if that fails too,
the check runs on the calling thread (logged): a Login never fails because of where
its hash runs.

`CheckerProcesses.verify` is a users.Verifier (UserStore(verify=...)). The child
itself runs users.verify_password: the same code, the same digest.
"""
from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import logging
import os
import queue
import select
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

log = logging.getLogger("myservice.gateway.hashproc")

STOP_TIMEOUT = 2.0
START_TIMEOUT = 30.0  # a child not ready by then is given up (killed)
AUTOGROUP_TRIES = 40  # 2 s


class ChildGone(Exception):
    """The child process did not answer (it died, or never started)."""


class _Child:
    def __init__(self, nice: int) -> None:
        # Not preexec_fn (unsafe in a process with threads): the child lowers its own
        # priority and asks for PR_SET_PDEATHSIG itself, before it reads a request.
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-P", "-m", "myservice_gateway.hashproc", str(nice), str(os.getpid())],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=None, start_new_session=True, close_fds=True)
        except OSError as e:
            raise ChildGone(f"cannot start the hashing process: {e}") from e
        started, _, _ = select.select([self.process.stdout], [], [], START_TIMEOUT)
        ready = self.process.stdout.readline() if started else b""
        if ready != b"ready\n":
            self.kill()
            raise ChildGone(f"the hashing process did not start (exit code {self.process.poll()})")

    def check(self, password_hash: str, password: str) -> bool:
        try:
            self.process.stdin.write(json.dumps([password_hash, password]).encode() + b"\n")
            self.process.stdin.flush()
            answer = self.process.stdout.readline()
        except (OSError, ValueError) as e:
            raise ChildGone(str(e)) from e
        if answer not in (b"1\n", b"0\n"):
            raise ChildGone(f"the hashing process ended (exit code {self.process.poll()})")
        return answer == b"1\n"

    def kill(self) -> None:
        with contextlib.suppress(OSError):
            self.process.kill()
        with contextlib.suppress(OSError, subprocess.TimeoutExpired):
            self.process.wait(STOP_TIMEOUT)
        for stream in (self.process.stdin, self.process.stdout):
            with contextlib.suppress(OSError):
                stream.close()

    def stop(self) -> None:
        """Close its stdin (it ends at EOF), then wait; kill it if it does not end."""
        with contextlib.suppress(OSError):
            self.process.stdin.close()
        try:
            self.process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            pass
        self.kill()


class CheckerProcesses:
    """Up to `size` child processes that check passwords; `verify` blocks the calling
    thread (a hashing thread) until its check is done. Thread-safe."""

    def __init__(self, *, size: int, nice: int) -> None:
        self.nice = nice
        # Last in, first out: a started child is reused before another is started, so
        # there are only as many children as checks have run at the same time.
        self._free: queue.LifoQueue[_Child | None] = queue.LifoQueue()
        for _ in range(size):
            self._free.put(None)  # a place for a child, started when first needed
        self._lock = threading.Lock()
        self._children: set[_Child] = set()
        self._closed = False
        self._warned = False

    def pids(self) -> list[int]:
        with self._lock:
            return [child.process.pid for child in self._children]

    def verify(self, password_hash: str, password: str) -> bool:
        child = self._free.get()
        try:
            for attempt in (1, 2):
                try:
                    if child is None:
                        child = self._start()
                    return child.check(password_hash, password)
                except ChildGone as e:
                    if child is not None:
                        self._forget(child)
                        child = None
                    if self._closed:  # the gateway is stopping: no one reads this answer
                        return False
                    if attempt == 2:
                        return self._on_this_thread(password_hash, password, e)
                    log.warning("password check process: %s; starting another", e)
            raise AssertionError("unreachable")
        finally:
            self._free.put(child)

    def _start(self) -> _Child:
        with self._lock:
            if self._closed:
                raise ChildGone("the gateway is stopping")
        child = _Child(self.nice)
        with self._lock:
            self._children.add(child)
            closed = self._closed
        if closed:  # close() ran while it started: end it here
            self._forget(child)
            raise ChildGone("the gateway is stopping")
        return child

    def _forget(self, child: _Child) -> None:
        with self._lock:
            self._children.discard(child)
        child.kill()

    def _on_this_thread(self, password_hash: str, password: str, why: Exception) -> bool:
        from .users import verify_password
        if not self._warned:
            self._warned = True
            log.error("password check process unavailable (%s): checking on the hashing thread", why)
        return verify_password(password_hash, password)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            children, self._children = list(self._children), set()
        for child in children:
            child.stop()


# --------------------------------------------------------------------------------------------
# The child.
# --------------------------------------------------------------------------------------------

def lower_priority(nice: int) -> None:
    """This process's nice value, and its autogroup's (the session it leads), to
    `nice`: raising either needs no privilege. Best effort: where a file or call is
    missing (no autogroup, not Linux), the others still apply."""
    if nice <= 0:
        return
    with contextlib.suppress(OSError, AttributeError):
        os.setpriority(os.PRIO_PROCESS, 0, max(nice, os.getpriority(os.PRIO_PROCESS, 0)))
    for _ in range(AUTOGROUP_TRIES):
        try:
            Path("/proc/self/autogroup").write_text(str(nice))
            return
        except OSError as e:  # the kernel allows one change per 100 ms, machine-wide
            if e.errno != errno.EAGAIN:
                return
            time.sleep(0.05)


def _die_with(parent: int) -> None:
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # the gateway died before the line above
        sys.exit(1)


def child_main(argv: list[str]) -> int:
    nice, parent = int(argv[0]), int(argv[1])
    _die_with(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C is the gateway's to handle
    lower_priority(nice)
    from .users import verify_password  # after lowering: its import hashes once

    out = sys.stdout.buffer
    out.write(b"ready\n")
    out.flush()
    for line in sys.stdin.buffer:
        try:
            password_hash, password = json.loads(line)
            matched = verify_password(password_hash, password)
        except (ValueError, TypeError):
            matched = False
        out.write(b"1\n" if matched else b"0\n")
        out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(child_main(sys.argv[1:]))
