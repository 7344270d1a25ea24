"""The execution engine: one session's Python interpreter, run in a child process
(worker.py) that keeps the namespace between calls. No gRPC here; tested directly.

A call sends the code to the worker and waits for its reply. The worker stops
runaway code itself at the time limit (SIGALRM, the namespace kept); code that does
not stop by KILL_GRACE_SECONDS later is killed with its whole process group, and
the next call gets a fresh worker (the variables are gone, and the answer says
so). A worker that died (os._exit, a crash, the kernel's OOM killer) is replaced
the same way. Calls are serialised: one session, one interpreter, one call at a
time.

What comes back from the worker is the user's to forge (the code runs there and
can write to the reply pipe): it is read as JSON, never pickled, its size is
bounded, and anything malformed ends that worker like a crash.
"""
from __future__ import annotations

import dataclasses
import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from . import worker

WORKER = Path(worker.__file__).resolve()
# How long code may run past its time limit before the worker is killed: the
# worker's own SIGALRM stops ordinary loops at the limit, this covers the time
# for it to unwind and answer (a loaded node) before we conclude it will not.
KILL_GRACE_SECONDS = 2.0
# The worker's environment: nothing of the server's (no secrets, no POD_NAME
# games), just enough for Python and its subprocesses.
WORKER_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": "/tmp", "TMPDIR": "/tmp"}


@dataclasses.dataclass(frozen=True)
class Limits:
    """What one call may use (settings.InterpreterSettings.limits)."""
    time_limit: float
    """Seconds of wall-clock time per call."""
    max_output: int
    """Characters kept of stdout, of stderr and of the error, each."""
    memory_limit_bytes: int
    """The worker's address space (RLIMIT_AS); 0 = no limit."""

    @property
    def max_reply_bytes(self) -> int:
        """The largest reply a well-behaved worker can send: three texts of
        max_output characters plus their markers, each character at most 6 bytes
        of JSON (a \\u escape), and the keys."""
        return 3 * (self.max_output + 100) * 6 + 1024


@dataclasses.dataclass(frozen=True)
class Result:
    stdout: str
    stderr: str
    error: str


class _WorkerGone(Exception):
    """The worker cannot answer: it timed out, died or broke the protocol."""

    def __init__(self, error: str) -> None:
        super().__init__(error)
        self.error = error


def describe_exit(returncode: int | None) -> str:
    if returncode is None:
        return "was killed"
    if returncode < 0:
        try:
            return f"was killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"was killed by signal {-returncode}"
    return f"exited with code {returncode}"


def variables_gone(what: str) -> str:
    return f"{what}; its interpreter was restarted: the session's variables are gone"


