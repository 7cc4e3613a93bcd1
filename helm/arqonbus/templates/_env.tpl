{{/*
The environment of one service's container: dict "root" $ "component" "edge".
Every setting is an ARQONBUS_* variable of docs/operations.md; secrets come from the
chart's Secret or existingSecret (secretKeyRef, never a plain value), files (the NATS
.creds file, TLS CA, certificate and key) from the read-only mount of arqonbus.natsFileSources.
*/}}
{{- define "arqonbus.env" -}}
{{- $root := .root }}
{{- $v := $root.Values }}
{{- $c := .component }}
{{- $secret := include "arqonbus.secretName" $root }}
{{- $fullname := include "arqonbus.fullname" $root }}
- name: ARQONBUS_NATS_URL
  value: {{ $v.nats.url | quote }}
- name: ARQONBUS_JETSTREAM_REPLICAS
  value: {{ $v.nats.jetstreamReplicas | int64 | quote }}
{{- /* NATS credentials: secrets through secretKeyRef, files from the read-only mount. */}}
{{- $nauth := $v.nats.auth }}
{{- $files := include "arqonbus.natsFilesDir" $root }}
{{- if eq $nauth.method "userPassword" }}
- name: ARQONBUS_NATS_USER
  value: {{ $nauth.user | quote }}
- name: ARQONBUS_NATS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ $v.existingSecret.keys.natsPassword }}
{{- else if eq $nauth.method "token" }}
- name: ARQONBUS_NATS_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ $v.existingSecret.keys.natsToken }}
{{- else if eq $nauth.method "nkey" }}
- name: ARQONBUS_NATS_NKEY_SEED
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ $v.existingSecret.keys.natsNkeySeed }}
{{- else if eq $nauth.method "creds" }}
- name: ARQONBUS_NATS_CREDS_FILE
  value: {{ printf "%s/nats.creds" $files | quote }}
{{- end }}
{{- $tls := $v.nats.tls }}
{{- if $tls.enabled }}
{{- if and $tls.secretName $tls.keys.ca }}
- name: ARQONBUS_NATS_TLS_CA_FILE
  value: {{ printf "%s/ca.crt" $files | quote }}
{{- end }}
{{- if $tls.clientCertificate }}
- name: ARQONBUS_NATS_TLS_CERT_FILE
  value: {{ printf "%s/tls.crt" $files | quote }}
- name: ARQONBUS_NATS_TLS_KEY_FILE
  value: {{ printf "%s/tls.key" $files | quote }}
{{- end }}
- name: ARQONBUS_NATS_TLS_REQUIRED
  value: {{ $tls.required | quote }}
{{- end }}
- name: ARQONBUS_HTTP_HOST
  value: "0.0.0.0"
- name: ARQONBUS_HTTP_PORT
  value: {{ $v.ports.http | int64 | quote }}
- name: ARQONBUS_LOG_FORMAT
  value: json
- name: ARQONBUS_LOG_LEVEL
  value: {{ $v.logLevel | quote }}
- name: ARQONBUS_SHUTDOWN_GRACE_SECONDS
  value: {{ $v.shutdown.graceSeconds | int64 | quote }}
{{- if eq $c "edge" }}
- name: ARQONBUS_SERVER_HOST
  value: "0.0.0.0"
- name: ARQONBUS_SERVER_PORT
  value: {{ $v.ports.websocket | int64 | quote }}
- name: ARQONBUS_ENABLE_AUTH
  value: {{ $v.auth.enabled | quote }}
{{- if $v.auth.enabled }}
- name: ARQONBUS_AUTH_JWT_ALGORITHM
  value: {{ $v.auth.algorithm | quote }}
{{- if eq $v.auth.algorithm "HS256" }}
- name: ARQONBUS_AUTH_JWT_SECRET
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ $v.existingSecret.keys.jwtSecret }}
{{- else if $v.auth.jwksUrl }}
- name: ARQONBUS_AUTH_JWKS_URL
  value: {{ $v.auth.jwksUrl | quote }}
- name: ARQONBUS_AUTH_JWKS_REFRESH_SECONDS
  value: {{ $v.auth.jwksRefreshSeconds | int64 | quote }}
{{- else }}
- name: ARQONBUS_AUTH_JWT_PUBLIC_KEY
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ $v.existingSecret.keys.jwtPublicKey }}
{{- end }}
{{- with $v.auth.audience }}
- name: ARQONBUS_AUTH_AUDIENCE
  value: {{ . | quote }}
{{- end }}
{{- with $v.auth.issuer }}
- name: ARQONBUS_AUTH_ISSUER
  value: {{ . | quote }}
{{- end }}
- name: ARQONBUS_AUTH_LEEWAY_SECONDS
  value: {{ $v.auth.leewaySeconds | int64 | quote }}
