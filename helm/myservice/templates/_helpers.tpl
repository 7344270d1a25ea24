{{/* Chart name, overridable. */}}
{{- define "myservice.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Release-qualified name, at most 63 characters (a DNS label). */}}
{{- define "myservice.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* fullname-<component>, still at most 63 characters: the fullname is cut, never the suffix.
     Usage: include "myservice.componentName" (list . "gateway") */}}
{{- define "myservice.componentName" -}}
{{- $root := index . 0 }}
{{- $suffix := index . 1 }}
{{- $max := sub 62 (len $suffix) | int }}
{{- printf "%s-%s" (include "myservice.fullname" $root | trunc $max | trimSuffix "-") $suffix }}
{{- end }}

{{- define "myservice.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels on every object. */}}
{{- define "myservice.labels" -}}
helm.sh/chart: {{ include "myservice.chart" . }}
{{ include "myservice.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: myservice
{{- end }}

{{- define "myservice.selectorLabels" -}}
app.kubernetes.io/name: {{ include "myservice.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Labels and selector labels of one workload. Usage: include "myservice.componentLabels" (list . "gateway") */}}
{{- define "myservice.componentLabels" -}}
{{ include "myservice.labels" (index . 0) }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end }}

{{- define "myservice.componentSelectorLabels" -}}
{{ include "myservice.selectorLabels" (index . 0) }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end }}

{{- define "myservice.gatewayImage" -}}
{{- printf "%s:%s" .Values.image.gateway.repository (.Values.image.gateway.tag | toString) }}
{{- end }}

{{- define "myservice.serviceImage" -}}
{{- printf "%s:%s" .Values.image.service.repository (.Values.image.service.tag | toString) }}
{{- end }}

{{- define "myservice.usersSecretName" -}}
{{- if .Values.usersExistingSecret }}{{ .Values.usersExistingSecret }}{{ else }}{{ include "myservice.componentName" (list . "users") }}{{ end }}
{{- end }}

{{- define "myservice.jwtSecretName" -}}
{{- if .Values.jwt.existingSecret }}{{ .Values.jwt.existingSecret }}{{ else }}{{ include "myservice.componentName" (list . "jwt") }}{{ end }}
{{- end }}

{{/* Pod Security "restricted": the pod level. */}}
{{- define "myservice.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
fsGroup: 10001
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* Pod Security "restricted": the container level. */}}
{{- define "myservice.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop:
    - ALL
{{- end }}

{{/*
session.readyTimeoutSeconds, read by the operator and the gateway alike. Its names from
before they shared it, operator.readyTimeoutSeconds and gateway.sessionReadyTimeoutSeconds,
still win when a values file sets them (the operator's first: it fails the session).
*/}}
{{- define "myservice.sessionReadyTimeoutSeconds" -}}
{{- coalesce .Values.operator.readyTimeoutSeconds .Values.gateway.sessionReadyTimeoutSeconds .Values.session.readyTimeoutSeconds | int64 -}}
{{- end -}}

{{/*
The directory the gateway and front containers share (an emptyDir in memory):
MYSERVICE_FRONT_DIRECTORY of both.
*/}}
{{- define "myservice.frontDirectory" -}}
/run/myservice/front
{{- end }}

{{/*
The gateway pods' terminationGracePeriodSeconds: the drain (preStop), then HAProxy's soft
stop, which ends what is still open after 20 s (hard-stop-after, front/config.py), with room;
the gateway, told to stop 2 s after HAProxy, gives its calls in flight as long (server.py).
*/}}
{{- define "myservice.gatewayTerminationGraceSeconds" -}}
{{ add .Values.gateway.drainSeconds 25 }}
{{- end }}

{{/*
The front container's program (sh, from the gateway image). It waits for the haproxy.cfg
the gateway container writes at its start, runs HAProxy on it, and turns the SIGTERM
Kubernetes stops a container with (HAProxy's hard stop: calls cut) into SIGUSR1, HAProxy's
soft stop: listeners closed, clients told to go (HTTP/2 GOAWAY), calls in flight ended.
Its exit status is HAProxy's. tests/helm/test_front_container.py runs it.
*/}}
{{- define "myservice.frontScript" -}}
config="$MYSERVICE_FRONT_DIRECTORY/haproxy.cfg"
trap 'exit 0' TERM INT
until [ -s "$config" ]; do sleep 0.2; done
haproxy -db -f "$config" &
pid=$!
trap 'kill -USR1 $pid' TERM INT
while :; do wait $pid; status=$?; kill -0 $pid 2>/dev/null || break; done
exit $status
{{- end }}
