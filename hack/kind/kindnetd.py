"""kindnetd.py - the locally built stand-in for kind's CNI daemon (kindnetd).

kind's node image runs kindnetd (docker.io/kindest/kindnetd) as its default CNI.
Its source is not on the Go module proxy this machine can reach, so the node image
built by e2e/kind/build.sh carries this stand-in under the image name kind's
manifest names. It does what kindnetd does for the nodes of a kind cluster:

  * writes /etc/cni/net.d/10-kindnet.conflist for this node's spec.podCIDR
    (ptp + host-local + portmap, as kindnetd writes it);
  * routes every other node's podCIDR via that node's InternalIP;
  * masquerades traffic from pods to addresses outside the pod subnet;
  * enforces NetworkPolicy with kube-network-policies, the agent kindnetd embeds
    (the same patched build the local cluster runs: e2e/cluster/build.sh), with
    xtables NFQUEUE through nft_compat where the kernel has no nftables `queue`
    expression (CONFIG_NFT_QUEUE).

It runs in kind's kindnet DaemonSet as kind writes it (hostNetwork, NET_ADMIN and
NET_RAW, the env POD_SUBNET/HOST_IP, the kindnet ServiceAccount: list/watch nodes).
Python's standard library only; `nft` and `ip` from the image.
"""
from __future__ import annotations

import ipaddress
import json
import os
import platform
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.parse
import urllib.request

CNI_CONF = "/etc/cni/net.d/10-kindnet.conflist"
SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
AGENT = "/usr/local/bin/kube-network-policies"
MASQ_TABLE = "kindnet-masquerade"
RESYNC_SECONDS = 10


