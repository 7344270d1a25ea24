"""Check 10: `helm uninstall` leaves no session pods or resources behind in the
namespace (with a live session at the time); the CRD stays when the chart keeps it."""
from __future__ import annotations

import framework as fw
from framework import crd

CRD_NAME = f"{crd.PLURAL}.{crd.GROUP}"


def test_helm_uninstall_leaves_nothing(client, kube, release, installed, t):
    live, _ = fw.start_session(client, lambda s: s, prefix="uninst")
    ended, _ = fw.start_session(client, lambda s: s, prefix="uninst-end")
    client.shutdown(ended)
    kube.wait_mss(ended.resource, crd.Phase.COMPLETED, t(60))
    client.close()

    kube.helm("uninstall", release.name, "--wait", "--timeout", "180s", timeout=t(240))
    release.uninstalled = True

    def leftovers():
        left = [f"pod/{p['metadata']['name']}" for p in kube.items("pods")]
        left += [f"mss/{m['metadata']['name']}" for m in kube.items(crd.PLURAL)]
        left += [f"deploy/{d['metadata']['name']}" for d in kube.items("deployments")]
        return left
    fw.wait_until("no pods, sessions or deployments left in the namespace after helm uninstall",
                  lambda: not leftovers(), t(120), interval=2, describe=lambda: ", ".join(leftovers()))
    assert kube.helm("list", "-q").split() == []
    obj = kube.get("crd", CRD_NAME, namespaced=False)
    if not release.owns_crd:
        assert obj is not None, "the CRD (not installed by this release) was deleted by its uninstall"
    elif release.crd_kept:
        assert obj is not None and obj["metadata"]["annotations"].get("helm.sh/resource-policy") == "keep", \
            "the chart keeps the CRD (crds.keep): it must survive the uninstall"
    else:
        fw.wait_until(f"CRD {CRD_NAME} deleted", lambda: kube.get("crd", CRD_NAME, namespaced=False) is None, t(60))
