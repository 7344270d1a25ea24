"""How the operator configures and registers with kopf (no API calls involved)."""
import kopf
from kopf._cogs.structs.references import Selector

from myservice_operator import handlers, kopffixes
from myservice_operator.indexes import PODS_INDEX, SESSIONS_INDEX
from myservice_operator.reconciler import Reconciler
from myservice_operator.settings import Settings


def test_kopf_settings_keep_bookkeeping_out_of_status():
    config = handlers.kopf_settings(Settings(namespace="ns"))
    assert isinstance(config.persistence.progress_storage, kopf.AnnotationsProgressStorage)
    assert config.persistence.progress_storage.prefix == "myservice.io"
    # no change handlers, so no per-event deep copy of the body for their diffs
    assert isinstance(config.persistence.diffbase_storage, kopffixes.NoDiffBase)
    body = kopf.Body({"metadata": {"name": "s", "annotations": {"x": "y"}}, "spec": {"a": 1}})
    assert config.persistence.diffbase_storage.build(body=body) is None
    assert config.persistence.diffbase_storage.fetch(body=body) is None
    assert config.persistence.finalizer == "myservice.io/operator"


def test_kopf_settings_timeouts_scanning_and_peering():
    config = handlers.kopf_settings(Settings(namespace="ns", watch_timeout_seconds=120))
    assert (config.watching.server_timeout, config.watching.client_timeout,
            config.watching.connect_timeout) == (120, 180, 10)
    assert (config.networking.connect_timeout, config.networking.request_timeout) == (10, 60)
    assert config.scanning.disabled is True
    assert dict(config.watching.label_selectors.items()) == {
        Selector("v1", "pods"): "app.kubernetes.io/component=instance,app.kubernetes.io/managed-by=myservice-operator"}
    assert config.peering.standalone is True
    assert config.posting.reporting_component == "myservice-operator"


def test_register_wires_indexes_and_event_handlers_only():
    registry = kopf.OperatorRegistry()
    handlers.register(registry, Reconciler(Settings(namespace="ns"), kube=None))
    indexing = registry._indexing.get_all_handlers()
    watching = registry._watching.get_all_handlers()
    assert [(h.id, h.selector.group, h.selector.version, h.selector.plural) for h in indexing] == [
        ("sessions_index", "myservice.io", "v1alpha1", "myservicesessions"), ("pods_index", "", "v1", "pods")]
    assert [(h.id, h.selector.group, h.selector.version, h.selector.plural) for h in watching] == [
        ("session-changed", "myservice.io", "v1alpha1", "myservicesessions"),
        ("instance-pod-changed", "", "v1", "pods")]
    pod_labels = {"app.kubernetes.io/managed-by": "myservice-operator"}  # session and warm pool pods
    assert (indexing[1].labels, watching[1].labels) == (pod_labels, pod_labels)
    # No on.create/on.update (kopf's progress and diff-base annotations) and no timers
    # (a finalizer and a periodic run per session): kopf writes nothing to a session.
    assert registry._changing.get_all_handlers() == []
    assert registry._spawning.get_all_handlers() == []
    assert [(h.id, h.activity.value) for h in registry._activities.get_all_handlers()] == [
        ("login-shared-credentials", "authentication"), ("bind-indexes", "startup"), ("stop-deadlines", "cleanup")]
    assert registry._activities.get_all_handlers()[0].fn is handlers.login


def test_the_index_kwargs_are_the_index_ids():
    # kopf hands each index to the handlers as a keyword argument named by its id.
    registry = kopf.OperatorRegistry()
    handlers.register(registry, Reconciler(Settings(namespace="ns"), kube=None))
    assert {h.id for h in registry._indexing.get_all_handlers()} == {SESSIONS_INDEX, PODS_INDEX}
