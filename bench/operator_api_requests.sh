#!/usr/bin/env bash
# operator_api_requests.sh — what the operator costs the API server, counted by the API server.
#
# Usage: bench/operator_api_requests.sh NAMESPACE [RELEASE] [SESSIONS] [IDLE_SECONDS]
#
# Against a release already installed in NAMESPACE (e.g. an e2e run kept with
# MYSERVICE_E2E_KEEP=1, whose TTL is 20 s): a FlowSchema matching the operator's
# service account makes the API server count its requests apart from everyone
# else's (apiserver_flowcontrol_dispatched_requests_total{flow_schema=...}, kopf's
# watches included). Then SESSIONS whole lives (integrationtests basic_workflow:
# Login, 10 Echo, Shutdown; then the finished TTL), and IDLE_SECONDS with two
# sessions Ready. Prints requests per session life and requests while idle.
# The FlowSchema is deleted at the end. Needs kubectl (eval "$(hack/cluster/env.sh)").
set -euo pipefail

NS=${1:?namespace of the release}
RELEASE=${2:-myservice}
SESSIONS=${3:-5}
IDLE=${4:-60}
HERE=$(cd "$(dirname "$0")/.." && pwd)
PY=$HERE/.venv/bin/python
SCHEMA=bench-operator-$$
KUBECTL=${MYSERVICE_KUBECTL:-kubectl}
OPERATOR_SA=$("$KUBECTL" -n "$NS" get sa -l app.kubernetes.io/component=operator -o jsonpath='{.items[0].metadata.name}')
GATEWAY_SVC=$("$KUBECTL" -n "$NS" get svc -l app.kubernetes.io/component=gateway -o jsonpath='{.items[0].metadata.name}')
TTL=$(${MYSERVICE_HELM:-helm} -n "$NS" get values "$RELEASE" --all -o json | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["operator"]["finishedTtlSeconds"])')

cleanup() {
  [ -n "${PF:-}" ] && kill "$PF" 2>/dev/null || true
  "$KUBECTL" delete flowschema "$SCHEMA" --ignore-not-found >/dev/null
}
trap cleanup EXIT

"$KUBECTL" apply -f - >/dev/null <<EOF
apiVersion: flowcontrol.apiserver.k8s.io/v1
kind: FlowSchema
metadata: {name: $SCHEMA}
spec:
  matchingPrecedence: 8000   # before the built-in service-accounts schema (9000)
  priorityLevelConfiguration: {name: workload-low}
  distinguisherMethod: {type: ByUser}
  rules:
  - subjects:
    - kind: ServiceAccount
      serviceAccount: {name: $OPERATOR_SA, namespace: $NS}
    resourceRules:
    - {verbs: ["*"], apiGroups: ["*"], resources: ["*"], namespaces: ["*"], clusterScope: true}
EOF

count() {
  "$KUBECTL" get --raw /metrics | awk -v s="$SCHEMA" \
    '$1 ~ /^apiserver_flowcontrol_dispatched_requests_total\{/ && index($1, "flow_schema=\"" s "\"") {n += $2} END {print n + 0}'
}

"$KUBECTL" -n "$NS" port-forward --address 127.0.0.1 "svc/$GATEWAY_SVC" 0:10000 >/tmp/$SCHEMA.pf 2>&1 &
PF=$!
for _ in $(seq 50); do grep -q "Forwarding from" /tmp/$SCHEMA.pf && break; sleep 0.2; done
GATEWAY=$(sed -n 's/^Forwarding from \(127\.0\.0\.1:[0-9]*\) .*/\1/p' /tmp/$SCHEMA.pf | head -1)

before=$(count)
for _ in $(seq "$SESSIONS"); do "$HERE/.venv/bin/integrationtests" basic_workflow --gateway "$GATEWAY" | tail -1; done
sleep $((TTL + 10))   # the TTL deletes
lives=$(( $(count) - before ))

"$PY" "$HERE/bench/open_sessions.py" "$GATEWAY" --sessions 2
sleep 5
idle_before=$(count)
sleep "$IDLE"
idle=$(( $(count) - idle_before ))
echo "operator API requests: $lives over $SESSIONS session lives ($(( lives / SESSIONS )) per session); $idle in ${IDLE}s with 2 sessions Ready"
