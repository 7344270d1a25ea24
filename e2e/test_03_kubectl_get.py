"""Check 3: `kubectl get myservicesessions` (and `mss`, `-o wide`) lists the session
with its phase and pod, in the printer columns."""
from __future__ import annotations

import re

import framework as fw
from framework import crd


def parse_table(text: str) -> list[dict[str, str]]:
    """kubectl's table: columns start where the header words start."""
    lines = [ln for ln in text.splitlines() if ln.strip()]
    header = lines[0]
    starts = [m.start() for m in re.finditer(r"\S+", header)]
    names = header.split()
    rows = []
    for ln in lines[1:]:
        cells = [ln[s:e].strip() for s, e in zip(starts, starts[1:] + [None])]
        rows.append(dict(zip(names, cells)))
    return rows


def test_kubectl_get_lists_the_session(client, kube, sessions, cfg):
    session, echo = fw.start_session(client, sessions.add, prefix="get")
    status = kube.mss_status(session.resource)
    assert status["phase"] == crd.Phase.READY

    for kind in (crd.PLURAL, crd.SHORT_NAME, f"{crd.PLURAL}.{crd.GROUP}"):
        out = kube.kubectl("get", kind)
        print(out)
        rows = {r["NAME"]: r for r in parse_table(out)}
        assert list(parse_table(out)[0]) == ["NAME", "SESSION", "USER", "PHASE", "POD", "AGE"], out
        row = rows[session.resource]
        assert (row["SESSION"], row["USER"], row["PHASE"], row["POD"]) == \
            (session.session_id, "TestUser", "Ready", echo.pod_name), row

    out = kube.kubectl("get", crd.SHORT_NAME, "-o", "wide")
    print(out)
    table = parse_table(out)
    assert list(table[0]) == ["NAME", "SESSION", "USER", "PHASE", "POD", "AGE", "IP", "REASON", "SOURCE"], out
    row = {r["NAME"]: r for r in table}[session.resource]
    pod_ip = kube.get("pod", echo.pod_name)["status"]["podIP"]
    assert (row["PHASE"], row["POD"], row["IP"], row["REASON"], row["SOURCE"]) == (
        "Ready", echo.pod_name, pod_ip, crd.Reason.POD_READY, "cold"), row  # no warm pool here

    # after Shutdown the listing follows the phase
    client.shutdown(session)
    kube.wait_mss(session.resource, crd.Phase.COMPLETED, 60)
    row = {r["NAME"]: r for r in parse_table(kube.kubectl("get", crd.SHORT_NAME, "-o", "wide"))}[session.resource]
    assert (row["PHASE"], row["POD"], row["REASON"]) == ("Completed", echo.pod_name, crd.Reason.INSTANCE_EXITED), row
