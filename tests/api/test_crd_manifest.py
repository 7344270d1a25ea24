"""crds/myservicesessions.yaml agrees with the Python contract in myservice_api.crd."""
from pathlib import Path

import yaml

from myservice_api import crd

CRD_FILE = Path(__file__).resolve().parents[2] / "crds" / "myservicesessions.yaml"


def _crd() -> dict:
    return yaml.safe_load(CRD_FILE.read_text())


def _schema() -> dict:
    return _crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def test_names_match_the_contract():
    doc = _crd()
    assert doc["metadata"]["name"] == f"{crd.PLURAL}.{crd.GROUP}"
    assert doc["spec"]["group"] == crd.GROUP
    assert doc["spec"]["scope"] == "Namespaced"
    assert doc["spec"]["names"] == {
        "kind": crd.KIND, "listKind": f"{crd.KIND}List", "plural": crd.PLURAL,
        "singular": crd.SINGULAR, "shortNames": [crd.SHORT_NAME],
    }


def test_one_served_storage_version_with_status_subresource():
    versions = _crd()["spec"]["versions"]
    assert [(v["name"], v["served"], v["storage"]) for v in versions] == [(crd.VERSION, True, True)]
    assert versions[0]["subresources"] == {"status": {}}


def test_phase_enum_is_the_contract_phases():
    assert tuple(_schema()["properties"]["status"]["properties"]["phase"]["enum"]) == crd.PHASES


def test_spec_requires_session_and_user_and_is_immutable():
    spec = _schema()["properties"]["spec"]
    assert spec["required"] == ["sessionId", "user"]
    assert sorted(spec["properties"]) == ["role", "sessionId", "user"]
    assert spec["x-kubernetes-validations"] == [{"rule": "self == oldSelf", "message": "spec is immutable"}]


def test_status_fields_and_no_unknown_fields_preserved():
    status = _schema()["properties"]["status"]
    assert sorted(status["properties"]) == sorted([
        "phase", "reason", "message", "podName", "podIP", "podSource", "port",
        "startedAt", "readyAt", "finishedAt", "observedGeneration"])
    for key in ("startedAt", "readyAt", "finishedAt"):
        assert status["properties"][key] == {**status["properties"][key], "type": "string", "format": "date-time"}
    assert "x-kubernetes-preserve-unknown-fields" not in CRD_FILE.read_text()


def test_printer_columns():
    columns = _crd()["spec"]["versions"][0]["additionalPrinterColumns"]
    assert [(c["name"], c["jsonPath"], c.get("priority", 0)) for c in columns] == [
        ("Session", ".spec.sessionId", 0),
        ("User", ".spec.user", 0),
        ("Phase", ".status.phase", 0),
        ("Pod", ".status.podName", 0),
        ("Age", ".metadata.creationTimestamp", 0),
        ("IP", ".status.podIP", 1),
        ("Reason", ".status.reason", 1),
        ("Source", ".status.podSource", 1),
    ]
    assert _schema()["properties"]["status"]["properties"]["podSource"]["enum"] == [str(s) for s in crd.PodSource]
