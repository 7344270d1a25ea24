"""The child process that runs a session's code: one namespace for its whole life.

Started by engine.Worker as `python -I worker.py ...` (by path, standard library
only: it needs nothing of ours importable, and -I keeps the server's environment
and working folder off its sys.path). It reads requests from one pipe and writes
replies to another, one at a time, each a frame: 4 bytes of big-endian length,
then that much UTF-8 JSON. Request {"code", "time_limit", "cell"}; reply
{"stdout", "stderr", "error"}.

Why a process and not a thread of the server: a thread cannot be stopped (a loop
in C, `while True: pass` under a bare except, ignore the signal and carry on), a
process can be killed; its memory can be bounded (RLIMIT_AS, which the server's
gRPC threads could not live with); and what the code does to its interpreter
(os._exit, sys.modules, signal handlers, monkeypatching) cannot reach the server.
Why it keeps running between calls: the namespace is a live Python heap (open
files, generators, modules), which no serialisation would carry from one call
to the next.

No network: before any code runs, the worker installs a seccomp filter of its
own (stacked on the pod's RuntimeDefault; allowed unprivileged under
no_new_privs, which allowPrivilegeEscalation: false sets anyway) that makes
socket() fail with EPERM for every family but AF_UNIX, and io_uring_setup,
ptrace and process_vm_readv/writev too (io_uring opens sockets without socket();
the others would let the code drive the server, which has no such filter). The
chart's egress-deny NetworkPolicy stops the pod's connections to other pods; this
stops the code's connections to anything, the node included (a NetworkPolicy
agent that filters in POSTROUTING only, as kube-network-policies does, never sees
a connection to an API server on the pod's own node), and it holds locally, where
there is no NetworkPolicy at all.

The time limit has two steps. Here, SIGALRM at the limit raises TimeLimitExceeded
in the code (a BaseException, so `except Exception` does not swallow it): most
runaway code stops and the namespace stays. What does not stop (a long C call, a
bare except, a replaced handler) is killed by the engine a grace period later.
"""
from __future__ import annotations

import ast
import builtins
import ctypes
import io
import json
import linecache
import os
import resource
import signal
import struct
import sys
import traceback

HEADER = struct.Struct(">I")
_PR_SET_PDEATHSIG = 1


class TimeLimitExceeded(BaseException):
    """Raised in the user's code at the per-call time limit (BaseException: it is
    not an error of the code, and `except Exception` must not hide it)."""


# --- frames (the engine imports these: one definition for both ends) ------------

def write_frame(fd: int, message: dict) -> None:
    data = json.dumps(message, ensure_ascii=False).encode("utf-8")
    view = memoryview(HEADER.pack(len(data)) + data)
    while view:
        view = view[os.write(fd, view):]


def read_exactly(fd: int, size: int) -> bytes | None:
    """`size` bytes from `fd`, or None at end of file (the other end closed)."""
    chunks, left = [], size
    while left:
        chunk = os.read(fd, left)
        if not chunk:
            return None
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def read_frame(fd: int) -> dict | None:
    header = read_exactly(fd, HEADER.size)
    if header is None:
        return None
    body = read_exactly(fd, HEADER.unpack(header)[0])
    return None if body is None else json.loads(body)


# --- bounded output ---------------------------------------------------------------

def truncation_marker(left_out: int) -> str:
    return f"\n[output truncated: {left_out} more characters]\n"


