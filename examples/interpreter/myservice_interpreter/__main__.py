"""`myservice-interpreter` / `python -m myservice_interpreter`: one session's Python
interpreter, served with the MyService SDK (health, session binding, idle and
lifetime ends, Shutdown, SIGTERM). The flags are the SDK's (`myservice instance
--help`) and the interpreter's own (settings.py); each has its variable."""
from __future__ import annotations

import os

# Before grpc is imported: the engine starts its worker by fork+exec, which needs
# none of gRPC's fork handlers (in a child of a many-threaded process they can abort it).
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")

import concurrent.futures  # noqa: E402
import ctypes  # noqa: E402
import sys  # noqa: E402

import myservice_instance  # noqa: E402
from myservice_api import settings as declarations  # noqa: E402
from myservice_instance import cli  # noqa: E402

from . import stubs  # noqa: E402

stubs.ensure()  # a checkout: generate them; an installed wheel has them

from interpreter.v1 import interpreter_pb2_grpc as pb_grpc  # noqa: E402

from .engine import Interpreter  # noqa: E402
from .servicer import InterpreterServicer  # noqa: E402
from .settings import InterpreterSettings  # noqa: E402

PROG = "myservice-interpreter"


_PR_SET_DUMPABLE = 4


def not_dumpable() -> None:
    """The code runs as our uid: without this, it could open /proc/<our pid>/mem and
    write to us, a process its seccomp filter does not cover (ptrace itself it is
    denied). Non-dumpable, only CAP_SYS_PTRACE (which the pod drops) can."""
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0)


def main(argv: list[str] | None = None) -> int:
    parser = cli.build_parser(PROG, description=(
        "Serve interpreter.v1.Interpreter for one session: Run keeps the session's variables between "
        "calls; Shutdown (or the idle timeout, or the lifetime) ends it with exit 0."))
    declarations.add_flags(parser, InterpreterSettings)
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    try:
        own = declarations.parse(InterpreterSettings, os.environ,
                                 flags=declarations.flag_values(args, InterpreterSettings))
    except declarations.SettingsError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    not_dumpable()
    engine = Interpreter(own.limits)
    executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="interpreter")
    instance = myservice_instance.Instance()
    instance.add_servicer(pb_grpc.add_InterpreterServicer_to_server,
                          InterpreterServicer(engine, instance=instance, executor=executor))
    try:
        return cli.run(args, instance, prog=PROG)
    finally:
        # The session is over: its interpreter goes now, a Run still going included.
        engine.close()
        executor.shutdown(wait=True)


if __name__ == "__main__":
    sys.exit(main())
