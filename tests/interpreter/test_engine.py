"""The execution engine with a real worker process: state kept between calls,
output bounded, errors reported, runaway code stopped, memory bounded."""
from __future__ import annotations

import os
import signal
import time

import pytest

from myservice_interpreter import engine, worker

LIMITS = engine.Limits(time_limit=1.0, max_output=200, memory_limit_bytes=256 << 20)
GONE = "; its interpreter was restarted: the session's variables are gone"


@pytest.fixture
def interp():
    i = engine.Interpreter(LIMITS, kill_grace=1.0)
    yield i
    i.close()


def test_variables_kept_between_calls(interp):
    assert interp.run("x = 41\ndef inc(v):\n    return v + 1\nimport math") == engine.Result("", "", "")
    for n in range(10):
        assert interp.run("x = inc(x)") == engine.Result("", "", "")
    assert interp.run("print(x, math.pi > 3)") == engine.Result("51 True\n", "", "")


def test_last_expression_is_shown_as_in_a_repl(interp):
    assert interp.run("1 + 1") == engine.Result("2\n", "", "")
    assert interp.run("_ * 10") == engine.Result("20\n", "", "")
    assert interp.run("'a'") == engine.Result("'a'\n", "", "")
    assert interp.run("None") == engine.Result("", "", "")
    assert interp.run("x = 3") == engine.Result("", "", "")


def test_stdout_and_stderr_apart(interp):
    assert interp.run("import sys\nprint('out')\nprint('err', file=sys.stderr)") == \
        engine.Result("out\n", "err\n", "")


def test_exception_reported_with_the_code_line(interp):
    result = interp.run("y = 1\nz = 1 / 0")
    assert (result.stdout, result.stderr) == ("", "")
    lines = [line for line in result.error.splitlines() if line.strip(" ~^")]  # the carets vary by version
    assert lines == ['Traceback (most recent call last):',
                     '  File "<cell 1>", line 2, in <module>',
                     '    z = 1 / 0',
                     'ZeroDivisionError: division by zero'], result.error
    assert interp.run("y") == engine.Result("1\n", "", "")  # what ran before the error stays


def test_syntax_error_reported(interp):
    assert interp.run("def f(:") == engine.Result("", "", (
        '  File "<cell 1>", line 1\n    def f(:\n          ^\nSyntaxError: invalid syntax\n'))


def test_system_exit_is_an_error_not_the_end(interp):
    interp.run("kept = 1")
    result = interp.run("raise SystemExit(3)")
    assert result.error.endswith("SystemExit: 3\n"), result
    assert interp.run("kept") == engine.Result("1\n", "", "")


def test_output_truncated_with_a_marker(interp):
    result = interp.run("print('a' * 150)\nprint('b' * 150)")
    assert result.stdout == "a" * 150 + "\n" + "b" * 49 + "\n[output truncated: 102 more characters]\n"
    result = interp.run("import sys\nfor i in range(100000): sys.stderr.write('e')")
    assert result.stderr == "e" * 200 + "\n[output truncated: 99800 more characters]\n"


def test_runaway_loop_stopped_variables_kept(interp):
    interp.run("kept = 'yes'")
    t0 = time.monotonic()
    result = interp.run("while True:\n    pass")
    assert result == engine.Result("", "", (
        "TimeLimitExceeded: the code ran for its time limit of 1s and was stopped "
        "(the session's variables are kept)"))
    assert 1.0 <= time.monotonic() - t0 < 1.9
    assert interp.run("kept") == engine.Result("'yes'\n", "", "")


def test_code_that_ignores_the_stop_is_killed_and_says_variables_are_gone(interp):
    interp.run("kept = 'yes'")
    first = interp.pid
    t0 = time.monotonic()
    result = interp.run("n = 0\ntry:\n    while True:\n        n += 1\nexcept BaseException:\n    while True:\n        n += 1")
    took = time.monotonic() - t0
    assert result == engine.Result("", "", "TimeLimitExceeded: the code did not stop at its time limit of 1s "
                                           "and was killed" + GONE)
    assert 2.0 <= took < 3.0  # limit + grace
    with pytest.raises(ProcessLookupError):
        os.kill(first, 0)
    result = interp.run("kept")
    assert result.error.endswith("NameError: name 'kept' is not defined\n"), result
    assert interp.pid != first


def test_a_child_process_of_the_code_is_killed_with_it(interp, tmp_path):
    pid_file = tmp_path / "pid"
    result = interp.run(f"import subprocess, time\np = subprocess.Popen(['sleep', '60'])\n"
                        f"open({str(pid_file)!r}, 'w').write(str(p.pid))\n"
                        "try:\n    time.sleep(60)\nexcept BaseException:\n    time.sleep(60)")
    assert result.error.startswith("TimeLimitExceeded: the code did not stop"), result
    sleeper = int(pid_file.read_text())
    deadline = time.monotonic() + 5
    while _alive(sleeper) and time.monotonic() < deadline:  # killed; then reaped by init
        time.sleep(0.05)
    assert not _alive(sleeper)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_worker_that_exits_is_replaced(interp):
    interp.run("kept = 1")
    result = interp.run("import os\nos._exit(3)")
    assert result == engine.Result("", "", "InterpreterRestarted: the interpreter process exited with code 3 "
                                           "while running the code" + GONE)
    assert interp.run("1 + 1") == engine.Result("2\n", "", "")


def test_worker_that_died_between_calls_is_replaced_and_the_next_call_says_so(interp):
    interp.run("kept = 1")
    os.kill(interp.pid, signal.SIGKILL)
    time.sleep(0.2)
    assert interp.run("'kept' in globals()") == engine.Result(
        "False\n", "[the interpreter process was killed by SIGKILL after the last call; this code ran in a new "
                   "one: earlier variables are gone]\n", "")


