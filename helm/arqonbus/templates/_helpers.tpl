{{/*
Names, labels and the checks every render makes. The services are edge, policy,
dispatcher and operators; each resource of a service is <fullname>-<service>.
*/}}

{{- define "arqonbus.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "arqonbus.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 50 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 50 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 50 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "arqonbus.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels of every resource. */}}
{{- define "arqonbus.labels" -}}
helm.sh/chart: {{ include "arqonbus.chart" . }}
{{ include "arqonbus.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: arqonbus
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Selects every pod of this release (NetworkPolicies, monitors). Never changes
across upgrades: Deployment selectors are immutable. */}}
{{- define "arqonbus.selectorLabels" -}}
app.kubernetes.io/name: {{ include "arqonbus.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Labels of one service's resources: dict "root" $ "component" "edge". */}}
{{- define "arqonbus.componentLabels" -}}
{{ include "arqonbus.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* Selects one service's pods. */}}
{{- define "arqonbus.componentSelectorLabels" -}}
{{ include "arqonbus.selectorLabels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "arqonbus.componentName" -}}
{{- printf "%s-%s" (include "arqonbus.fullname" .root) .component }}
{{- end }}

{{- define "arqonbus.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{- define "arqonbus.secretName" -}}
{{- default (include "arqonbus.fullname" .) .Values.existingSecret.name }}
{{- end }}

{{- define "arqonbus.policyServiceAccountName" -}}
{{- default (printf "%s-policy" (include "arqonbus.fullname" .)) .Values.policy.serviceAccount.name }}
{{- end }}

{{/* The four services, in the order they are rendered. */}}
{{- define "arqonbus.components" -}}
edge policy dispatcher operators
{{- end }}

{{/*
The checks: missing required values and contradictions stop the render with one
message that lists each value to set. Included by every template that depends on them.
*/}}
{{- define "arqonbus.validate" -}}
{{- $v := .Values }}
{{- $errors := list }}
{{- if not $v.nats.url }}
{{- $errors = append $errors "nats.url is required: the NATS server (2.11 or newer, JetStream enabled) the services connect to, e.g. --set nats.url=nats://nats:4222 (docs/kubernetes.md#nats)" }}
{{- end }}
{{- $own := $v.existingSecret.name }}
{{- if and $own (or $v.auth.jwtSecret $v.auth.publicKey $v.serviceToken) }}
{{- $errors = append $errors (printf "existingSecret.name (%s) is set, so auth.jwtSecret, auth.publicKey and serviceToken must be empty: put them in that Secret (keys existingSecret.keys.*)" $own) }}
{{- end }}
{{- if $v.auth.enabled }}
{{- if eq $v.auth.algorithm "HS256" }}
{{- if or $v.auth.publicKey $v.auth.jwksUrl }}
{{- $errors = append $errors "auth.publicKey and auth.jwksUrl are for auth.algorithm RS256 or ES256; with HS256 set auth.jwtSecret" }}
{{- else if and (not $own) (not $v.auth.jwtSecret) }}
{{- $errors = append $errors "auth.jwtSecret is required (auth.algorithm HS256): the secret client tokens are signed with, e.g. --set auth.jwtSecret=$(openssl rand -hex 32); or name a Secret of your own in existingSecret.name (key existingSecret.keys.jwtSecret); or use auth.algorithm RS256/ES256 with auth.publicKey or auth.jwksUrl" }}
{{- end }}
{{- else }}
{{- if $v.auth.jwtSecret }}
{{- $errors = append $errors (printf "auth.jwtSecret is for auth.algorithm HS256; with %s set auth.publicKey or auth.jwksUrl" $v.auth.algorithm) }}
{{- else if and $v.auth.publicKey $v.auth.jwksUrl }}
{{- $errors = append $errors "set auth.publicKey or auth.jwksUrl, not both" }}
{{- else if and (not $own) (not $v.auth.publicKey) (not $v.auth.jwksUrl) }}
{{- $errors = append $errors (printf "auth.publicKey or auth.jwksUrl is required (auth.algorithm %s): the PEM public key or the JWKS URL client tokens are checked with; or name a Secret of your own in existingSecret.name (key existingSecret.keys.jwtPublicKey)" $v.auth.algorithm) }}
{{- end }}
{{- end }}
{{- end }}
{{- if and (not $own) (not $v.serviceToken) }}
{{- $errors = append $errors "serviceToken is required: the bearer token of the gRPC APIs the dispatcher calls policy and operators with, e.g. --set serviceToken=$(openssl rand -hex 32); or name a Secret of your own in existingSecret.name (key existingSecret.keys.serviceToken)" }}
{{- end }}
{{- if and $v.metrics.serviceMonitor.enabled $v.metrics.podMonitor.enabled }}
{{- $errors = append $errors "metrics.serviceMonitor.enabled and metrics.podMonitor.enabled are both true: enable one, or every sample is scraped twice" }}
{{- end }}
{{- if and $v.edge.autoscaling.enabled (lt (int $v.edge.autoscaling.maxReplicas) (int $v.edge.autoscaling.minReplicas)) }}
{{- $errors = append $errors "edge.autoscaling.maxReplicas is below edge.autoscaling.minReplicas" }}
{{- end }}
{{- with $errors }}
{{- fail (printf "\n\nArqonBus cannot be rendered with these values (docs/kubernetes.md#install):\n  - %s\n" (join "\n  - " .)) }}
{{- end }}
{{- end }}

{{/* terminationGracePeriodSeconds of a service: its preStop sleep, the drain, a margin. */}}
{{- define "arqonbus.terminationGracePeriod" -}}
{{- $svc := index .root.Values .component }}
{{- add (int $svc.preStopSleepSeconds) (int .root.Values.shutdown.graceSeconds) (int .root.Values.shutdown.marginSeconds) }}
{{- end }}
