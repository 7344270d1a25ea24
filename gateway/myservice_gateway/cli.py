"""`myservice`: run the system (`up`), the gateway alone, or one instance."""
from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys

# The local backend forks instance processes; gRPC's fork handlers are not
# needed for fork+exec and only print warnings.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")

# The gateway's settings (and what they import) are imported where they are used:
# `myservice instance`, the instance image's command, starts once per session and
# needs none of them (bench/instance_start.py).

# `up` is for this machine: it listens on loopback unless told otherwise.
UP_HOST = "127.0.0.1"

EPILOG = """\
examples:
  myservice up                          gateway on 127.0.0.1:10000 with local instances
                                        (dev user TestUser/TestPassword unless MYSERVICE_USERS_FILE is set)
  myservice up --host 0.0.0.0           the same, reachable from other machines
  myservice up --port 10001 --max-instances 4
  myservice up --service counter.v1.Counter --instance-command "python3 counter_server.py"
                                        your own gRPC service, one process per session
                                        (README "Host your own service", docs/instances.md)
  myservice gateway --backend kubernetes   (in a cluster; see docs/kubernetes.md)
  myservice instance --port 50051       one instance on its own
  myservice hash-password < pw.txt      an argon2id hash for a users file or the chart's passwordHash

configuration: every flag has a MYSERVICE_* environment variable; see README.md.
"""


def _add_gateway_flags(parser: argparse.ArgumentParser, *, default_host: str, skip: tuple[str, ...] = ()) -> None:
    """The gateway's flags, from its settings' declarations (settings.py)."""
    from myservice_api import settings as declarations

    from . import settings as settings_module

    declarations.add_flags(parser, settings_module.GatewaySettings, skip=skip, shown_defaults={"host": default_host})
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])


def build_parser() -> argparse.ArgumentParser:
    from . import settings as settings_module

    parser = argparse.ArgumentParser(
        prog="myservice", description="MyService: one dedicated backend instance per client session.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    up = sub.add_parser("up", help="gateway + local instances: the whole system on this machine",
                        description="Run the gateway with the embedded local backend: one instance process per session.")
    _add_gateway_flags(up, default_host=UP_HOST, skip=("backend",))
    gw = sub.add_parser("gateway", help="the gateway alone, with the backend from MYSERVICE_BACKEND",
                        description="Run the gateway; --backend kubernetes routes to pods made by the operator.")
    _add_gateway_flags(gw, default_host=settings_module.GatewaySettings.host)
    from myservice_instance.__main__ import build_parser as instance_parser

    sub.add_parser("instance", help="one session instance on its own", parents=[instance_parser()],
                   add_help=False, description=instance_parser().description)
    sub.add_parser("hash-password", help="print an argon2id hash of a password (read from stdin or a prompt)",
                   description="Print an argon2id hash of a password, for a users file's password_hash or the "
                               "chart's users[].passwordHash. The password is read from stdin (one line) or, "
                               "on a terminal, asked twice; never from the command line.")
    return parser


def hash_password_command(stdin=None, stdout=None, stderr=None) -> int:
    from . import users

    stdin, stdout, stderr = stdin or sys.stdin, stdout or sys.stdout, stderr or sys.stderr
    if stdin.isatty():
        import getpass

        password = getpass.getpass("password: ")
        if getpass.getpass("again: ") != password:
            print("myservice hash-password: the two passwords differ", file=stderr)
            return 2
    else:
        password = stdin.readline().removesuffix("\n").removesuffix("\r")
    if not password or len(password.encode()) > users.MAX_PASSWORD_BYTES:
        print(f"myservice hash-password: the password must be 1..{users.MAX_PASSWORD_BYTES} bytes", file=stderr)
        return 2
    print(users.hash_password(password), file=stdout)
    return 0


def instance_main(argv: list[str]) -> int:
    """`myservice instance ARGS`: the instance's own parser and nothing of the gateway's
    (the same flags and help as the subcommand in build_parser)."""
    from myservice_instance.__main__ import build_parser as instance_parser, run

    return run(instance_parser().parse_args(argv))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["instance"]:  # before building the gateway's parsers: see the imports above
        return instance_main(argv[1:])
    args = build_parser().parse_args(argv)
    if args.command == "instance":  # e.g. `myservice -- instance`
        from myservice_instance.__main__ import run

        return run(args)
    if args.command == "hash-password":
        return hash_password_command()
    from myservice_api import settings as declarations

    from . import settings as settings_module

    logging.basicConfig(level=args.log_level, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    env = dict(os.environ)
    flags = declarations.flag_values(args, settings_module.GatewaySettings)
    if args.command == "up":
        env["MYSERVICE_BACKEND"] = "local"
        if not env.get("MYSERVICE_HOST", "").strip():  # blank is unset, as for every setting
            env["MYSERVICE_HOST"] = UP_HOST
    # The development user: `up` without a users file only (never `gateway`).
    dev_user = args.command == "up" and not env.get("MYSERVICE_USERS_FILE")
    try:
        settings = settings_module.from_env(env, dev_user=dev_user, **flags)
    except settings_module.SettingsError as e:
        print(f"myservice: configuration error: {e}", file=sys.stderr)
        return 2
    from .server import serve

    try:
        return asyncio.run(serve(settings))
    except settings_module.SettingsError as e:  # a file the settings name does not check out (TLS)
        print(f"myservice: configuration error: {e}", file=sys.stderr)
        return 2
    except (OSError, RuntimeError) as e:  # cannot listen; cannot reach the cluster
        print(f"myservice: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