def test_memory_bounded(interp):
    result = interp.run("b = bytearray(512 << 20)")
    assert result.error.endswith("MemoryError\n"), result
    assert interp.run("b = bytearray(16 << 20)\nlen(b)") == engine.Result(f"{16 << 20}\n", "", "")


def test_forged_reply_ends_the_worker(interp):
    # the code can write to the reply pipe (fd given in its argv): anything but one
    # well-formed reply is a broken worker, never trusted
    result = interp.run("import os, sys\nos.write(int(sys.argv[2]), b'\\xff\\xff\\xff\\xffjunk')")
    assert result == engine.Result("", "", "InterpreterRestarted: the interpreter process wrote something that "
                                           "is not a reply to the server's pipe" + GONE)
    assert interp.run("1") == engine.Result("1\n", "", "")


def test_invalid_utf8_output_is_replaced(interp):
    assert interp.run("print('\\ud800')") == engine.Result("?\n", "", "")


def test_worker_environment_is_not_the_servers(interp, monkeypatch):
    assert interp.run("import os\nsorted(os.environ)") == engine.Result(f"{sorted(engine.WORKER_ENV)}\n", "", "")


def test_close_kills_a_running_call(interp):
    import threading

    results = []
    thread = threading.Thread(target=lambda: results.append(interp.run("import time\ntime.sleep(30)")))
    thread.start()
    time.sleep(0.3)
    t0 = time.monotonic()
    interp.close()
    thread.join(5)
    assert time.monotonic() - t0 < 2
    assert results and results[0].error.startswith("InterpreterRestarted: the interpreter process was killed by SIGKILL")
    with pytest.raises(RuntimeError):
        interp.run("1")


def test_long_error_keeps_its_end(interp):
    result = interp.run("def deep(n):\n    return deep(n + 1) if n < 50 else 1 / 0\ndeep(0)")
    assert result.error.startswith("[error truncated: ") and result.error.endswith(
        "ZeroDivisionError: division by zero\n"), result.error
    assert len(result.error) <= 200 + len("[error truncated: 9999 characters left out]\n")


def test_bounded_text():
    text = worker.BoundedText(5)
    assert text.write("abc") == 3 and text.write("defgh") == 5
    assert text.value() == "abcde\n[output truncated: 3 more characters]\n"
    assert worker.BoundedText(5).value() == ""


def test_the_code_opens_no_network_socket(interp):
    import socket

    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    try:
        for family in ("AF_INET", "AF_INET6"):
            result = interp.run(f"import socket\nsocket.socket(socket.{family})")
            assert result.error.endswith("PermissionError: [Errno 1] Operation not permitted\n"), result
        # a listening port on this very machine: refused before any packet
        result = interp.run(f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=2)")
        assert result.error.endswith("PermissionError: [Errno 1] Operation not permitted\n"), result
        # nor through a process it starts (the filter is inherited), nor io_uring
        assert interp.run("import subprocess, sys\nsubprocess.run([sys.executable, '-c', "
                          "'import socket; socket.socket()'], capture_output=True).returncode") == \
            engine.Result("1\n", "", "")
        assert interp.run("import ctypes\nctypes.CDLL(None, use_errno=True).syscall(425, 1, 0), ctypes.get_errno()") \
            == engine.Result("(-1, 1)\n", "", "")
        # Unix socket pairs stay (asyncio's event loop needs one)
        assert interp.run("import asyncio\nasyncio.run(asyncio.sleep(0))\nimport socket\na, b = socket.socketpair()\n"
                          "a.send(b'x')\nb.recv(1)") == engine.Result("b'x'\n", "", "")
    finally:
        server.close()


def test_sandbox_filter_program():
    # the jumps land where the comments say: deny for another ABI, x32, the calls denied
    # outright and non-Unix sockets; allow for the rest (read by a tiny BPF interpreter)
    def verdict(machine, nr, arch=None, family=0):
        program = worker.sandbox_filter(machine)
        data = {0: nr, 4: arch if arch is not None else worker._SYSCALLS[machine][0], 16: family}
        acc, pc = 0, 0
        while True:
            code, jt, jf, k = program[pc]
            if code == 0x20:
                acc = data[k]
            elif code == 0x06:
                return "allow" if k == worker._SECCOMP_RET_ALLOW else "deny"
            else:
                taken = acc == k if code == 0x15 else acc >= k
                pc += jt if taken else jf
            pc += 1

    for machine, (arch, socket_nr, denied) in worker._SYSCALLS.items():
        assert verdict(machine, 0) == "allow"
        assert verdict(machine, 59) == "allow"
        assert verdict(machine, socket_nr, family=1) == "allow"
        assert verdict(machine, socket_nr, family=2) == "deny"
        assert verdict(machine, socket_nr, family=10) == "deny"
        assert set(denied) == {"io_uring_setup", "ptrace", "process_vm_readv", "process_vm_writev"}
        for nr in denied.values():
            assert verdict(machine, nr) == "deny"
            assert verdict(machine, nr + 1000) == "allow"
        assert verdict(machine, 0, arch=0x40000003) == "deny"  # i386
    assert verdict("x86_64", 41 | 0x40000000, family=2) == "deny"  # x32 socket()


def test_the_code_cannot_drive_its_server(interp):
    # ptrace and /proc/<pid>/mem of the parent: the server runs without the filter
    result = interp.run("import ctypes, os\nlibc = ctypes.CDLL(None, use_errno=True)\n"
                        "libc.ptrace(16, os.getppid(), 0, 0), ctypes.get_errno()")  # PTRACE_ATTACH
    assert result == engine.Result("(-1, 1)\n", "", "")
