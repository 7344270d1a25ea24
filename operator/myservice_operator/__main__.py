"""Entry point `myservice-operator`: read the settings, then run kopf on our handlers.

`myservice-operator` (or `myservice-operator run`) is the equivalent of
`kopf run --standalone --namespace $MYSERVICE_NAMESPACE --liveness
http://0.0.0.0:8080/healthz` for our handlers, registered from the settings
object instead of import-time globals. `myservice-operator cleanup` is the
chart's pre-delete hook (see cleanups.py).
"""
from __future__ import annotations

import argparse
import logging
import os
import secrets
import socket
import sys

import kopf

from . import cleanups, clients, handlers, kopffixes, leadership
from .metrics import OperatorMetrics
from .reconciler import Reconciler
from .settings import Settings, SettingsError

# How long a stopping operator waits for its API calls in flight before it gives up the Lease
# (within the pod's termination grace period; clients.REQUEST_TIMEOUT bounds each call).
API_DRAIN_SECONDS = 10.0


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="myservice-operator", description=__doc__.splitlines()[0])
    parser.add_argument("command", nargs="?", default="run", choices=["run", "cleanup"],
                        help="run the operator (default), or delete every session of the namespace")
    parser.add_argument("--grace-seconds", type=float, default=60.0,
                        help="cleanup: how long the operator gets to release the sessions (default %(default)s)")
    args = parser.parse_args(argv)
    try:
        settings = Settings.from_env(os.environ)
    except SettingsError as error:
        sys.exit(f"myservice-operator: {error}")
    debug = settings.debug
    metrics = OperatorMetrics()
    kube = clients.Kube(settings.namespace, count=metrics.api_request)
    if args.command == "cleanup":
        logging.basicConfig(level=logging.DEBUG if debug else logging.INFO,
                            format="%(asctime)s %(levelname)s %(message)s")
        count = cleanups.run(kube, grace_seconds=args.grace_seconds)
        print(f"myservice-operator cleanup: {count} session(s) deleted in {settings.namespace}")
        return
    kopf.configure(verbose=debug)
    if not debug:
        # kopf reports every handler run ("Handler 'session-changed' succeeded") at INFO.
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    if settings.metrics_port:
        try:
            metrics.serve(settings.metrics_host, settings.metrics_port)
        except OSError as error:
            sys.exit(f"myservice-operator: {error}")
    elector = None
    if settings.lease_name:
        # HA: wait (answering the liveness probe) until this replica holds the Lease.
        identity = f"{settings.identity or socket.gethostname()}-{secrets.token_hex(3)}"
        elector = leadership.Elector(kube, settings.lease_name, identity)
        health = leadership.StandbyHealth(settings.liveness_port)
        try:
            elector.wait_until_leader()
        finally:
            health.close()
        elector.keep()
    kopffixes.install()  # before kopf.run builds its toggle sets
    registry = kopf.OperatorRegistry()
    reconciler = Reconciler(settings, kube, metrics=metrics)
    handlers.register(registry, reconciler)
    try:
        kopf.run(
            registry=registry,
            settings=handlers.kopf_settings(settings),
            namespaces=[settings.namespace],
            clusterwide=False,
            standalone=True,
            liveness_endpoint=f"http://0.0.0.0:{settings.liveness_port}/healthz",
        )
    finally:
        # The API calls still on their threads end first: a claim's status write landing after
        # a new leader has read the sessions could give its pod to a second session.
        drained = reconciler.background.close(API_DRAIN_SECONDS)
        if elector is not None:
            if drained:
                elector.release()
            else:
                logging.getLogger("myservice_operator").warning(
                    "API calls still running after %ss: the Lease is left to expire", API_DRAIN_SECONDS)


if __name__ == "__main__":
    main()
