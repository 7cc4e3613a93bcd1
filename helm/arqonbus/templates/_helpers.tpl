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
{{- if contains "@" $v.nats.url }}
{{- $errors = append $errors "nats.url carries credentials (user:password@ or token@), which the services do not use: remove them and set nats.auth (method userPassword or token)" }}
{{- end }}
{{- $own := $v.existingSecret.name }}
{{- $nauth := $v.nats.auth }}
{{- if and $own (or $v.auth.jwtSecret $v.auth.publicKey $v.serviceToken $nauth.password $nauth.token $nauth.nkeySeed) }}
{{- $errors = append $errors (printf "existingSecret.name (%s) is set, so auth.jwtSecret, auth.publicKey, serviceToken, nats.auth.password, nats.auth.token and nats.auth.nkeySeed must be empty: put them in that Secret (keys existingSecret.keys.*)" $own) }}
{{- end }}
{{- if eq $nauth.method "userPassword" }}
{{- if not $nauth.user }}
{{- $errors = append $errors "nats.auth.user is required (nats.auth.method userPassword): the NATS user the services connect as" }}
{{- end }}
{{- if and (not $own) (not $nauth.password) }}
{{- $errors = append $errors (printf "nats.auth.password is required (nats.auth.method userPassword); or name a Secret of your own in existingSecret.name (key existingSecret.keys.natsPassword, here %s)" $v.existingSecret.keys.natsPassword) }}
{{- end }}
{{- else if eq $nauth.method "token" }}
{{- if and (not $own) (not $nauth.token) }}
{{- $errors = append $errors (printf "nats.auth.token is required (nats.auth.method token); or name a Secret of your own in existingSecret.name (key existingSecret.keys.natsToken, here %s)" $v.existingSecret.keys.natsToken) }}
{{- end }}
{{- else if eq $nauth.method "nkey" }}
{{- if and (not $own) (not $nauth.nkeySeed) }}
{{- $errors = append $errors (printf "nats.auth.nkeySeed is required (nats.auth.method nkey): an NKey user seed (SU…); or name a Secret of your own in existingSecret.name (key existingSecret.keys.natsNkeySeed, here %s)" $v.existingSecret.keys.natsNkeySeed) }}
{{- end }}
{{- else if eq $nauth.method "creds" }}
{{- if not $nauth.credsSecret.name }}
{{- $errors = append $errors (printf "nats.auth.credsSecret.name is required (nats.auth.method creds): the Secret holding the .creds file under key nats.auth.credsSecret.key (%s), e.g. kubectl create secret generic arqonbus-nats-creds --from-file=%s=arqonbus.creds" $nauth.credsSecret.key $nauth.credsSecret.key) }}
{{- end }}
{{- end }}
{{- $tls := $v.nats.tls }}
{{- if $tls.enabled }}
{{- if and $tls.clientCertificate (not $tls.secretName) }}
{{- $errors = append $errors "nats.tls.clientCertificate needs nats.tls.secretName: the Secret holding the services' certificate and key (keys nats.tls.keys.cert and nats.tls.keys.key)" }}
{{- else if and $tls.secretName (not $tls.keys.ca) (not $tls.clientCertificate) }}
{{- $errors = append $errors (printf "nats.tls.secretName (%s) is set but nothing is read from it: set nats.tls.keys.ca (the CA file) or nats.tls.clientCertificate" $tls.secretName) }}
{{- end }}
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
{{- if ge (int64 $v.dispatcher.maxCommandsPerTenant) (int64 $v.dispatcher.maxInFlightCommands) }}
{{- $errors = append $errors (printf "dispatcher.maxCommandsPerTenant (%d) must be below dispatcher.maxInFlightCommands (%d): one tenant could take every command slot (the dispatcher refuses to start)" (int64 $v.dispatcher.maxCommandsPerTenant) (int64 $v.dispatcher.maxInFlightCommands)) }}
{{- end }}
{{- /* Settings that once had no value, so were set through extraEnv: the chart sets them
now, and the same name twice in a container's env is ambiguous. */}}
{{- $fromValues := dict
  "edge" (dict
    "ARQONBUS_MAX_CONNECTIONS_PER_TENANT" "edge.maxConnectionsPerTenant"
    "ARQONBUS_MAX_FLEET_CONNECTIONS_PER_TENANT" "edge.maxFleetConnectionsPerTenant"
    "ARQONBUS_MAX_CHANNELS_PER_CONNECTION" "edge.maxChannelsPerConnection"
    "ARQONBUS_MAX_JSON_DEPTH" "edge.maxJsonDepth"
    "ARQONBUS_RATE_LIMIT_PER_SECOND" "edge.rateLimit.perSecond"
    "ARQONBUS_RATE_LIMIT_BURST" "edge.rateLimit.burst"
    "ARQONBUS_RATE_LIMIT_STRIKES" "edge.rateLimit.strikes"
    "ARQONBUS_RATE_LIMIT_BYTES_PER_SECOND" "edge.rateLimit.bytesPerSecond"
    "ARQONBUS_RATE_LIMIT_TENANT_BYTES_PER_SECOND" "edge.rateLimit.tenantBytesPerSecond"
    "ARQONBUS_PRESENCE_MAX_MEMBERS" "edge.presenceMaxMembers"
    "ARQONBUS_PRESENCE_MAX_REPLY_BYTES" "edge.presenceMaxReplyBytes"
    "ARQONBUS_POLICY_BYPASS" "edge.policyBypass"
    "ARQONBUS_CONSOLE" "edge.console.enabled"
    "ARQONBUS_CONSOLE_OPERATOR_LOGIN" "edge.console.operatorLogin"
    "ARQONBUS_CONSOLE_OPERATOR_SESSION_SECONDS" "edge.console.operatorSessionSeconds"
    "ARQONBUS_CONSOLE_MAX_FEEDS" "edge.console.maxFeeds"
    "ARQONBUS_CONSOLE_FEED_EVENTS_PER_SECOND" "edge.console.feedEventsPerSecond")
  "dispatcher" (dict
    "ARQONBUS_DISPATCHER_MAX_IN_FLIGHT_MESSAGES" "dispatcher.maxInFlightMessages"
    "ARQONBUS_DISPATCHER_MAX_IN_FLIGHT_COMMANDS" "dispatcher.maxInFlightCommands"
    "ARQONBUS_DISPATCHER_MAX_COMMANDS_PER_TENANT" "dispatcher.maxCommandsPerTenant"
    "ARQONBUS_DISPATCHER_MAX_QUEUED_COMMANDS_PER_TENANT" "dispatcher.maxQueuedCommandsPerTenant"
    "ARQONBUS_MAX_CHANNELS_PER_TENANT" "dispatcher.channels.maxPerTenant"
    "ARQONBUS_EMPTY_CHANNEL_TTL_SECONDS" "dispatcher.channels.emptyTtlSeconds"
    "ARQONBUS_CHANNEL_INFO_MAX_MEMBERS" "dispatcher.channels.infoMaxMembers"
    "ARQONBUS_STATUS_MAX_TENANTS" "dispatcher.statusMaxTenants"
    "ARQONBUS_HISTORY_MAX_BYTES_PER_TENANT" "dispatcher.history.maxBytesPerTenant"
    "ARQONBUS_HISTORY_MAX_BYTES_PER_CHANNEL" "dispatcher.history.maxBytesPerChannel")
  "operators" (dict
    "ARQONBUS_WEBHOOK_MAX_QUEUED_PER_TENANT" "operators.webhook.maxQueuedPerTenant"
    "ARQONBUS_WEBHOOK_MAX_QUEUED_BYTES_PER_TENANT" "operators.webhook.maxQueuedBytesPerTenant") }}
{{- range $c := list "edge" "dispatcher" "operators" }}
{{- $names := get $fromValues $c }}
{{- range $entry := (index $v $c).extraEnv }}
{{- with get $names (toString $entry.name) }}
{{- $errors = append $errors (printf "%s.extraEnv sets %s, which the chart sets from %s: set that value instead" $c $entry.name .) }}
{{- end }}
{{- end }}
{{- end }}
{{- with $errors }}
{{- fail (printf "\n\nArqonBus cannot be rendered with these values (docs/kubernetes.md#install):\n  - %s\n" (join "\n  - " .)) }}
{{- end }}
{{- end }}