- name: ARQONBUS_AUTH_TENANT_CLAIM
  value: {{ $v.auth.tenantClaim | quote }}
{{- with $v.auth.defaultTenant }}
- name: ARQONBUS_AUTH_DEFAULT_TENANT
  value: {{ . | quote }}
{{- end }}
- name: ARQONBUS_AUTH_SYSTEM_SCOPE
  value: {{ $v.auth.systemScope | quote }}
{{- end }}
- name: ARQONBUS_MAX_CONNECTIONS
  value: {{ $v.edge.maxConnections | int64 | quote }}
- name: ARQONBUS_PRESENCE_EVENTS
  value: {{ $v.edge.presenceEvents | quote }}
- name: ARQONBUS_POLICY_BYPASS
  value: {{ $v.edge.policyBypass | quote }}
- name: ARQONBUS_PRESENCE_MAX_MEMBERS
  value: {{ $v.edge.presenceMaxMembers | int64 | quote }}
- name: ARQONBUS_PRESENCE_MAX_REPLY_BYTES
  value: {{ $v.edge.presenceMaxReplyBytes | int64 | quote }}
- name: ARQONBUS_MAX_CONNECTIONS_PER_TENANT
  value: {{ $v.edge.maxConnectionsPerTenant | int64 | quote }}
- name: ARQONBUS_MAX_FLEET_CONNECTIONS_PER_TENANT
  value: {{ $v.edge.maxFleetConnectionsPerTenant | int64 | quote }}
- name: ARQONBUS_MAX_CHANNELS_PER_CONNECTION
  value: {{ $v.edge.maxChannelsPerConnection | int64 | quote }}
- name: ARQONBUS_MAX_JSON_DEPTH
  value: {{ $v.edge.maxJsonDepth | int64 | quote }}
- name: ARQONBUS_RATE_LIMIT_PER_SECOND
  value: {{ $v.edge.rateLimit.perSecond | int64 | quote }}
- name: ARQONBUS_RATE_LIMIT_BURST
  value: {{ $v.edge.rateLimit.burst | int64 | quote }}
- name: ARQONBUS_RATE_LIMIT_STRIKES
  value: {{ $v.edge.rateLimit.strikes | int64 | quote }}
- name: ARQONBUS_RATE_LIMIT_BYTES_PER_SECOND
  value: {{ $v.edge.rateLimit.bytesPerSecond | int64 | quote }}
- name: ARQONBUS_RATE_LIMIT_TENANT_BYTES_PER_SECOND
  value: {{ $v.edge.rateLimit.tenantBytesPerSecond | int64 | quote }}
- name: ARQONBUS_CONSOLE
  value: {{ $v.edge.console.enabled | quote }}
- name: ARQONBUS_CONSOLE_OPERATOR_LOGIN
  value: {{ $v.edge.console.operatorLogin | quote }}
- name: ARQONBUS_CONSOLE_OPERATOR_SESSION_SECONDS
  value: {{ $v.edge.console.operatorSessionSeconds | int64 | quote }}
- name: ARQONBUS_CONSOLE_MAX_FEEDS
  value: {{ $v.edge.console.maxFeeds | int64 | quote }}
- name: ARQONBUS_CONSOLE_FEED_EVENTS_PER_SECOND
  value: {{ $v.edge.console.feedEventsPerSecond | int64 | quote }}
{{- if $v.edge.console.operatorLogin }}
{{- /* The console's operator login compares with the service token. */}}
- name: ARQONBUS_SERVICE_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ $v.existingSecret.keys.serviceToken }}
{{- end }}
{{- else }}
{{- /* policy, dispatcher, operators: the gRPC APIs, bound only with a service token. */}}
- name: ARQONBUS_GRPC_HOST
  value: "0.0.0.0"
- name: ARQONBUS_GRPC_PORT
  value: {{ $v.ports.grpc | int64 | quote }}
- name: ARQONBUS_SERVICE_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ $v.existingSecret.keys.serviceToken }}
{{- end }}
{{- if eq $c "policy" }}
- name: ARQONBUS_POLICY_WORKERS
  value: {{ $v.policy.workers | int64 | quote }}
- name: ARQONBUS_CASIL_ENABLED
  value: {{ $v.policy.casil.enabled | quote }}
- name: ARQONBUS_CASIL_MODE
  value: {{ $v.policy.casil.mode | quote }}
{{- if $v.policy.kubernetesSource.enabled }}
- name: ARQONBUS_POLICY_SOURCE
  value: kubernetes
