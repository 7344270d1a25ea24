#!/usr/bin/env python3
"""A command-line client of the interpreter example: Login through the gateway,
then Run Python code in the session's own interpreter.

    client.py [options] CODE...     each CODE is one Run, in order
    client.py [options] < file.py   stdin is one Run
    client.py [options]             on a terminal: a small REPL (a line ending in
                                    ':' continues until a blank line; Ctrl-D ends)

Each Run prints what the code printed (stdout to stdout, stderr and the error to
stderr). Variables stay in the session: log in again with the same --session-id
(and user) to find them, until --shutdown, the idle timeout or the lifetime ends
it. Exit status: 0 when every Run ran without an error, 1 otherwise, 2 for a usage
error.

Needs the project installed (`make run` or `make test` makes .venv) for the Login
stubs and grpcio-tools; the interpreter's stubs are generated on first use.

Example, with `myservice up --instance-command 'python -m myservice_interpreter'
--service interpreter.v1.Interpreter` or the chart with examples/interpreter/values.yaml:

    .venv/bin/python examples/interpreter/client.py 'x = 6 * 7' 'x'
"""
from __future__ import annotations

import argparse
import os
import sys
import uuid
from pathlib import Path

os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")

import grpc  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from myservice_interpreter import stubs  # noqa: E402

stubs.ensure()

from interpreter.v1 import interpreter_pb2 as pb  # noqa: E402
from interpreter.v1 import interpreter_pb2_grpc as pb_grpc  # noqa: E402
from myservice import contract  # noqa: E402
from myservice.v1 import myservice_pb2 as ms_pb  # noqa: E402
from myservice.v1 import myservice_pb2_grpc as ms_grpc  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="client.py", description=__doc__.split("\n\n")[0].replace("\n", " "),
        epilog="Runs: each CODE argument; without one, stdin (one Run), or a REPL on a terminal.")
    parser.add_argument("code", nargs="*", metavar="CODE", help="Python code for one Run")
    parser.add_argument("--gateway", default=os.environ.get("MYSERVICE_GATEWAY", "localhost:10000"),
                        help="gateway host:port (env MYSERVICE_GATEWAY, default %(default)s)")
    parser.add_argument("--user", default="TestUser", help="user name (default %(default)s)")
    parser.add_argument("--password", default=os.environ.get("MYSERVICE_PASSWORD", "TestPassword"),
                        help="password (env MYSERVICE_PASSWORD, default TestUser's)")
    parser.add_argument("--session-id", default=None,
                        help="the session to use or resume (default: a new one, printed on stderr)")
    parser.add_argument("--shutdown", action="store_true", help="end the session after the Runs")
    parser.add_argument("--tls-ca", metavar="PEM", default=None, help="TLS: trust this CA (default: plaintext)")
    parser.add_argument("--timeout", type=float, default=120, help="seconds per call (default %(default)s)")
    return parser


def channel_to(args: argparse.Namespace) -> grpc.Channel:
    if args.tls_ca is None:
        return grpc.insecure_channel(args.gateway)
    return grpc.secure_channel(args.gateway, grpc.ssl_channel_credentials(Path(args.tls_ca).read_bytes()))


def repl_chunks():
    """Code from a terminal, one Run per statement (a block ends at a blank line)."""
    while True:
        try:
            line = input(">>> ")
            lines = [line]
            while lines[-1].rstrip().endswith(":") or (len(lines) > 1 and lines[-1].strip()):
                lines.append(input("... "))
        except EOFError:
            print()
            return
        if "".join(lines).strip():
            yield "\n".join(lines)


def show(reply: pb.RunResponse) -> bool:
    sys.stdout.write(reply.stdout)
    sys.stdout.flush()
    sys.stderr.write(reply.stderr)
    if reply.error:
        sys.stderr.write(reply.error if reply.error.endswith("\n") else reply.error + "\n")
    sys.stderr.flush()
    return not reply.error


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.code:
        chunks = iter(args.code)
    elif sys.stdin.isatty():
        chunks = repl_chunks()
    else:
        chunks = iter([sys.stdin.read()])
    session_id = args.session_id or f"interp-{uuid.uuid4().hex[:8]}"
    ok = True
    with channel_to(args) as channel:
        try:
            login = ms_grpc.MyServiceStub(channel).Login(
                ms_pb.LoginRequest(username=args.user, password=args.password, session_id=session_id),
                timeout=args.timeout)
            if not args.session_id:
                print(f"session {session_id} (resume it with --session-id {session_id})", file=sys.stderr)
            metadata = ((contract.AUTHORIZATION, login.token), (contract.SESSION_ID, session_id))
            stub = pb_grpc.InterpreterStub(channel)
            for code in chunks:
                ok = show(stub.Run(pb.RunRequest(code=code), metadata=metadata, timeout=args.timeout)) and ok
            if args.shutdown:
                reply = stub.Shutdown(pb.ShutdownRequest(), metadata=metadata, timeout=args.timeout)
                print(f"session {session_id} ended (pod {reply.pod_name})", file=sys.stderr)
        except grpc.RpcError as e:
            print(f"error: {e.code().name}: {e.details()}", file=sys.stderr)
            return 1
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
