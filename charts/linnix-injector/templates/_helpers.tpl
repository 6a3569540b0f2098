{{/* Chart name, truncated to the 63 characters a label value allows. */}}
{{- define "linnix-injector.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name of the release's objects. The release name is used alone when it
already contains the chart name, so "linnix-injector" does not become
"linnix-injector-linnix-injector".
*/}}
{{- define "linnix-injector.fullname" -}}
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

{{- define "linnix-injector.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "linnix-injector.selectorLabels" -}}
app.kubernetes.io/name: {{ include "linnix-injector.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "linnix-injector.labels" -}}
helm.sh/chart: {{ include "linnix-injector.chart" . }}
{{ include "linnix-injector.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: admission-webhook
app.kubernetes.io/part-of: linnix
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "linnix-injector.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "linnix-injector.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
The MutatingWebhookConfiguration is cluster-scoped: the release namespace is
part of its name so the same release name in two namespaces does not collide.
*/}}
{{- define "linnix-injector.webhookConfigName" -}}
{{- printf "%s-%s" (include "linnix-injector.fullname" .) .Release.Namespace | trunc 253 | trimSuffix "-" }}
{{- end }}

{{/* Cluster-scoped RBAC objects are named like the webhook configuration. */}}
{{- define "linnix-injector.clusterRoleName" -}}
{{- include "linnix-injector.webhookConfigName" . }}
{{- end }}

{{- define "linnix-injector.serviceName" -}}
{{- include "linnix-injector.fullname" . }}
{{- end }}

{{/* DNS names the API server uses to reach the webhook Service. */}}
{{- define "linnix-injector.dnsNames" -}}
{{- $svc := include "linnix-injector.serviceName" . -}}
- {{ printf "%s.%s.svc" $svc .Release.Namespace }}
- {{ printf "%s.%s.svc.cluster.local" $svc .Release.Namespace }}
{{- end }}

{{- define "linnix-injector.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{- define "linnix-injector.sidecarImage" -}}
{{- printf "%s:%s" .Values.sidecar.image.repository (default .Chart.AppVersion .Values.sidecar.image.tag) }}
{{- end }}

{{/* Secret holding tls.crt/tls.key in the certManager and existingSecret modes. */}}
{{- define "linnix-injector.tlsSecretName" -}}
{{- if eq .Values.certificates.mode "certManager" }}
{{- printf "%s-tls" (include "linnix-injector.fullname" .) }}
{{- else if eq .Values.certificates.mode "existingSecret" }}
{{- required "certificates.existingSecret.name is required when certificates.mode is existingSecret" .Values.certificates.existingSecret.name }}
{{- end }}
{{- end }}

{{/* The injector's sidecar template, in the injector's config file format. */}}
{{- define "linnix-injector.config" -}}
{{- $s := .Values.sidecar -}}
{{- $sidecar := dict
  "name" $s.name
  "image" (include "linnix-injector.sidecarImage" .)
  "imagePullPolicy" $s.image.pullPolicy
  "args" $s.args
  "metricsPort" $s.metricsPort
  "nativeSidecar" $s.nativeSidecar
  "seccompProfile" $s.seccompProfile
  "resources" $s.resources
  "minMemoryLimit" $s.minMemoryLimit
  "prometheusAnnotations" $s.prometheusAnnotations
-}}
{{- $api := include "linnix-injector.apiServer" . | fromYaml -}}
{{- if $api.host }}
{{- $_ := set $sidecar "apiServer" $api }}
{{- end }}
{{- /* Unset (null): the injector's built-in default, every override. */}}
{{- if not (kindIs "invalid" $s.allowedOverrides) }}
{{- $_ := set $sidecar "allowedOverrides" $s.allowedOverrides }}
{{- end }}
{{- dict "sidecar" $sidecar | toYaml }}
{{- end }}

{{/*
The tracer's args exactly as the injector writes them (patch.rs):
--metrics-addr=0.0.0.0:<metricsPort> first unless sidecar.args sets
--metrics-addr, then sidecar.args. One per line: values.schema.json refuses
line breaks inside an argument, so the admission policy's split('\n') gives
back the list.
*/}}
{{- define "linnix-injector.tracerArgs" -}}
{{- $s := .Values.sidecar -}}
{{- $args := list -}}
{{- $metrics := false -}}
{{- range $s.args }}{{ if hasPrefix "--metrics-addr" . }}{{ $metrics = true }}{{ end }}{{ end -}}
{{- if not $metrics }}{{ $args = append $args (printf "--metrics-addr=0.0.0.0:%d" (int $s.metricsPort)) }}{{ end -}}
{{- concat $args $s.args | join "\n" -}}
{{- end }}

{{/* Cluster-scoped policy objects, named like the webhook configuration. */}}
{{- define "linnix-injector.podPolicyName" -}}
{{- printf "%s-pod-baseline" (include "linnix-injector.webhookConfigName" .) | trunc 253 | trimSuffix "-" }}
{{- end }}

{{- define "linnix-injector.guardPolicyName" -}}
{{- printf "%s-guard-label" (include "linnix-injector.webhookConfigName" .) | trunc 253 | trimSuffix "-" }}
{{- end }}

{{- define "linnix-injector.execPolicyName" -}}
{{- printf "%s-tracer-exec" (include "linnix-injector.webhookConfigName" .) | trunc 253 | trimSuffix "-" }}
{{- end }}

{{/*
The API server address the tracer must use, as YAML {host, port}: the
values, else the ClusterIP and https port of default/kubernetes when Helm
can look it up (install, upgrade; not template), else an empty host.
*/}}
{{- define "linnix-injector.apiServer" -}}
{{- $a := .Values.sidecar.apiServer -}}
{{- $host := $a.host | default "" -}}
{{- $port := $a.port | default 443 | int -}}
{{- if not $host -}}
{{- $svc := lookup "v1" "Service" "default" "kubernetes" -}}
{{- $ip := dig "spec" "clusterIP" "" $svc -}}
{{- if and $ip (ne $ip "None") -}}
{{- $host = $ip -}}
{{- range $p := (dig "spec" "ports" (list) $svc) }}{{ if eq (get $p "name") "https" }}{{ $port = get $p "port" | int }}{{ end }}{{ end -}}
{{- end -}}
{{- end -}}
{{- dict "host" $host "port" $port | toYaml -}}
{{- end }}
