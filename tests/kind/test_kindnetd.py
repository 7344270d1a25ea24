"""hack/kind/kindnetd.py: what the stand-in for kind's kindnetd writes and runs, as plain values."""
import json
import shutil
import subprocess

import pytest

import kindnetd


def node(name, pod_cidr=None, addresses=()):
    return {
        "metadata": {"name": name},
        "spec": {"podCIDR": pod_cidr} if pod_cidr else {},
        "status": {"addresses": [{"type": t, "address": a} for t, a in addresses]},
    }


def test_conflist_is_kindnets_ptp_host_local_portmap_for_the_nodes_cidr():
    conf = kindnetd.cni_conflist("10.244.0.0/24")
    assert conf["name"] == "kindnet"
    ptp, portmap = conf["plugins"]
    assert ptp["type"] == "ptp" and ptp["ipMasq"] is False and ptp["mtu"] == 1500
    assert ptp["ipam"] == {
        "type": "host-local",
        "dataDir": "/run/cni-ipam-state",
        "routes": [{"dst": "0.0.0.0/0"}],
        "ranges": [[{"subnet": "10.244.0.0/24"}]],
    }
    assert portmap == {"type": "portmap", "capabilities": {"portMappings": True}}
    json.dumps(conf)  # what the kubelet reads is JSON


def test_conflist_refuses_a_cidr_that_is_not_one():
    with pytest.raises(ValueError):
        kindnetd.cni_conflist("10.244.0.0/33")


def test_routes_go_to_every_other_node_with_a_cidr_and_an_ipv4_address():
    nodes = [
        node("cp", "10.244.0.0/24", [("InternalIP", "172.18.0.2")]),
        node("w1", "10.244.1.0/24", [("Hostname", "w1"), ("InternalIP", "fc00::3"), ("InternalIP", "172.18.0.3")]),
        node("w2", None, [("InternalIP", "172.18.0.4")]),  # no podCIDR yet
        node("w3", "10.244.3.0/24", [("Hostname", "w3")]),  # no address yet
    ]
    assert kindnetd.routes_to_other_nodes(nodes, "cp") == {"10.244.1.0/24": "172.18.0.3"}
    assert kindnetd.routes_to_other_nodes(nodes, "w1") == {"10.244.0.0/24": "172.18.0.2"}


def test_agent_flags_follow_the_kernel():
    assert kindnetd.agent_args("cp", "6.18.44-fc-v657", has_nft_queue=False) == [
        kindnetd.AGENT, "--hostname-override", "cp", "--v=1",
        "--netfilter-bug-1766-fix=false", "--nft-compat-queue",
    ]
    assert kindnetd.agent_args("cp", "6.8.0-1017-azure", has_nft_queue=True) == [
        kindnetd.AGENT, "--hostname-override", "cp", "--v=1",
    ]


def test_masquerade_ruleset_replaces_its_own_table_only():
    rules = kindnetd.masquerade_ruleset("10.244.0.0/16")
    assert rules.splitlines()[:2] == ["table ip kindnet-masquerade", "delete table ip kindnet-masquerade"]
    assert "ip saddr 10.244.0.0/16 ip daddr != 10.244.0.0/16 masquerade" in rules
    with pytest.raises(ValueError):
        kindnetd.masquerade_ruleset("not a subnet")


@pytest.mark.skipif(shutil.which("nft") is None, reason="nft not installed")
def test_masquerade_ruleset_parses_with_nft():
    result = subprocess.run(["nft", "--check", "-f", "-"], input=kindnetd.masquerade_ruleset("10.244.0.0/16"),
                            text=True, capture_output=True)
    if result.returncode != 0 and "Operation not permitted" in result.stderr:
        pytest.skip("nft --check needs CAP_NET_ADMIN")
    assert result.returncode == 0, result.stderr
