"""Entry point `myservice-operator`: read the settings, then run kopf on our handlers.

The equivalent of `kopf run --standalone --namespace $MYSERVICE_NAMESPACE
--liveness http://0.0.0.0:8080/healthz` for myservice_operator.handlers, but with
the handlers registered from the settings object instead of import-time globals.
"""
from __future__ import annotations

import os
import sys

import kopf

from . import clients, handlers
from .settings import Settings, SettingsError


def main() -> None:
    try:
        settings = Settings.from_env(os.environ)
    except SettingsError as error:
        sys.exit(f"myservice-operator: {error}")
    kopf.configure(verbose=os.environ.get("MYSERVICE_OPERATOR_DEBUG", "") == "1")
    clients.load_config()
    registry = kopf.OperatorRegistry()
    handlers.register(registry, handlers.Reconciler(settings, clients.Kube(settings.namespace)))
    kopf.run(
        registry=registry,
        settings=handlers.kopf_settings(settings),
        namespaces=[settings.namespace],
        clusterwide=False,
        standalone=True,
        liveness_endpoint=f"http://0.0.0.0:{settings.liveness_port}/healthz",
    )


if __name__ == "__main__":
    main()
