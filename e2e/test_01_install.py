"""Check 1: `helm install` of the chart (ci/e2e-values.yaml + image overrides):
the CRD is Established, the operator and gateway Deployments become Available."""
from __future__ import annotations

import framework as fw
from framework import crd

CRD_NAME = f"{crd.PLURAL}.{crd.GROUP}"


def test_crd_established(release, kube, t):
    def established():
        obj = kube.get("crd", CRD_NAME, namespaced=False)
        conds = {c["type"]: c["status"] for c in ((obj or {}).get("status") or {}).get("conditions", [])}
        return obj if conds.get("Established") == "True" and conds.get("NamesAccepted") == "True" else None

    obj = fw.wait_until(f"CRD {CRD_NAME} Established and NamesAccepted", established, t(60))
    spec = obj["spec"]
    assert spec["group"] == crd.GROUP
    assert spec["scope"] == "Namespaced"
    assert spec["names"]["kind"] == crd.KIND
    assert spec["names"]["plural"] == crd.PLURAL
    assert crd.SHORT_NAME in spec["names"].get("shortNames", [])
    versions = {v["name"]: v for v in spec["versions"]}
    assert versions[crd.VERSION]["served"] and versions[crd.VERSION]["storage"], versions.keys()
    assert "status" in versions[crd.VERSION].get("subresources", {})
    ann = obj["metadata"].get("annotations") or {}
    if release.owns_crd and release.crd_kept:
        assert ann.get("helm.sh/resource-policy") == "keep", ann
    # served: the namespace's list answers (empty)
    assert kube.items(crd.PLURAL) == []


def test_operator_and_gateway_available(release, kube, t, cfg):
    t0 = fw.time.monotonic()
    kube.wait_deployment(kube.operator_deploy, t(240))
    kube.wait_deployment(kube.gateway_deploy, t(240))
    fw.log(f"operator and gateway Available {fw.time.monotonic() - t0:.1f}s after helm install returned")

    op = kube.get("deployment", kube.operator_deploy)
    replicas = release.values.get("operator", {}).get("replicas", 2)
    assert (op["spec"]["replicas"], op["spec"]["strategy"]["type"]) == (replicas, "RollingUpdate"), \
        f"operator Deployment: replicas={op['spec']['replicas']} strategy={op['spec']['strategy']['type']}"
    # exactly one of them is active: it holds the Lease, the other waits
    active = kube.active_operator_pod(t(60))
    assert active in [p["metadata"]["name"] for p in kube.component_pods("operator")], active
    gw = kube.get("deployment", kube.gateway_deploy)
    assert gw["spec"]["replicas"] == release.values.get("gateway", {}).get("replicas", 1)

    # the operator runs with the values the suite installed (image, capacity, TTL)
    env = kube.deployment_env(kube.operator_deploy, "operator")
    assert env["MYSERVICE_INSTANCE_IMAGE"] == cfg.service_image
    assert env["MYSERVICE_MAX_SESSIONS"] == str(release.max_sessions)
    assert env["MYSERVICE_FINISHED_TTL_SECONDS"] == str(release.finished_ttl)
    images = {c["image"] for d in (op, gw) for c in d["spec"]["template"]["spec"]["containers"]}
    assert images == {cfg.gateway_image}, images

    # every pod of the release is Running and Ready, with no restarts
    for component in ("operator", "gateway"):
        pods = kube.component_pods(component)
        assert pods, f"no {component} pod"
        for p in pods:
            st = p["status"]
            ready = {c["type"]: c["status"] for c in st.get("conditions", [])}.get("Ready")
            restarts = sum(cs.get("restartCount", 0) for cs in st.get("containerStatuses", []))
            assert (st["phase"], ready, restarts) == ("Running", "True", 0), \
                f"{component} pod {p['metadata']['name']}: phase={st['phase']} ready={ready} restarts={restarts}"

    status = kube.helm("status", release.name, "-o", "json")
    assert fw.json.loads(status)["info"]["status"] == "deployed"