- name: ARQONBUS_POLICY_NAMESPACE
  valueFrom:
    fieldRef:
      fieldPath: metadata.namespace
- name: ARQONBUS_POLICY_RESOURCE
  value: {{ $v.casilPolicy.name | quote }}
{{- end }}
{{- end }}
{{- if eq $c "operators" }}
- name: ARQONBUS_POLICY_URL
  value: {{ printf "http://%s-policy.%s.svc:%d" $fullname $root.Release.Namespace (int $v.ports.grpc) | quote }}
- name: ARQONBUS_WEBHOOK_MAX_QUEUED_PER_TENANT
  value: {{ $v.operators.webhook.maxQueuedPerTenant | int64 | quote }}
- name: ARQONBUS_WEBHOOK_MAX_QUEUED_BYTES_PER_TENANT
  value: {{ $v.operators.webhook.maxQueuedBytesPerTenant | int64 | quote }}
{{- end }}
{{- if eq $c "dispatcher" }}
- name: ARQONBUS_DISPATCHER_WORKERS
  value: {{ $v.dispatcher.workers | int64 | quote }}
- name: ARQONBUS_DISPATCHER_MAX_IN_FLIGHT_MESSAGES
  value: {{ $v.dispatcher.maxInFlightMessages | int64 | quote }}
- name: ARQONBUS_DISPATCHER_MAX_IN_FLIGHT_COMMANDS
  value: {{ $v.dispatcher.maxInFlightCommands | int64 | quote }}
- name: ARQONBUS_DISPATCHER_MAX_COMMANDS_PER_TENANT
  value: {{ $v.dispatcher.maxCommandsPerTenant | int64 | quote }}
- name: ARQONBUS_DISPATCHER_MAX_QUEUED_COMMANDS_PER_TENANT
  value: {{ $v.dispatcher.maxQueuedCommandsPerTenant | int64 | quote }}
- name: ARQONBUS_MAX_CHANNELS_PER_TENANT
  value: {{ $v.dispatcher.channels.maxPerTenant | int64 | quote }}
- name: ARQONBUS_EMPTY_CHANNEL_TTL_SECONDS
  value: {{ $v.dispatcher.channels.emptyTtlSeconds | int64 | quote }}
- name: ARQONBUS_CHANNEL_INFO_MAX_MEMBERS
  value: {{ $v.dispatcher.channels.infoMaxMembers | int64 | quote }}
- name: ARQONBUS_STATUS_MAX_TENANTS
  value: {{ $v.dispatcher.statusMaxTenants | int64 | quote }}
- name: ARQONBUS_POLICY_URL
  value: {{ printf "http://%s-policy.%s.svc:%d" $fullname $root.Release.Namespace (int $v.ports.grpc) | quote }}
- name: ARQONBUS_OPERATORS_URL
  value: {{ printf "http://%s-operators.%s.svc:%d" $fullname $root.Release.Namespace (int $v.ports.grpc) | quote }}
- name: ARQONBUS_ENABLE_PERSISTENCE
  value: {{ $v.dispatcher.history.enabled | quote }}
- name: ARQONBUS_MAX_HISTORY_SIZE
  value: {{ $v.dispatcher.history.maxSize | int64 | quote }}
- name: ARQONBUS_HISTORY_MAX_AGE_SECONDS
  value: {{ $v.dispatcher.history.maxAgeSeconds | int64 | quote }}
- name: ARQONBUS_HISTORY_MAX_BYTES
  value: {{ $v.dispatcher.history.maxBytes | int64 | quote }}
- name: ARQONBUS_HISTORY_MAX_BYTES_PER_TENANT
  value: {{ $v.dispatcher.history.maxBytesPerTenant | int64 | quote }}
- name: ARQONBUS_HISTORY_MAX_BYTES_PER_CHANNEL
  value: {{ $v.dispatcher.history.maxBytesPerChannel | int64 | quote }}
{{- end }}
{{- with $v.otel.endpoint }}
- name: OTEL_EXPORTER_OTLP_ENDPOINT
  value: {{ . | quote }}
- name: OTEL_EXPORTER_OTLP_PROTOCOL
  value: {{ $v.otel.protocol | quote }}
- name: OTEL_TRACES_SAMPLER
  value: parentbased_traceidratio
- name: OTEL_TRACES_SAMPLER_ARG
  value: {{ $v.otel.samplerRatio | quote }}
- name: OTEL_SERVICE_NAME
  value: {{ printf "arqonbus-%s" $c | quote }}
{{- with $v.otel.resourceAttributes }}
- name: OTEL_RESOURCE_ATTRIBUTES
  value: {{ . | quote }}
{{- end }}
{{- end }}
{{- with (index $v $c).extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}