class BoundedText(io.TextIOBase):
    """sys.stdout/sys.stderr during a call: keeps the first `limit` characters and
    counts the rest (so a print loop costs no memory, however long it runs)."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit
        self.parts: list[str] = []
        self.kept = 0
        self.left_out = 0

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        room = self.limit - self.kept
        if room > 0:
            self.parts.append(text[:room])
            self.kept += min(room, len(text))
        self.left_out += max(0, len(text) - max(room, 0))
        return len(text)

    def value(self) -> str:
        text = "".join(self.parts)
        return text + truncation_marker(self.left_out) if self.left_out else text


def bounded_error(text: str, limit: int) -> str:
    """The error cut to its last `limit` characters, the marker first: a traceback's
    end (the exception and the code's own frames) is the part that says what happened."""
    return text if len(text) <= limit else f"[error truncated: {len(text) - limit} characters left out]\n" + text[-limit:]


def valid_utf8(text: str) -> str:
    """Lone surrogates (print("\\ud800")) cannot travel as UTF-8 (JSON here, protobuf
    strings after): replaced by '?'."""
    return text.encode("utf-8", "replace").decode("utf-8")


# --- running one call -------------------------------------------------------------

class Alarm:
    """SIGALRM as the soft time limit. `armed` makes a late signal (the code
    finished just as the timer fired) a no-op instead of an exception in our code."""

    def __init__(self) -> None:
        self.armed = False
        signal.signal(signal.SIGALRM, self._fire)

    def _fire(self, signum, frame) -> None:
        if self.armed:
            self.armed = False
            raise TimeLimitExceeded

    def arm(self, seconds: float) -> None:
        self.armed = True
        signal.setitimer(signal.ITIMER_REAL, seconds)

    def disarm(self) -> None:
        self.armed = False
        signal.setitimer(signal.ITIMER_REAL, 0)


def user_traceback(error: BaseException) -> str:
    """The exception as Python would print it, without this module's frames."""
    tb = error.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename == __file__:
        tb = tb.tb_next
    return "".join(traceback.format_exception(type(error), error, tb))


def compile_cell(code: str, filename: str):
    """(statements, last expression or None): the last statement, if an
    expression, is evaluated apart so that its value can be shown, as in a REPL."""
    tree = ast.parse(code, filename=filename, mode="exec")
    last = None
    if tree.body and isinstance(tree.body[-1], ast.Expr):
        last = ast.Expression(tree.body.pop().value)
    body = compile(tree, filename, "exec")
    return body, (compile(last, filename, "eval") if last is not None else None)


def run_cell(namespace: dict, code: str, *, time_limit: float, cell: int, max_output: int, alarm: Alarm) -> dict:
    """Run `code` in `namespace`; its output, and its error ("" if none)."""
    filename = f"<cell {cell}>"
    out, err = BoundedText(max_output), BoundedText(max_output)
    error = ""
    try:
        body, last = compile_cell(code, filename)
    except (SyntaxError, ValueError) as e:  # ValueError: a NUL byte in the code
        body, last = None, None
        error = "".join(traceback.format_exception_only(type(e), e))
    if body is not None:
        # Tracebacks show the code's lines (linecache is what traceback reads).
        linecache.cache[filename] = (len(code), None, code.splitlines(keepends=True), filename)
        saved = sys.stdout, sys.stderr
        sys.stdout, sys.stderr = out, err
        try:
            try:
                alarm.arm(time_limit)
                exec(body, namespace)
                if last is not None:
                    value = eval(last, namespace)
                    if value is not None:
                        namespace["_"] = value
                        out.write(repr(value) + "\n")
            finally:
                alarm.disarm()
        except TimeLimitExceeded:
            error = (f"TimeLimitExceeded: the code ran for its time limit of {time_limit:g}s and was stopped "
                     "(the session's variables are kept)")
        except BaseException as e:  # noqa: BLE001 - SystemExit and KeyboardInterrupt are the code's too
            error = user_traceback(e)
        finally:
            sys.stdout, sys.stderr = saved
    return {"stdout": valid_utf8(out.value()), "stderr": valid_utf8(err.value()),
            "error": valid_utf8(bounded_error(error, max_output))}


# --- the sandbox ------------------------------------------------------------------

_PR_SET_NO_NEW_PRIVS = 38
_PR_SET_SECCOMP = 22
_SECCOMP_MODE_FILTER = 2
_SECCOMP_RET_ALLOW = 0x7FFF0000
_SECCOMP_RET_ERRNO = 0x00050000
_AF_UNIX = 1
_EPERM = 1
_X32_SYSCALL_BIT = 0x40000000
# Per machine: its AUDIT_ARCH_*, __NR_socket, and the calls denied outright:
# io_uring_setup (io_uring opens sockets without socket()), ptrace, process_vm_readv
# and process_vm_writev (the code must not drive the server, its parent, which runs
# without this filter: it would open the sockets for it).
_SYSCALLS = {
    "x86_64": (0xC000003E, 41, {"io_uring_setup": 425, "ptrace": 101, "process_vm_readv": 310,
                                "process_vm_writev": 311}),
    "aarch64": (0xC00000B7, 198, {"io_uring_setup": 425, "ptrace": 117, "process_vm_readv": 270,
                                  "process_vm_writev": 271}),
}


class _SockFilter(ctypes.Structure):
    _fields_ = [("code", ctypes.c_ushort), ("jt", ctypes.c_ubyte), ("jf", ctypes.c_ubyte), ("k", ctypes.c_uint)]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(_SockFilter))]


