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


def test_bounded_text():
    text = worker.BoundedText(5)
    assert text.write("abc") == 3 and text.write("defgh") == 5
    assert text.value() == "abcde\n[output truncated: 3 more characters]\n"
    assert worker.BoundedText(5).value() == ""
