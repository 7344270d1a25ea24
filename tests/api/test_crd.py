"""The CRD's phases and reasons in Python: enums whose values are the CRD's strings."""
import json

import pytest

from myservice_api import crd


@pytest.mark.parametrize("reason", [
    "CapacityExceeded", "Unschedulable", "ImagePullFailed", "StartFailed", "ReadyTimeout",
])
def test_start_failures(reason):
    assert crd.is_start_failure(reason) is True


@pytest.mark.parametrize("reason", [
    "PodFailed", "Evicted", "PodDeleted", "InstanceExited", "PodReady", "PodCreated", "", None,
])
def test_not_start_failures(reason):
    assert crd.is_start_failure(reason) is False


def test_contract_constants():
    assert (crd.GROUP, crd.VERSION, crd.KIND, crd.PLURAL) == (
        "myservice.io", "v1alpha1", "MyServiceSession", "myservicesessions")
    assert crd.API_VERSION == "myservice.io/v1alpha1"
    assert crd.PHASES == ("Pending", "Starting", "Ready", "Completed", "Failed")
    assert crd.is_terminal("Completed") and crd.is_terminal("Failed")
    assert not crd.is_terminal("Ready") and not crd.is_terminal(None)


def test_phases_and_reasons_are_the_strings_of_the_crd():
    assert crd.Phase.READY == "Ready" and f"{crd.Phase.READY}" == "Ready"
    assert json.dumps({"phase": crd.Phase.FAILED, "reason": crd.Reason.READY_TIMEOUT}) == \
        '{"phase": "Failed", "reason": "ReadyTimeout"}'
    assert crd.Phase("Completed") is crd.Phase.COMPLETED
    assert crd.Phase.COMPLETED.is_terminal and not crd.Phase.READY.is_terminal
    assert [r.value for r in crd.Reason] == [
        "CapacityExceeded", "PodCreated", "Unschedulable", "ImagePullFailed", "StartFailed", "ReadyTimeout",
        "PodReady", "InstanceExited", "IdleTimeout", "LifetimeExceeded", "PodFailed", "Evicted", "PodDeleted"]
