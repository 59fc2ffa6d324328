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
{{- if or .Values.existingSecret .Values.auth.apiTokens }}true{{ end }}
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
{{- if .Values.auth.apiTokens }}
PAYGATE_API_TOKENS: {{ .Values.auth.apiTokens | b64enc | quote }}
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
- name: PAYGATE_API_TOKENS
  valueFrom:
    secretKeyRef:
      name: {{ $secretName }}
      key: PAYGATE_API_TOKENS
      optional: {{ $root.Values.auth.allowUnauthenticated }}
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
    optional: {{ $root.Values.auth.allowUnauthenticated }}
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
Probe handler. dict: root, path (HTTP fallback path), service (gRPC health service name).
The kubelet's gRPC probe speaks plaintext only, so with TLS on the gRPC port the probe asks
the HTTP sidecar instead.
*/}}
{{- define "paygate.probeHandler" -}}
{{- if .root.Values.tls.enabled }}
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
{{- if and (not (include "paygate.webhookPublicUrl" .)) (not .Values.webhook.secret) (not .Values.existingSecret) }}
{{- fail "vipps.baseUrl is set: webhook.publicUrl is required (the https URL Vipps posts webhooks to; or ingress.enabled with ingress.hosts), unless webhook.secret names a webhook registered by hand" }}
{{- end }}
{{- end }}
{{- if and (not .Values.auth.allowUnauthenticated) (not (include "paygate.hasApiTokens" .)) }}
{{- fail "auth.apiTokens (\"name:TOKEN,...\") is required, or existingSecret with PAYGATE_API_TOKENS; auth.allowUnauthenticated=true turns authentication off (never in production)" }}
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
