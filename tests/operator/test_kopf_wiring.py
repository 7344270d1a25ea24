"""How the operator configures and registers with kopf (no API calls involved)."""
import kopf
from kopf._cogs.structs.references import Selector

from myservice_operator import handlers
from myservice_operator.settings import Settings


def test_kopf_settings_keep_bookkeeping_out_of_status():
    config = handlers.kopf_settings(Settings(namespace="ns"))
    assert isinstance(config.persistence.progress_storage, kopf.AnnotationsProgressStorage)
    assert isinstance(config.persistence.diffbase_storage, kopf.AnnotationsDiffBaseStorage)
    assert config.persistence.progress_storage.prefix == "myservice.io"
    assert config.persistence.diffbase_storage.prefix == "myservice.io"
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


def test_register_wires_three_triggers_to_one_reconciler():
    registry = kopf.OperatorRegistry()
    handlers.register(registry, handlers.Reconciler(Settings(namespace="ns", reconcile_interval_seconds=7), kube=None))
    changing = registry._changing.get_all_handlers()
    spawning = registry._spawning.get_all_handlers()
    watching = registry._watching.get_all_handlers()
    assert [(h.id, h.reason, h.selector.group, h.selector.version, h.selector.plural) for h in changing] == [
        ("session-created", kopf.Reason.CREATE, "myservice.io", "v1alpha1", "myservicesessions")]
    assert [(h.id, h.interval, h.selector.plural) for h in spawning] == [
        ("session-recheck", 7, "myservicesessions")]
    assert [(h.id, h.selector.group, h.selector.version, h.selector.plural) for h in watching] == [
        ("instance-pod-changed", "", "v1", "pods")]
    assert [(h.id, h.fn, h.activity.value) for h in registry._activities.get_all_handlers()] == [
        ("login-via-client", kopf.login_via_client, "authentication")]
    assert watching[0].labels == {"app.kubernetes.io/managed-by": "myservice-operator",
                                  "myservice.io/session": kopf.PRESENT}

