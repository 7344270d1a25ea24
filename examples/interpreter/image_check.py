"""One Run through the engine inside the interpreter image, as in a pod: run by
hack/images/build.sh's smoke tests with a read-only root, /tmp writable, every
capability dropped and no_new_privs, under the runtime's default seccomp profile,
on which the worker stacks its own filter (no socket for the code)."""
from myservice_interpreter import engine, settings

result = engine.Interpreter(settings.InterpreterSettings().limits).run(
    "import socket\nx = 6 * 7\ntry:\n    socket.socket()\nexcept PermissionError:\n    print('no socket', x)")
assert result == engine.Result("no socket 42\n", "", ""), result
print("ok")
