{{/*
Names, labels and the pieces the Deployment, the SQLite init container and the migration Job
share (configuration, secret references, volumes), so the three can never disagree.
*/}}

{{/* Chart name, or nameOverride. */}}
{{- define "paygate.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* "<release>-<name>", or fullnameOverride; at most 63 characters (a DNS label). */}}
{{- define "paygate.fullname" -}}
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

{{/* fullname shortened to leave room for a suffix such as "-migrate" or "-data". */}}
{{- define "paygate.shortname" -}}
{{- include "paygate.fullname" . | trunc 52 | trimSuffix "-" }}
{{- end }}

{{/* Chart label value. */}}
{{- define "paygate.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels on every resource. */}}
{{- define "paygate.labels" -}}
helm.sh/chart: {{ include "paygate.chart" . }}
app.kubernetes.io/name: {{ include "paygate.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: paygate
{{- end }}

{{/*
Selector of the serving pods. The component label keeps the migration Job's pod (same name
and instance) out of the Service, the PDB and the spread constraints.
*/}}
{{- define "paygate.selectorLabels" -}}
app.kubernetes.io/name: {{ include "paygate.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: server
{{- end }}

{{/* ServiceAccount of the serving pods. */}}
{{- define "paygate.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "paygate.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* repository:tag, or repository@digest when a digest is pinned. */}}
{{- define "paygate.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag | toString) }}
{{- end }}
{{- end }}

{{/* Fixed replica count: replicaCount, or 1 with SQLite / 2 with PostgreSQL when null. */}}
{{- define "paygate.replicas" -}}
{{- if kindIs "invalid" .Values.replicaCount }}
{{- ternary 1 2 (eq .Values.database.type "sqlite") }}
{{- else }}
{{- int .Values.replicaCount }}
{{- end }}
{{- end }}

{{/* Most pods that can run at once (the HPA's maxReplicas when autoscaling). */}}
{{- define "paygate.maxReplicas" -}}
{{- if .Values.autoscaling.enabled }}
{{- int .Values.autoscaling.maxReplicas }}
{{- else }}
{{- include "paygate.replicas" . }}
{{- end }}
{{- end }}

{{/*
VIPPS_MSN as a string. A number in a values file arrives as a float (1234567 would print as
1.234567e+06), so numbers are converted through int64.
*/}}
{{- define "paygate.msn" -}}
{{- if kindIs "string" .Values.vipps.msn }}
{{- .Values.vipps.msn }}
{{- else if not (kindIs "invalid" .Values.vipps.msn) }}
{{- int64 .Values.vipps.msn }}
{{- end }}
{{- end }}

{{/* Name of the Secret the pods read: existingSecret, or the chart's. */}}
{{- define "paygate.secretName" -}}
{{- default (include "paygate.fullname" .) .Values.existingSecret }}
{{- end }}

{{/*
Name of the Secret the pre-install/pre-upgrade migration Job reads. The chart's own Secret
does not exist yet when a pre-install hook runs, so the chart makes a hook Secret with the
same data; an existingSecret is there already and is used as is.
*/}}
{{- define "paygate.migrationSecretName" -}}
{{- default (printf "%s-migrate" (include "paygate.shortname" .)) .Values.existingSecret }}
{{- end }}

{{/* Name of the SQLite PVC. */}}
{{- define "paygate.pvcName" -}}
{{- default (printf "%s-data" (include "paygate.shortname" .)) .Values.database.sqlite.persistence.existingClaim }}
{{- end }}

{{/* "true" when API tokens are wired to the pods (from values or from existingSecret). */}}
{{- define "paygate.hasApiTokens" -}}
{{- if or .Values.existingSecret .Values.auth.apiTokens .Values.auth.callers }}true{{ end }}
{{- end }}

{{/*
"true" when some auth.callers entry takes its token from an existingSecret key: then
PAYGATE_API_TOKENS is composed by Kubernetes from dependent variables (paygate.secretEnv).
*/}}
{{- define "paygate.tokensKeyed" -}}
{{- range .Values.auth.callers }}{{ if .existingSecretKey }}true{{ end }}{{ end }}
{{- end }}

{{/* "+"-joined scopes of one caller: "payments+pii". */}}
{{- define "paygate.scopes" -}}
{{- join "+" . }}
{{- end }}

{{/*
PAYGATE_API_TOKENS of the chart's Secret: auth.apiTokens entries, then one
"name:TOKEN:scope+scope" entry per auth.callers entry with a literal token.
*/}}
{{- define "paygate.apiTokensStatic" -}}
{{- $entries := list }}
{{- with .Values.auth.apiTokens }}
{{- $entries = append $entries (trimSuffix "," (trim .)) }}
{{- end }}
{{- range .Values.auth.callers }}
{{- if .token }}
{{- $entries = append $entries (printf "%s:%s:%s" .name .token (include "paygate.scopes" .scopes)) }}
{{- end }}
{{- end }}
{{- join "," $entries }}
{{- end }}

{{/* PAYGATE_TLS_CLIENT_SCOPES: "name:scope+scope,name2:scope" from tls.clientScopes. */}}
{{- define "paygate.tlsClientScopes" -}}
{{- $entries := list }}
{{- range .Values.tls.clientScopes }}
{{- $entries = append $entries (printf "%s:%s" .name (include "paygate.scopes" .scopes)) }}
{{- end }}
{{- join "," $entries }}
{{- end }}

{{/* Whether the PAYGATE_API_TOKENS secret key may be absent (auth has another way in). */}}
{{- define "paygate.tokensOptional" -}}
{{- if or .Values.auth.allowUnauthenticated .Values.tls.clientAuth }}true{{ else }}false{{ end }}
{{- end }}

{{/* PromQL label matchers selecting this release's series (metrics.prometheusRule). */}}
{{- define "paygate.metricSelector" -}}
{{- default (printf "namespace=%q,job=%q" .Release.Namespace (include "paygate.fullname" .)) .Values.metrics.prometheusRule.metricSelector }}
{{- end }}

{{/* The readiness probe's kind: "grpc" or "http" (probes.readiness.type, "auto" resolved). */}}
{{- define "paygate.readinessType" -}}
{{- if eq .Values.probes.readiness.type "auto" }}
{{- ternary "http" "grpc" .Values.tls.enabled }}
{{- else }}
{{- .Values.probes.readiness.type }}
{{- end }}
{{- end }}

{{/* PAYGATE_WEBHOOK_PUBLIC_URL: webhook.publicUrl, else derived from the first Ingress host. */}}
{{- define "paygate.webhookPublicUrl" -}}
{{- if .Values.webhook.publicUrl }}
{{- .Values.webhook.publicUrl }}
{{- else if and .Values.ingress.enabled .Values.ingress.hosts }}
{{- printf "https://%s/webhooks/vipps" (first .Values.ingress.hosts) }}
{{- end }}
{{- end }}

{{/*
Non-secret configuration as KEY: "value" lines: the ConfigMap's data, and the migration Job's
env (the Job runs before the ConfigMap exists).
*/}}
{{- define "paygate.configData" -}}
PAYGATE_GRPC_ADDR: {{ printf "0.0.0.0:%d" (int .Values.ports.grpc) | quote }}
PAYGATE_HTTP_ADDR: {{ printf "0.0.0.0:%d" (int .Values.ports.http) | quote }}
{{- if eq .Values.database.type "sqlite" }}
DATABASE_URL: {{ printf "sqlite:///data/%s?mode=rwc" .Values.database.sqlite.file | quote }}
{{- end }}
{{- if .Values.vipps.baseUrl }}
VIPPS_BASE_URL: {{ .Values.vipps.baseUrl | quote }}
VIPPS_CLIENT_ID: {{ .Values.vipps.clientId | quote }}
VIPPS_MSN: {{ include "paygate.msn" . | quote }}
{{- end }}
VIPPS_TIMEOUT_MS: {{ int .Values.vipps.timeoutMs | quote }}
VIPPS_RETRY_BUDGET_MS: {{ int .Values.vipps.retryBudgetMs | quote }}
{{- with include "paygate.webhookPublicUrl" . }}
PAYGATE_WEBHOOK_PUBLIC_URL: {{ . | quote }}
{{- end }}
{{- if not (kindIs "invalid" .Values.webhook.maxSkewSeconds) }}
PAYGATE_WEBHOOK_MAX_SKEW_SECS: {{ int .Values.webhook.maxSkewSeconds | quote }}
{{- end }}
{{- if and (include "paygate.hasApiTokens" .) .Values.auth.tokensAsFile }}
PAYGATE_API_TOKENS_FILE: "/etc/paygate/api-tokens/tokens"
{{- end }}
{{- if .Values.tls.enabled }}
PAYGATE_TLS_CERT: "/etc/paygate/tls/tls.crt"
PAYGATE_TLS_KEY: "/etc/paygate/tls/tls.key"
{{- if .Values.tls.clientAuth }}
PAYGATE_TLS_CLIENT_CA: "/etc/paygate/tls-client-ca/ca.crt"
{{- with include "paygate.tlsClientScopes" . }}
PAYGATE_TLS_CLIENT_SCOPES: {{ . | quote }}
{{- end }}
{{- end }}
{{- end }}
PAYGATE_ALLOW_UNAUTHENTICATED: {{ .Values.auth.allowUnauthenticated | quote }}
PAYGATE_LOG_FORMAT: {{ .Values.config.logFormat | quote }}
RUST_LOG: {{ .Values.config.rustLog | quote }}
{{- if .Values.config.otlpEndpoint }}
OTEL_EXPORTER_OTLP_ENDPOINT: {{ .Values.config.otlpEndpoint | quote }}
{{- end }}
PAYGATE_SHUTDOWN_GRACE_MS: {{ int .Values.config.shutdownGraceMs | quote }}
{{- if not (kindIs "invalid" .Values.config.heartbeatMs) }}
PAYGATE_HEARTBEAT_MS: {{ int .Values.config.heartbeatMs | quote }}
{{- end }}
PAYGATE_MAX_SUBSCRIBERS: {{ int .Values.config.maxSubscribers | quote }}
PAYGATE_GRPC_KEEPALIVE_MS: {{ int .Values.config.grpcKeepaliveMs | quote }}
PAYGATE_HTTP_HEADER_TIMEOUT_MS: {{ int .Values.config.httpHeaderTimeoutMs | quote }}
PAYGATE_HTTP_MAX_CONNECTIONS: {{ int .Values.config.httpMaxConnections | quote }}
PAYGATE_WEBHOOK_TIMEOUT_MS: {{ int .Values.webhook.timeoutMs | quote }}
PAYGATE_DB_STATEMENT_TIMEOUT_MS: {{ int .Values.database.statementTimeoutMs | quote }}
PAYGATE_WRITER_STALL_MS: {{ int .Values.config.writerStallMs | quote }}
PAYGATE_RETENTION: {{ .Values.config.retention | quote }}
PAYGATE_UNKNOWN_EVENT_RETENTION: {{ .Values.config.unknownEventRetention | quote }}
{{- end }}

{{/* Secret data (base64) for the chart-made Secrets: only the keys that apply. */}}
{{- define "paygate.secretData" -}}
{{- if eq .Values.database.type "postgres" }}
DATABASE_URL: {{ .Values.database.postgres.url | b64enc | quote }}
{{- end }}
{{- if .Values.vipps.baseUrl }}
VIPPS_CLIENT_SECRET: {{ .Values.vipps.clientSecret | b64enc | quote }}
VIPPS_SUBSCRIPTION_KEY: {{ .Values.vipps.subscriptionKey | b64enc | quote }}
{{- end }}
{{- if .Values.webhook.secret }}
VIPPS_WEBHOOK_SECRET: {{ .Values.webhook.secret | b64enc | quote }}
{{- end }}
{{- with include "paygate.apiTokensStatic" . }}
PAYGATE_API_TOKENS: {{ . | b64enc | quote }}
{{- end }}
{{- end }}

{{/*
env entries read from the Secret. dict: root (the top context), secretName.
Required keys are not optional, so a missing key in an existingSecret stops the pod with an
error naming it instead of starting a misconfigured gateway.
*/}}
{{- define "paygate.secretEnv" -}}
{{- $root := .root }}
{{- $secretName := .secretName }}
{{- if eq $root.Values.database.type "postgres" }}
- name: DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ $secretName }}
      key: DATABASE_URL
{{- end }}
{{- if $root.Values.vipps.baseUrl }}
- name: VIPPS_CLIENT_SECRET
  valueFrom:
    secretKeyRef:
      name: {{ $secretName }}
      key: VIPPS_CLIENT_SECRET
- name: VIPPS_SUBSCRIPTION_KEY
  valueFrom:
    secretKeyRef:
      name: {{ $secretName }}
      key: VIPPS_SUBSCRIPTION_KEY
{{- end }}
{{- if or $root.Values.existingSecret $root.Values.webhook.secret }}
- name: VIPPS_WEBHOOK_SECRET
  valueFrom:
    secretKeyRef:
      name: {{ $secretName }}
      key: VIPPS_WEBHOOK_SECRET
      optional: true
{{- end }}
{{- if and (include "paygate.hasApiTokens" $root) (not $root.Values.auth.tokensAsFile) }}
{{- if include "paygate.tokensKeyed" $root }}
{{- /* One variable per caller from its existingSecret key, then the list that refers to them. */}}
{{- $entries := list }}
{{- range $i, $caller := $root.Values.auth.callers }}
- name: CALLER_TOKEN_{{ $i }}
  valueFrom:
    secretKeyRef:
      name: {{ $root.Values.existingSecret }}
      key: {{ $caller.existingSecretKey }}
{{- $entries = append $entries (printf "%s:$(CALLER_TOKEN_%d):%s" $caller.name $i (include "paygate.scopes" $caller.scopes)) }}
{{- end }}
- name: PAYGATE_API_TOKENS
  value: {{ join "," $entries | quote }}
{{- else }}
- name: PAYGATE_API_TOKENS
  valueFrom:
    secretKeyRef:
      name: {{ $secretName }}
      key: PAYGATE_API_TOKENS
      optional: {{ include "paygate.tokensOptional" $root }}
{{- end }}
{{- end }}
{{- end }}

{{/* Volumes. dict: root, secretName (the Secret holding PAYGATE_API_TOKENS). */}}
{{- define "paygate.volumes" -}}
{{- $root := .root }}
# The root filesystem is read-only; /tmp is the one scratch directory.
- name: tmp
  emptyDir:
    sizeLimit: 64Mi
{{- if eq $root.Values.database.type "sqlite" }}
- name: data
  persistentVolumeClaim:
    claimName: {{ include "paygate.pvcName" $root }}
{{- end }}
{{- if $root.Values.tls.enabled }}
- name: tls
  secret:
    secretName: {{ $root.Values.tls.secretName }}
    defaultMode: 288 # 0440: readable by the owner and the pod's fsGroup only
    items:
      - key: tls.crt
        path: tls.crt
      - key: tls.key
        path: tls.key
{{- if $root.Values.tls.clientAuth }}
- name: tls-client-ca
  secret:
    secretName: {{ default $root.Values.tls.secretName $root.Values.tls.clientCaSecretName }}
    defaultMode: 288 # 0440
    items:
      - key: ca.crt
        path: ca.crt
{{- end }}
{{- end }}
{{- if and (include "paygate.hasApiTokens" $root) $root.Values.auth.tokensAsFile }}
- name: api-tokens
  secret:
    secretName: {{ .secretName }}
    defaultMode: 288 # 0440
    optional: {{ include "paygate.tokensOptional" $root }}
    items:
      - key: PAYGATE_API_TOKENS
        path: tokens
{{- end }}
{{- end }}

{{/* Volume mounts matching paygate.volumes. */}}
{{- define "paygate.volumeMounts" -}}
- name: tmp
  mountPath: /tmp
{{- if eq .Values.database.type "sqlite" }}
- name: data
  mountPath: /data
{{- end }}
{{- if .Values.tls.enabled }}
- name: tls
  mountPath: /etc/paygate/tls
  readOnly: true
{{- if .Values.tls.clientAuth }}
- name: tls-client-ca
  mountPath: /etc/paygate/tls-client-ca
  readOnly: true
{{- end }}
{{- end }}
{{- if and (include "paygate.hasApiTokens" .) .Values.auth.tokensAsFile }}
- name: api-tokens
  mountPath: /etc/paygate/api-tokens
  readOnly: true
{{- end }}
{{- end }}

{{/*
Probe handler. dict: type ("http" or "grpc"), path (HTTP path), root, service (gRPC health
service name). Startup and liveness always use http /healthz (process-only); readiness
uses paygate.readinessType. The kubelet's gRPC probe speaks plaintext only.
*/}}
{{- define "paygate.probeHandler" -}}
{{- if eq .type "http" }}
httpGet:
  path: {{ .path }}
  port: http
{{- else }}
grpc:
  port: {{ int .root.Values.ports.grpc }}
  {{- with .service }}
  service: {{ . | quote }}
  {{- end }}
{{- end }}
{{- end }}

{{/* Scheduling fields shared by the serving pods and the migration Job's pod. */}}
{{- define "paygate.scheduling" -}}
{{- with .Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/*
Combinations that cannot work fail rendering here, naming the value to change.
Included by deployment.yaml, so `helm template`, `install` and `upgrade` all stop early.
*/}}
{{- define "paygate.validate" -}}
{{- $sqlite := eq .Values.database.type "sqlite" }}
{{- if $sqlite }}
{{- if and (not .Values.autoscaling.enabled) (gt (int (include "paygate.replicas" .)) 1) }}
{{- fail "replicaCount > 1 requires database.type=postgres: SQLite allows one writer" }}
{{- end }}
{{- if and .Values.autoscaling.enabled (gt (int .Values.autoscaling.maxReplicas) 1) }}
{{- fail "autoscaling.enabled with autoscaling.maxReplicas > 1 requires database.type=postgres: SQLite allows one writer" }}
{{- end }}
{{- else if and (not .Values.existingSecret) (not .Values.database.postgres.url) }}
{{- fail "database.type=postgres needs database.postgres.url (or existingSecret with a DATABASE_URL key)" }}
{{- end }}
{{- if and .Values.autoscaling.enabled (lt (int .Values.autoscaling.maxReplicas) (int .Values.autoscaling.minReplicas)) }}
{{- fail "autoscaling.maxReplicas must be >= autoscaling.minReplicas" }}
{{- end }}
{{- if and (not .Values.vipps.baseUrl) (not .Values.vipps.emulator) }}
{{- fail "vipps.baseUrl is empty: set vipps.baseUrl (https://api.vipps.no, or https://apitest.vipps.no for testing) with the Vipps credentials, or set vipps.emulator=true to run the built-in Vipps emulator (development only: no money moves)" }}
{{- end }}
{{- if and .Values.vipps.baseUrl .Values.vipps.emulator }}
{{- fail "vipps.emulator=true and vipps.baseUrl are both set: the emulator replaces Vipps, so set only one (vipps.emulator=false for real Vipps)" }}
{{- end }}
{{- if .Values.vipps.baseUrl }}
{{- if not .Values.vipps.clientId }}
{{- fail "vipps.baseUrl is set: vipps.clientId is required" }}
{{- end }}
{{- if not (regexMatch "^[0-9]{4,7}$" (include "paygate.msn" .)) }}
{{- fail "vipps.baseUrl is set: vipps.msn (Merchant-Serial-Number, 4 to 7 digits) is required" }}
{{- end }}
{{- if and (not .Values.existingSecret) (or (not .Values.vipps.clientSecret) (not .Values.vipps.subscriptionKey)) }}
{{- fail "vipps.baseUrl is set: vipps.clientSecret and vipps.subscriptionKey are required (or existingSecret with VIPPS_CLIENT_SECRET and VIPPS_SUBSCRIPTION_KEY)" }}
{{- end }}
{{- if not (include "paygate.webhookPublicUrl" .) }}
{{- fail "vipps.baseUrl is set: webhook.publicUrl is required (the https URL Vipps posts webhooks to; or ingress.enabled with ingress.hosts), also with webhook.secret: the webhook signature covers that URL" }}
{{- end }}
{{- end }}
{{- if and (not .Values.auth.allowUnauthenticated) (not .Values.tls.clientAuth) (not (include "paygate.hasApiTokens" .)) }}
{{- fail "auth.callers or auth.apiTokens (\"name:TOKEN[:scope+scope],...\") is required, or existingSecret with PAYGATE_API_TOKENS, or mutual TLS (tls.clientAuth); auth.allowUnauthenticated=true turns authentication off (never in production)" }}
{{- end }}
{{- $keyed := include "paygate.tokensKeyed" . }}
{{- range $i, $caller := .Values.auth.callers }}
{{- if and $caller.token $caller.existingSecretKey }}
{{- fail (printf "auth.callers[%d] (%s): set token or existingSecretKey, not both" $i $caller.name) }}
{{- end }}
{{- if and (not $caller.token) (not $caller.existingSecretKey) }}
{{- fail (printf "auth.callers[%d] (%s): needs token or existingSecretKey" $i $caller.name) }}
{{- end }}
{{- if and $caller.token $.Values.existingSecret }}
{{- fail (printf "auth.callers[%d] (%s): a literal token needs the chart's Secret, which existingSecret replaces; put the token in existingSecret and name its key in existingSecretKey" $i $caller.name) }}
{{- end }}
{{- if and $caller.existingSecretKey (not $.Values.existingSecret) }}
{{- fail (printf "auth.callers[%d] (%s): existingSecretKey needs existingSecret (the Secret that holds the key)" $i $caller.name) }}
{{- end }}
{{- if not $caller.scopes }}
{{- fail (printf "auth.callers[%d] (%s): scopes must list at least one of payments, events, pii, customers, qr" $i $caller.name) }}
{{- end }}
{{- end }}
{{- if and $keyed .Values.auth.tokensAsFile }}
{{- fail "auth.callers with existingSecretKey need auth.tokensAsFile=false: Kubernetes can compose PAYGATE_API_TOKENS from several Secret keys in a variable, not in a mounted file" }}
{{- end }}
{{- if and .Values.tls.clientScopes (not .Values.tls.clientAuth) }}
{{- fail "tls.clientScopes needs tls.clientAuth=true (scopes of mutual-TLS callers, keyed by certificate CN/SAN)" }}
{{- end }}
{{- if and .Values.tls.enabled (eq .Values.probes.readiness.type "grpc") }}
{{- fail "probes.readiness.type=grpc cannot work with tls.enabled: the kubelet's gRPC probe speaks plaintext only; use probes.readiness.type=http (or auto)" }}
{{- end }}
{{- if .Values.networkPolicy.enabled }}
{{- if not .Values.networkPolicy.grpc.namespaceSelector }}
{{- fail "networkPolicy.grpc.namespaceSelector must not be empty: {} would admit gRPC calls from every namespace" }}
{{- end }}
{{- end }}
{{- if and .Values.tls.enabled (not .Values.tls.secretName) }}
{{- fail "tls.enabled needs tls.secretName (a kubernetes.io/tls Secret)" }}
{{- end }}
{{- if and .Values.tls.clientAuth (not .Values.tls.enabled) }}
{{- fail "tls.clientAuth (mutual TLS) needs tls.enabled" }}
{{- end }}
{{- if and .Values.ingress.enabled (not .Values.ingress.hosts) }}
{{- fail "ingress.enabled needs at least one entry in ingress.hosts" }}
{{- end }}
{{- $graceMs := add (int .Values.config.shutdownGraceMs) (mul (int .Values.preStopSleepSeconds) 1000) }}
{{- if le (mul (int .Values.terminationGracePeriodSeconds) 1000) (int $graceMs) }}
{{- fail (printf "terminationGracePeriodSeconds (%d) must exceed config.shutdownGraceMs (%d ms) + preStopSleepSeconds (%d s), or the drain is cut off by SIGKILL" (int .Values.terminationGracePeriodSeconds) (int .Values.config.shutdownGraceMs) (int .Values.preStopSleepSeconds)) }}
{{- end }}
{{- end }}
