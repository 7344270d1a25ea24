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

from . import settings as settings_module

# `up` is for this machine: it listens on loopback unless told otherwise.
UP_HOST = "127.0.0.1"

EPILOG = """\
examples:
  myservice up                          gateway on 127.0.0.1:10000 with local instances
                                        (dev user TestUser/TestPassword unless MYSERVICE_USERS_FILE is set)
  myservice up --host 0.0.0.0           the same, reachable from other machines
  myservice up --port 10001 --max-instances 4
  myservice gateway --backend kubernetes   (in a cluster; see docs/kubernetes.md)
  myservice instance --port 50051       one instance on its own

configuration: every flag has a MYSERVICE_* environment variable; see README.md.
"""


def _add_gateway_flags(parser: argparse.ArgumentParser, default_host: str) -> None:
    parser.add_argument("--host", default=None, help=f"listen address (env MYSERVICE_HOST, default {default_host})")
    parser.add_argument("--port", type=int, default=None, help="listen port (env MYSERVICE_PORT, default 10000)")
    parser.add_argument("--max-instances", type=int, default=None,
                        help="most live local instances at once (env MYSERVICE_MAX_INSTANCES, default 16); "
                             "counts warm pool members too")
    parser.add_argument("--warm-pool", type=int, default=None, metavar="N",
                        help="local: keep N idle instances started, so a new session's first call does not wait "
                             "for a process start; refilled in the background within --max-instances, which "
                             "bounds idle and bound processes together (a new session takes a pool member "
                             "first, so the pool never keeps one out) (env MYSERVICE_WARM_POOL, default 0: off)")
    parser.add_argument("--max-sessions-per-user", type=int, default=None, metavar="N",
                        help="most live sessions of one user (env MYSERVICE_MAX_SESSIONS_PER_USER, default 10; 0: no limit)")
    parser.add_argument("--idle-timeout", type=float, default=None, metavar="SECONDS",
                        help="local: end an instance after this long without a call "
                             "(env MYSERVICE_SESSION_IDLE_TIMEOUT_SECONDS, default 900; 0: off)")
    parser.add_argument("--max-lifetime", type=float, default=None, metavar="SECONDS",
                        help="local: end an instance this long after it started "
                             "(env MYSERVICE_SESSION_MAX_LIFETIME_SECONDS, default 86400; 0: off)")
    parser.add_argument("--tls-cert", default=None, metavar="FILE",
                        help="serve TLS with this PEM certificate chain, re-read when it changes "
                             "(env MYSERVICE_TLS_CERT_FILE; default: plaintext)")
    parser.add_argument("--tls-key", default=None, metavar="FILE",
                        help="the PEM private key of --tls-cert (env MYSERVICE_TLS_KEY_FILE)")
    parser.add_argument("--tls-client-ca", default=None, metavar="FILE",
                        help="require client certificates signed by these PEM CA certificates "
                             "(env MYSERVICE_TLS_CLIENT_CA_FILE)")
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="myservice", description="MyService: one dedicated backend instance per client session.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    up = sub.add_parser("up", help="gateway + local instances: the whole system on this machine",
                        description="Run the gateway with the embedded local backend: one instance process per session.")
    _add_gateway_flags(up, UP_HOST)
    gw = sub.add_parser("gateway", help="the gateway alone, with the backend from MYSERVICE_BACKEND",
                        description="Run the gateway; --backend kubernetes routes to pods made by the operator.")
    _add_gateway_flags(gw, "0.0.0.0")
    gw.add_argument("--backend", choices=["local", "kubernetes"], default=None,
                    help="where instances come from (env MYSERVICE_BACKEND, default local)")
    from myservice_instance.__main__ import build_parser as instance_parser

    sub.add_parser("instance", help="one session instance on its own", parents=[instance_parser()],
                   add_help=False, description=instance_parser().description)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "instance":
        from myservice_instance.__main__ import run

        return run(args)
    logging.basicConfig(level=args.log_level, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    env = dict(os.environ)
    if args.command == "up":
        env["MYSERVICE_BACKEND"] = "local"
        env.setdefault("MYSERVICE_HOST", UP_HOST)
    elif args.backend:
        env["MYSERVICE_BACKEND"] = args.backend
    # The development user: `up` without a users file only (never `gateway`).
    dev_user = args.command == "up" and not env.get("MYSERVICE_USERS_FILE")
    try:
        settings = settings_module.from_env(
            env, host=args.host, port=args.port, max_instances=args.max_instances, dev_user=dev_user,
            max_sessions_per_user=args.max_sessions_per_user, session_idle_timeout=args.idle_timeout,
            session_max_lifetime=args.max_lifetime, warm_pool=args.warm_pool,
            tls_cert_file=args.tls_cert, tls_key_file=args.tls_key, tls_client_ca_file=args.tls_client_ca)
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