class Worker:
    """One worker process and its two pipes."""

    def __init__(self, limits: Limits, python: str) -> None:
        request_r, self.request_w = os.pipe()
        self.reply_r, reply_w = os.pipe()
        try:
            self.proc = subprocess.Popen(
                [python, "-I", str(WORKER), str(request_r), str(reply_w), str(os.getpid()),
                 str(limits.memory_limit_bytes), str(limits.max_output)],
                pass_fds=(request_r, reply_w), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL, env=WORKER_ENV,
                # its own process group: a kill takes what the code started too
                start_new_session=True)
        except BaseException:
            for fd in (self.request_w, self.reply_r):
                os.close(fd)
            raise
        finally:
            os.close(request_r)
            os.close(reply_w)

    def send(self, message: dict) -> None:
        try:
            worker.write_frame(self.request_w, message)
        except (BrokenPipeError, OSError):
            raise _WorkerGone("gone") from None

    def receive(self, deadline: float, max_bytes: int) -> dict:
        """The worker's reply, read by `deadline` (time.monotonic())."""
        buffer = bytearray()
        size: int | None = None
        while size is None or len(buffer) < worker.HEADER.size + size:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise _WorkerGone("timeout")
            ready, _, _ = select.select([self.reply_r], [], [], remaining)
            if not ready:
                continue
            chunk = os.read(self.reply_r, 1 << 16)
            if not chunk:
                raise _WorkerGone("gone")
            buffer += chunk
            if size is None and len(buffer) >= worker.HEADER.size:
                size = worker.HEADER.unpack_from(buffer)[0]
                if size > max_bytes:
                    raise _WorkerGone("protocol")
        if len(buffer) != worker.HEADER.size + size:
            raise _WorkerGone("protocol")  # more than one reply to one request
        try:
            reply = json.loads(bytes(buffer[worker.HEADER.size:]))
        except ValueError:
            raise _WorkerGone("protocol") from None
        if not (isinstance(reply, dict) and all(isinstance(reply.get(k), str) for k in ("stdout", "stderr", "error"))):
            raise _WorkerGone("protocol")
        return reply

    def alive(self) -> bool:
        return self.proc.poll() is None

    def signal_kill(self) -> None:
        """SIGKILL to the worker and everything it started (its process group)."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    def kill(self) -> int | None:
        """Kill the worker and everything it started, close its pipes; its exit status."""
        self.signal_kill()
        try:
            returncode = self.proc.wait(5)
        except subprocess.TimeoutExpired:
            returncode = None
        for fd in (self.request_w, self.reply_r):
            try:
                os.close(fd)
            except OSError:
                pass
        return returncode


class Interpreter:
    """One session's interpreter. run() is thread-safe and serialised."""

    def __init__(self, limits: Limits, *, python: str = sys.executable,
                 kill_grace: float = KILL_GRACE_SECONDS) -> None:
        self.limits = limits
        self.python = python
        self.kill_grace = kill_grace
        self._worker: Worker | None = None
        self._lock = threading.Lock()
        self._cells = 0
        self._closed = False

    @property
    def pid(self) -> int | None:
        """The worker's pid (None before the first call and after a restart)."""
        return self._worker.proc.pid if self._worker is not None else None

    def run(self, code: str) -> Result:
        with self._lock:
            if self._closed:
                raise RuntimeError("the interpreter is closed")
            note = ""
            if self._worker is not None and not self._worker.alive():
                # It died between calls (a thread or child of earlier code ended it,
                # or the OOM killer): this code runs in a new one, and says so.
                note = (f"[the interpreter process {describe_exit(self._worker.kill())} after the last call; "
                        "this code ran in a new one: earlier variables are gone]\n")
                self._worker = None
            if self._worker is None:
                self._worker = Worker(self.limits, self.python)
            self._cells += 1
            try:
                self._worker.send({"code": code, "time_limit": self.limits.time_limit, "cell": self._cells})
                reply = self._worker.receive(time.monotonic() + self.limits.time_limit + self.kill_grace,
                                             self.limits.max_reply_bytes)
            except _WorkerGone as gone:
                returncode = self._worker.kill()
                self._worker = None
                return Result("", note, self._error_of(gone.error, returncode))
            return Result(reply["stdout"], note + reply["stderr"], reply["error"])

    def _error_of(self, what: str, returncode: int | None) -> str:
        if what == "timeout":
            return variables_gone(f"TimeLimitExceeded: the code did not stop at its time limit of "
                                  f"{self.limits.time_limit:g}s and was killed")
        if what == "protocol":
            return variables_gone("InterpreterRestarted: the interpreter process wrote something that is "
                                  "not a reply to the server's pipe")
        return variables_gone(f"InterpreterRestarted: the interpreter process {describe_exit(returncode)} "
                              "while running the code")

    def close(self) -> None:
        """End the worker (the session is over), at once: a call running now gets
        its error rather than holding the instance's exit up. Idempotent."""
        self._closed = True
        running = self._worker
        if running is not None:
            running.signal_kill()  # the running call sees its worker gone and lets go of the lock
        with self._lock:
            if self._worker is not None:
                self._worker.kill()
                self._worker = None
