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