{{/*
The files the services read for NATS (the .creds file, the TLS CA, certificate and key),
from their Secrets, all in one read-only directory. The paths are fixed; the env
variables (arqonbus.env) name them.
*/}}
{{- define "arqonbus.natsFilesDir" -}}
/etc/arqonbus/nats
{{- end }}

{{/* The projected volume's sources, or nothing when no file is needed. */}}
{{- define "arqonbus.natsFileSources" -}}
{{- $v := .Values }}
{{- if eq $v.nats.auth.method "creds" }}
- secret:
    name: {{ $v.nats.auth.credsSecret.name }}
    items:
      - key: {{ $v.nats.auth.credsSecret.key }}
        path: nats.creds
{{- end }}
{{- $tls := $v.nats.tls }}
{{- if and $tls.enabled $tls.secretName (or $tls.keys.ca $tls.clientCertificate) }}
- secret:
    name: {{ $tls.secretName }}
    items:
      {{- if $tls.keys.ca }}
      - key: {{ $tls.keys.ca }}
        path: ca.crt
      {{- end }}
      {{- if $tls.clientCertificate }}
      - key: {{ $tls.keys.cert }}
        path: tls.crt
      - key: {{ $tls.keys.key }}
        path: tls.key
      {{- end }}
{{- end }}
{{- end }}

{{/* terminationGracePeriodSeconds of a service: its preStop sleep, the drain, a margin. */}}
{{- define "arqonbus.terminationGracePeriod" -}}
{{- $svc := index .root.Values .component }}
{{- add (int $svc.preStopSleepSeconds) (int .root.Values.shutdown.graceSeconds) (int .root.Values.shutdown.marginSeconds) }}
{{- end }}
