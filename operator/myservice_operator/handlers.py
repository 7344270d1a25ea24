"""The kopf adapter: kopf's settings, and what it calls on which event.

- two indexes (@kopf.index): sessions and instance pods, filled by kopf from its
  watches before any handler runs (indexes.py);
- two event handlers (@kopf.on.event): a session's or a pod's event runs the
  reconcile step of that session (reconciler.py), with what kopf delivered
  already in the indexes;
- startup/cleanup (@kopf.on.startup/cleanup): bind the reconciler to the indexes
  and run the operator's one timer (the deadlines of all sessions).

Only @kopf.on.event handlers and indexes: kopf then writes nothing to a session
(no progress or diff-base annotations, no finalizer: those come with
@kopf.on.create and @kopf.timer), so every request of a session's life is the
reconciler's own. Handlers return nothing: kopf would write results into status.
"""
from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping

import kopf

from myservice_api import crd, kubeclient

from . import kopffixes
from .indexes import PODS_INDEX, SESSIONS_INDEX, Indexes, index_pod, index_session
from .pods import instance_selector
from .reconciler import Reconciler
from .settings import Settings

# Where kopf would keep its bookkeeping (it has none to keep with these handlers),
# and the finalizer older versions added: kopf removes it from a session it sees
# carrying it, since no handler needs it any more.
KOPF_PREFIX = crd.GROUP
FINALIZER = f"{crd.GROUP}/operator"
CONNECT_TIMEOUT_SECONDS = 10
EVENT_COMPONENT = "myservice-operator"
# Session pods and warm pool pods (the watch itself selects instance pods server-side).
INSTANCE_POD_LABELS = {crd.LABEL_MANAGED_BY: crd.MANAGED_BY}


def kopf_settings(settings: Settings) -> kopf.OperatorSettings:
    """Kopf's settings for our deployment: namespaced, standalone, bookkeeping in annotations."""
    config = kopf.OperatorSettings()
    config.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=KOPF_PREFIX)
    config.persistence.diffbase_storage = kopffixes.NoDiffBase()  # no change handler needs diffs
    config.persistence.finalizer = FINALIZER
    # A watch request ends server-side after server_timeout; the client gives up
    # a minute later even if the stream went silent (e.g. a dropped connection).
    config.watching.server_timeout = settings.watch_timeout_seconds
    config.watching.client_timeout = settings.watch_timeout_seconds + 60
    config.watching.connect_timeout = CONNECT_TIMEOUT_SECONDS
    config.networking.connect_timeout = CONNECT_TIMEOUT_SECONDS
    config.networking.request_timeout = 60
    # One fixed namespace and one CRD known at start: no cluster-wide list/watch
    # of namespaces or CRDs, so the operator needs no ClusterRole.
    config.scanning.disabled = True
    # Watch only our instance pods (server-side), not every pod of the namespace.
    config.watching.label_selectors["v1", "pods"] = instance_selector()
    # One active replica at a time, chosen by our Lease before kopf starts (leadership.py):
    # no KopfPeering CRD to install (see docs/kubernetes.md, HA).
    config.peering.standalone = True
    config.posting.reporting_component = EVENT_COMPONENT
    return config


def login(*, settings: kopf.OperatorSettings, **_: object) -> kopf.ConnectionInfo:
    """kopf's credentials: the process's (myservice_api.kubeclient: in-cluster, else
    kubeconfig), the token read fresh (kopf logs in again after a 401)."""
    c = kubeclient.credentials()
    return kopf.ConnectionInfo(server=c.server, ca_path=c.ca_path, insecure=c.insecure, username=c.username,
                               password=c.password, scheme=c.scheme, token=c.token,
                               certificate_path=c.certificate_path, private_key_path=c.private_key_path,
                               trust_env=settings.networking.trust_env)


def register(registry: kopf.OperatorRegistry, reconciler: Reconciler) -> None:
    """Register the indexes and handlers (closures over the reconciler) into a kopf registry."""
    # A registry of our own lacks kopf's default login handlers; ours hands kopf the
    # credentials the rest of the operator uses, loaded once.
    kopf.on.login(registry=registry, id="login-shared-credentials")(login)
    sessions = dict(group=crd.GROUP, version=crd.VERSION, plural=crd.PLURAL, registry=registry)
    pods = dict(group="", version="v1", plural="pods", labels=INSTANCE_POD_LABELS, registry=registry)
    deadlines: list[asyncio.Task] = []

    @kopf.index(**sessions, id=SESSIONS_INDEX)
    def index_sessions(body: Mapping, **_: object) -> dict:
        return index_session(body)

    @kopf.index(**pods, id=PODS_INDEX)
    def index_pods(body: Mapping, **_: object) -> dict:
        return index_pod(body)

    @kopf.on.startup(registry=registry, id="bind-indexes")
    async def bind_indexes(**kwargs: object) -> None:
        reconciler.bind(Indexes(kwargs[SESSIONS_INDEX], kwargs[PODS_INDEX]))
        loop = asyncio.get_running_loop()
        deadlines.append(loop.create_task(reconciler.run_deadlines()))
        deadlines.append(loop.create_task(reconciler.start_pool()))

    @kopf.on.cleanup(registry=registry, id="stop-deadlines")
    async def stop_deadlines(**_: object) -> None:
        for task in deadlines:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    @kopf.on.event(**sessions, id="session-changed")
    async def session_changed(name: str, type: str | None, **_: object) -> None:
        await reconciler.session_changed(name, deleted=type == "DELETED")

    @kopf.on.event(**pods, id="instance-pod-changed")
    async def instance_pod_changed(name: str, labels: Mapping[str, str], type: str | None, **_: object) -> None:
        session = labels.get(crd.LABEL_SESSION)
        # The pool's first: a pod labelled just now is no longer an assignment in waiting when
        # its session's step runs.
        reconciler.pool_changed(name, deleted=type == "DELETED", labelled=bool(session))
        if session:
            await reconciler.pod_changed(session, deleted=type == "DELETED")