def sandbox_filter(machine: str) -> list[tuple[int, int, int, int]]:
    """The seccomp BPF program: (code, jt, jf, k) per instruction, a jump counting the
    instructions it skips. seccomp_data: nr at 0, arch at 4, args[0] at 16 (its low
    32 bits on these little-endian machines: the kernel reads the family as an int).
    Denied calls fail with EPERM; everything else is the runtime's profile's to judge."""
    arch, socket_nr, denied = _SYSCALLS[machine]
    ld, jeq, jge, ret = 0x20, 0x15, 0x35, 0x06  # BPF_LD|W|ABS, BPF_JMP|JEQ|K, BPF_JMP|JGE|K, BPF_RET|K
    checks = list(denied.values())
    allow = 7 + len(checks)             # the indexes of the two verdicts, last
    deny = allow + 1

    def to(target: int, at: int) -> int:  # a jump from instruction `at` to `target`
        return target - at - 1

    program = [
        (ld, 0, 0, 4),                                  # 0: arch
        (jeq, 0, to(deny, 1), arch),                    # 1: another ABI (i386 on x86_64): deny
        (ld, 0, 0, 0),                                  # 2: syscall number
        (jge, to(deny, 3), 0, _X32_SYSCALL_BIT),        # 3: x32 numbers alias the native ones: deny
        (jeq, 0, to(7, 4), socket_nr),                  # 4: socket() ...
        (ld, 0, 0, 16),                                 # 5:   its family
        (jeq, to(allow, 6), to(deny, 6), _AF_UNIX),     # 6:   AF_UNIX allowed, any other denied
    ]
    for at, nr in enumerate(checks, start=7):           # 7..: each call denied outright
        program.append((jeq, to(deny, at), 0, nr))
    program += [(ret, 0, 0, _SECCOMP_RET_ALLOW), (ret, 0, 0, _SECCOMP_RET_ERRNO | _EPERM)]
    return program


def deny_network() -> None:
    """Install sandbox_filter for this process (and every thread and child it
    makes later); OSError if it cannot be (then no code may run)."""
    machine = os.uname().machine
    if machine not in _SYSCALLS:
        raise OSError(f"no seccomp filter for {machine}")
    program = sandbox_filter(machine)
    filters = (_SockFilter * len(program))(*(_SockFilter(*insn) for insn in program))
    fprog = _SockFprog(len(program), filters)
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 or \
            libc.prctl(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, ctypes.byref(fprog), 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"seccomp: {os.strerror(err)}")


# --- the process ------------------------------------------------------------------

def limit_resources(memory_limit_bytes: int) -> None:
    """Memory (address space: a big allocation raises MemoryError here instead of
    the pod's cgroup killing the whole instance) and no core dumps."""
    if memory_limit_bytes:
        resource.setrlimit(resource.RLIMIT_AS, (memory_limit_bytes, memory_limit_bytes))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def exit_with_parent(parent_pid: int) -> None:
    """SIGKILL when the server dies (locally: no orphan keeping a namespace alive)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent_pid:
        os._exit(0)


def main(argv: list[str]) -> int:
    request_fd, reply_fd, parent_pid, memory_limit, max_output = (int(a) for a in argv)
    exit_with_parent(parent_pid)
    limit_resources(memory_limit)
    try:
        deny_network()
        refused = ""
    except OSError as e:  # fail closed: without the sandbox no code runs
        refused = f"SandboxUnavailable: the interpreter cannot run code without its network filter ({e})"
    alarm = Alarm()
    namespace: dict = {"__name__": "__main__", "__builtins__": builtins}
    while True:
        request = read_frame(request_fd)
        if request is None:  # the server closed its end: the session is over
            return 0
        reply = {"stdout": "", "stderr": "", "error": refused} if refused else run_cell(
            namespace, request["code"], time_limit=request["time_limit"], cell=request["cell"],
            max_output=max_output, alarm=alarm)
        write_frame(reply_fd, reply)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