def log(message: str) -> None:
    print(f"kindnetd(stand-in) {time.strftime('%H:%M:%S')} {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- pure logic


def cni_conflist(pod_cidr: str, mtu: int = 1500) -> dict:
    """The conflist kindnetd writes for a node whose spec.podCIDR is pod_cidr."""
    ipaddress.ip_network(pod_cidr)  # refuse garbage before it reaches the kubelet
    return {
        "cniVersion": "0.4.0",
        "name": "kindnet",
        "plugins": [
            {
                "type": "ptp",
                "ipMasq": False,
                "ipam": {
                    "type": "host-local",
                    "dataDir": "/run/cni-ipam-state",
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "ranges": [[{"subnet": pod_cidr}]],
                },
                "mtu": mtu,
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }


def node_address(node: dict) -> str | None:
    for address in node.get("status", {}).get("addresses", []):
        if address.get("type") == "InternalIP" and ":" not in address.get("address", ""):
            return address["address"]
    return None


def routes_to_other_nodes(nodes: list[dict], own_name: str) -> dict[str, str]:
    """{podCIDR: InternalIP} of every other node with both (IPv4)."""
    routes = {}
    for node in nodes:
        if node["metadata"]["name"] == own_name:
            continue
        cidr, via = node.get("spec", {}).get("podCIDR"), node_address(node)
        if cidr and via and ":" not in cidr:
            routes[cidr] = via
    return routes


def masquerade_ruleset(pod_subnet: str) -> str:
    """nft script: pods' traffic to anything outside the pod subnet leaves as the node."""
    ipaddress.ip_network(pod_subnet)
    return (
        f"table ip {MASQ_TABLE}\n"
        f"delete table ip {MASQ_TABLE}\n"
        f"table ip {MASQ_TABLE} {{\n"
        "  chain postrouting {\n"
        "    type nat hook postrouting priority srcnat; policy accept;\n"
        f"    ip saddr {pod_subnet} ip daddr != {pod_subnet} masquerade\n"
        "  }\n"
        "}\n"
    )


def agent_args(node_name: str, kernel_release: str, has_nft_queue: bool) -> list[str]:
    """kube-network-policies' command line for this node and kernel."""
    args = [AGENT, "--hostname-override", node_name, "--v=1"]
    # The DNS workaround (netfilter bug 1766) is for kernels before 6.12.
    major, minor = (int(p) for p in kernel_release.split(".")[:2])
    if (major, minor) >= (6, 12):
        args.append("--netfilter-bug-1766-fix=false")
    if not has_nft_queue:
        args.append("--nft-compat-queue")
    return args


# --------------------------------------------------------------------------- adapters


def api_list_nodes(field_selector: str | None = None) -> list[dict]:
    host = os.environ["KUBERNETES_SERVICE_HOST"]
    port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
    query = "?" + urllib.parse.urlencode({"fieldSelector": field_selector}) if field_selector else ""
    url = f"https://{host}:{port}/api/v1/nodes{query}"
    if ":" in host:
        url = f"https://[{host}]:{port}/api/v1/nodes{query}"
    with open(f"{SA_DIR}/token") as f:
        token = f.read().strip()
    context = ssl.create_default_context(cafile=f"{SA_DIR}/ca.crt")
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, context=context, timeout=10) as response:
        return json.load(response)["items"]


def write_if_changed(path: str, content: str) -> bool:
    try:
        with open(path) as f:
            if f.read() == content:
                return False
    except FileNotFoundError:
        pass
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        f.write(content)
    os.rename(tmp, path)  # the kubelet never reads half a file
    return True


def run(*cmd: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, input=stdin, text=True, capture_output=True)


def kernel_has_nft_queue() -> bool:
    """Whether nftables' queue expression exists (a scratch table; nothing is hooked)."""
    table = "kindnet-queue-probe"
    ok = run("nft", "-f", "-", stdin=f"table inet {table} {{ chain probe {{ queue num 65000 bypass; }} }}\n")
    run("nft", "delete", "table", "inet", table)
    return ok.returncode == 0


def sync_routes(wanted: dict[str, str], installed: dict[str, str]) -> dict[str, str]:
    for cidr, via in wanted.items():
        if installed.get(cidr) != via:
            result = run("ip", "route", "replace", cidr, "via", via)
            log(f"route {cidr} via {via}: {'ok' if result.returncode == 0 else result.stderr.strip()}")
    for cidr in set(installed) - set(wanted):
        run("ip", "route", "del", cidr)
        log(f"route {cidr} removed (its node is gone)")
    return dict(wanted)


def main() -> int:
    node_name = socket.gethostname()
    pod_subnet = os.environ.get("POD_SUBNET", "10.244.0.0/16")
    log(f"node {node_name}, pod subnet {pod_subnet}")

    pod_cidr = None
    while pod_cidr is None:
        try:
            own = api_list_nodes(f"metadata.name={node_name}")
            pod_cidr = own[0].get("spec", {}).get("podCIDR") if own else None
        except OSError as error:  # the API server's Service may not route yet
            log(f"waiting for the API server: {error}")
        if pod_cidr is None:
            time.sleep(1)
    if write_if_changed(CNI_CONF, json.dumps(cni_conflist(pod_cidr), indent=2) + "\n"):
        log(f"wrote {CNI_CONF} for podCIDR {pod_cidr}")

    masq = run("nft", "-f", "-", stdin=masquerade_ruleset(pod_subnet))
    if masq.returncode != 0:
        log(f"masquerade rules refused: {masq.stderr.strip()}")
        return 1

    has_queue = kernel_has_nft_queue()
    args = agent_args(node_name, platform.release(), has_queue)
    if not has_queue:
        log("the kernel has no nftables queue expression (CONFIG_NFT_QUEUE): the agent queues with xt NFQUEUE via nft_compat")
    log("starting " + " ".join(args))
    agent = subprocess.Popen(args)
    signal.signal(signal.SIGTERM, lambda *_: agent.terminate())

    installed: dict[str, str] = {}
    while agent.poll() is None:
        try:
            installed = sync_routes(routes_to_other_nodes(api_list_nodes(), node_name), installed)
        except OSError as error:
            log(f"listing nodes failed: {error}")
        try:
            agent.wait(timeout=RESYNC_SECONDS)
        except subprocess.TimeoutExpired:
            pass
    log(f"kube-network-policies exited with {agent.returncode}")
    return agent.returncode or 1


if __name__ == "__main__":
    sys.exit(main())
