#!/usr/bin/env python3
"""The objects the scale test adds to the cluster, as plain dicts (pure), and a
small CLI that prints them as JSON for `kubectl apply -f -`:

  nodes RUN COUNT            COUNT kwok nodes of this run (annotation, labels, taint)
  flowschemas RUN NS REL     one FlowSchema per component service account, so the
                             API server counts the operator's and the gateway's
                             requests apart from everyone else's
  values RUN USERS PASSWORD  chart values: this run's users (bcrypt cost 4) and the
                             pod template that puts instance pods on this run's nodes

Every object carries the label myservice.io/scale-run=RUN, so cleanup finds them all.
"""
from __future__ import annotations

import json
import sys

import bcrypt

RUN_LABEL = "myservice.io/scale-run"
# kwok manages only nodes with this annotation (its --manage-nodes-with-annotation-selector);
# the value is the run, so two runs never manage each other's nodes.
KWOK_ANNOTATION = "kwok.x-k8s.io/node"
# Nothing but the instance pods of this run tolerates it: no other pod of the shared
# cluster (another engineer's gateway, CoreDNS) lands on a node that runs nothing.
KWOK_TAINT_KEY = "kwok.x-k8s.io/node"
# Below the built-in "service-accounts" (9000) so it is matched first; the same priority
# level, so the components are treated as they would be without it.
FLOW_SCHEMA_PRECEDENCE = 8000
FLOW_SCHEMA_PRIORITY_LEVEL = "workload-low"
# bcrypt's lowest cost: a hash string holds its own parameters, so the gateway verifies
# it as cheaply (~1 ms); this test measures the control plane, not password hashing.
BCRYPT_COST = 4
COMPONENTS = ("operator", "gateway")


def node_name(run: str, index: int) -> str:
    return f"{run}-kwok-{index}"


def kwok_node(run: str, index: int) -> dict:
    """A fake node: kwok reports it Ready (node-initialize stage), renews its lease,
    and marks pods scheduled onto it Running/Ready (pod-ready stage). Capacity comes
    from kwok's default (cpu 1k, memory 1Ti, pods 1M)."""
    name = node_name(run, index)
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {KWOK_ANNOTATION: run, "node.alpha.kubernetes.io/ttl": "0"},
            "labels": {
                RUN_LABEL: run,
                "type": "kwok",
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
            },
        },
        "spec": {"taints": [{"key": KWOK_TAINT_KEY, "value": run, "effect": "NoSchedule"}]},
    }


def component_service_account(release: str, component: str) -> str:
    """The chart's service account name of a component (its fullname: <release>-myservice-<component>)."""
    return f"{release}-myservice-{component}"


def flow_schema_name(run: str, component: str) -> str:
    return f"{run}-{component}"


def flow_schema(run: str, namespace: str, release: str, component: str) -> dict:
    """Every request of one component's service account, counted by the API server as
    apiserver_flowcontrol_dispatched_requests_total{flow_schema=<this name>}."""
    return {
        "apiVersion": "flowcontrol.apiserver.k8s.io/v1",
        "kind": "FlowSchema",
        "metadata": {"name": flow_schema_name(run, component), "labels": {RUN_LABEL: run}},
        "spec": {
            "matchingPrecedence": FLOW_SCHEMA_PRECEDENCE,
            "priorityLevelConfiguration": {"name": FLOW_SCHEMA_PRIORITY_LEVEL},
            "distinguisherMethod": {"type": "ByUser"},
            "rules": [{
                "subjects": [{"kind": "ServiceAccount", "serviceAccount": {
                    "name": component_service_account(release, component), "namespace": namespace}}],
                "resourceRules": [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"],
                                   "namespaces": ["*"], "clusterScope": True}],
                "nonResourceRules": [{"verbs": ["*"], "nonResourceURLs": ["*"]}],
            }],
        },
    }


def user_names(count: int) -> list[str]:
    return [f"scale-user-{i}" for i in range(count)]


def chart_values(run: str, users: int, password: str) -> dict:
    """This run's part of the chart values (bench/scale/values.yaml holds the rest)."""
    password_hash = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=BCRYPT_COST)).decode()
    return {
        "users": [{"username": name, "passwordHash": password_hash} for name in user_names(users)],
        "instance": {"podTemplate": {
            "metadata": {"labels": {RUN_LABEL: run}},
            "spec": {
                "nodeSelector": {RUN_LABEL: run},
                "tolerations": [{"key": KWOK_TAINT_KEY, "operator": "Equal", "value": run,
                                 "effect": "NoSchedule"}],
            },
        }},
    }


def as_list(items: list[dict]) -> dict:
    return {"apiVersion": "v1", "kind": "List", "items": items}


def main(argv: list[str]) -> int:
    if len(argv) < 2 or argv[0] not in ("nodes", "flowschemas", "values"):
        print(__doc__, file=sys.stderr)
        return 2
    command, run, *rest = argv
    if command == "nodes":
        document = as_list([kwok_node(run, i) for i in range(int(rest[0]))])
    elif command == "flowschemas":
        namespace, release = rest
        document = as_list([flow_schema(run, namespace, release, c) for c in COMPONENTS])
    else:
        users, password = rest
        document = chart_values(run, int(users), password)
    json.dump(document, sys.stdout, indent=1)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
