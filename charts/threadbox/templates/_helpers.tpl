{{- define "threadbox.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "threadbox.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else if contains (include "threadbox.name" .) .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name (include "threadbox.name" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{/* Labels every object carries: metaLabels with selectorLabels (controller objects) or with
the instance (everything else). */}}
{{- define "threadbox.metaLabels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: threadbox
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end }}

{{- define "threadbox.labels" -}}
{{ include "threadbox.metaLabels" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* The controller pods. The name is fixed: the sandbox NetworkPolicy the controller writes
admits only pods labelled app.kubernetes.io/name=threadbox-controller (controller/k8s/names.py). */}}
{{- define "threadbox.selectorLabels" -}}
app.kubernetes.io/name: threadbox-controller
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: controller
{{- end }}

{{- define "threadbox.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "threadbox.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Never the release namespace: the controller's Role there (Secrets included) would cover
its own namespace. */}}
{{- define "threadbox.sandboxNamespace" -}}
{{- $ns := .Values.sandbox.namespace | default (printf "%s-sandboxes" .Release.Namespace) }}
{{- if eq $ns .Release.Namespace }}
{{- fail "sandbox.namespace must differ from the release namespace: the controller's rights over Secrets there would cover its own" }}
{{- end }}
{{- $ns }}
{{- end }}

{{- define "threadbox.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end }}

{{- define "threadbox.sandboxImage" -}}
{{ .Values.sandbox.image.repository }}:{{ .Values.sandbox.image.tag | default .Chart.AppVersion }}
{{- end }}

{{/* The placement fields of a pod spec, from a values section (controller or sandbox). */}}
{{- define "threadbox.placement" -}}
{{- range $field := list "nodeSelector" "tolerations" "affinity" "topologySpreadConstraints" }}
{{- with index $ $field }}
{{ $field }}:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}
{{- with .priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- end }}

{{/* A node-wide egress CIDR never reaches the cloud metadata service (credentials of the node). */}}
{{- define "threadbox.ipBlock" -}}
{{- if eq . "0.0.0.0/0" }}
- ipBlock: {cidr: {{ . }}, except: [169.254.169.254/32]}
{{- else }}
- ipBlock: {cidr: {{ . }}}
{{- end }}
{{- end }}

{{/* The bootstrap admin token the chart keeps in its Secret: auth.adminToken, else (with no
existingSecret and no proxy) the one an earlier install generated, else a new random one.
Empty when the token comes from auth.existingSecret or the proxy is the way in. */}}
{{- define "threadbox.adminToken" -}}
{{- $a := .Values.auth }}
{{- if $a.existingSecret }}
{{- else if $a.adminToken }}{{ $a.adminToken }}
{{- else if not $a.proxy.cidrs }}
{{- $old := lookup "v1" "Secret" .Release.Namespace (include "threadbox.secretName" .) }}
{{- $kept := "" }}
{{- if $old }}{{ $kept = index ($old.data | default dict) $a.adminTokenKey | default "" }}{{ end }}
{{- if $kept }}{{ $kept | b64dec }}{{ else }}tbx_{{ randAlphaNum 43 }}{{ end }}
{{- end }}
{{- end }}

{{/* The chart-made Secret holds only the secrets given as values (quick start). */}}
{{- define "threadbox.secretName" -}}
{{ include "threadbox.fullname" . }}
{{- end }}

{{/* env var NAME from existingSecret, else from the chart's Secret when a value is given.
args: list root NAME section keyValue valueName */}}
{{- define "threadbox.secretEnv" -}}
{{- $root := index . 0 }}{{- $name := index . 1 }}{{- $s := index . 2 }}{{- $key := index . 3 }}{{- $value := index . 4 }}
{{- if $s.existingSecret }}
- name: {{ $name }}
  valueFrom:
    secretKeyRef: {name: {{ $s.existingSecret | quote }}, key: {{ $key | quote }}}
{{- else if $value }}
- name: {{ $name }}
  valueFrom:
    secretKeyRef: {name: {{ include "threadbox.secretName" $root | quote }}, key: {{ $key | quote }}}
{{- end }}
{{- end }}

{{- define "threadbox.minioPort" -}}
{{- $parts := splitList ":" .Values.minio.endpoint }}
{{- if gt (len $parts) 1 }}{{ last $parts }}{{ else if .Values.minio.secure }}443{{ else }}80{{ end }}
{{- end }}

{{/* THREADBOX_* settings: the controller and the cleanup hook run with the same ones. */}}
{{- /* The profiles file, as controller/profiles.py's ProfilesFile reads it. */}}
{{- define "threadbox.profiles" -}}
{{- with .Values.profiles }}{{ dict "default" .default "profiles" .definitions "routes" .routes | toJson }}{{ end }}
{{- end }}

{{- define "threadbox.env" -}}
{{- $v := .Values -}}
- {name: THREADBOX_BACKEND, value: kubernetes}
- {name: THREADBOX_STORE, value: minio}
- {name: THREADBOX_HOST, value: 0.0.0.0}
- {name: THREADBOX_PORT, value: {{ $v.controller.port | quote }}}
- {name: THREADBOX_CHAT_PORT, value: {{ $v.controller.chatPort | quote }}}
{{- include "threadbox.secretEnv" (list . "THREADBOX_ADMIN_TOKEN" $v.auth $v.auth.adminTokenKey (include "threadbox.adminToken" .)) }}
{{- with $v.auth.proxy.cidrs }}
- {name: THREADBOX_AUTH_PROXY_CIDRS, value: {{ join "," . | quote }}}
{{- end }}
- {name: THREADBOX_AUTH_PROXY_HEADER, value: {{ $v.auth.proxy.header | quote }}}
{{- with $v.auth.proxy.admins }}
- {name: THREADBOX_AUTH_PROXY_ADMINS, value: {{ join "," . | quote }}}
{{- end }}
- {name: THREADBOX_DATA_DIR, value: /tmp/threadbox}
- {name: THREADBOX_IDLE_TIMEOUT, value: {{ $v.controller.idleTimeout | quote }}}
- {name: THREADBOX_MAX_SANDBOXES, value: {{ $v.controller.maxSandboxes | quote }}}
- {name: THREADBOX_START_TIMEOUT, value: {{ $v.controller.startTimeout | quote }}}
- {name: THREADBOX_EXEC_TIMEOUT, value: {{ $v.controller.execTimeout | quote }}}
- {name: THREADBOX_SANDBOX_NAMESPACE, value: {{ include "threadbox.sandboxNamespace" . | quote }}}
- {name: THREADBOX_SANDBOX_IMAGE, value: {{ include "threadbox.sandboxImage" . | quote }}}
- {name: THREADBOX_SANDBOX_IMAGE_PULL_POLICY, value: {{ $v.sandbox.image.pullPolicy | quote }}}
{{- with $v.sandbox.priorityClassName }}
- {name: THREADBOX_SANDBOX_PRIORITY_CLASS_NAME, value: {{ . | quote }}}
{{- end }}
{{- $placement := dict "NODE_SELECTOR" $v.sandbox.nodeSelector "TOLERATIONS" $v.sandbox.tolerations "AFFINITY" $v.sandbox.affinity "TOPOLOGY_SPREAD" $v.sandbox.topologySpreadConstraints "IMAGE_PULL_SECRETS" $v.sandbox.imagePullSecrets "EXTRA_LABELS" $v.sandbox.podLabels "EXTRA_ANNOTATIONS" $v.sandbox.podAnnotations }}
{{- range $name, $value := $placement }}
{{- with $value }}
- {name: THREADBOX_SANDBOX_{{ $name }}, value: {{ toJson . | quote }}}
{{- end }}
{{- end }}
- {name: THREADBOX_SANDBOX_CPU_REQUEST, value: {{ $v.sandbox.resources.requests.cpu | quote }}}
- {name: THREADBOX_SANDBOX_MEMORY_REQUEST, value: {{ $v.sandbox.resources.requests.memory | quote }}}
- {name: THREADBOX_SANDBOX_CPU_LIMIT, value: {{ $v.sandbox.resources.limits.cpu | quote }}}
- {name: THREADBOX_SANDBOX_MEMORY_LIMIT, value: {{ $v.sandbox.resources.limits.memory | quote }}}
- {name: THREADBOX_WORKSPACE_SIZE_LIMIT, value: {{ $v.sandbox.workspaceSizeLimit | quote }}}
- {name: THREADBOX_SANDBOX_EPHEMERAL_STORAGE_LIMIT, value: {{ $v.sandbox.resources.limits.ephemeralStorage | quote }}}
- {name: THREADBOX_ACTIVE_DEADLINE_SECONDS, value: {{ $v.sandbox.activeDeadlineSeconds | quote }}}
{{- with $v.sandbox.runtimeClassName }}
- {name: THREADBOX_RUNTIME_CLASS_NAME, value: {{ . | quote }}}
{{- end }}
{{- with $v.sandbox.egressAllowCIDRs }}
- {name: THREADBOX_EGRESS_ALLOW_CIDRS, value: {{ join "," . | quote }}}
{{- end }}
- {name: THREADBOX_WARM_POOL_SIZE, value: {{ $v.sandbox.warmPool.size | quote }}}
{{- with $v.sandbox.warmPool.preimport }}
- {name: THREADBOX_WARM_PREIMPORT, value: {{ join "," . | quote }}}
{{- end }}
- {name: THREADBOX_MAX_FILE_BYTES, value: {{ $v.quotas.maxFileBytes | int64 | quote }}}
- {name: THREADBOX_THREAD_MAX_FILES, value: {{ $v.quotas.threadMaxFiles | int64 | quote }}}
- {name: THREADBOX_THREAD_MAX_BYTES, value: {{ $v.quotas.threadMaxBytes | int64 | quote }}}
- {name: THREADBOX_USER_MAX_FILES, value: {{ $v.quotas.userMaxFiles | int64 | quote }}}
- {name: THREADBOX_USER_MAX_BYTES, value: {{ $v.quotas.userMaxBytes | int64 | quote }}}
- {name: THREADBOX_FILE_TTL_DAYS, value: {{ $v.quotas.fileTtlDays | quote }}}
- {name: THREADBOX_BUDGET_TOKENS_PER_DAY, value: {{ $v.quotas.budgetTokensPerDay | int64 | quote }}}
- {name: THREADBOX_BUDGET_EXEC_SECONDS_PER_DAY, value: {{ $v.quotas.budgetExecSecondsPerDay | quote }}}
- {name: THREADBOX_MINIO_ENDPOINT, value: {{ required "minio.endpoint is required (host:port)" $v.minio.endpoint | quote }}}
- {name: THREADBOX_SANDBOX_MINIO_ENDPOINT, value: {{ default $v.minio.endpoint $v.minio.sandboxEndpoint | quote }}}
{{- with $v.minio.sandboxPeer }}
- {name: THREADBOX_SANDBOX_MINIO_PEER, value: {{ toJson . | quote }}}
{{- end }}
- {name: THREADBOX_MINIO_BUCKET, value: {{ $v.minio.bucket | quote }}}
- {name: THREADBOX_MINIO_SECURE, value: {{ $v.minio.secure | quote }}}
{{- include "threadbox.secretEnv" (list . "THREADBOX_MINIO_ACCESS_KEY" $v.minio $v.minio.accessKeyKey $v.minio.accessKey) }}
{{- include "threadbox.secretEnv" (list . "THREADBOX_MINIO_SECRET_KEY" $v.minio $v.minio.secretKeyKey $v.minio.secretKey) }}
- {name: THREADBOX_SLACK_MODE, value: {{ $v.slack.mode | quote }}}
- {name: THREADBOX_SLACK_REPLY_MODE, value: {{ $v.slack.replyMode | quote }}}
{{- with $v.slack.apiUrl }}
- {name: THREADBOX_SLACK_API_URL, value: {{ . | quote }}}
{{- end }}
{{- include "threadbox.secretEnv" (list . "THREADBOX_SLACK_BOT_TOKEN" $v.slack $v.slack.botTokenKey $v.slack.botToken) }}
{{- include "threadbox.secretEnv" (list . "THREADBOX_SLACK_SIGNING_SECRET" $v.slack $v.slack.signingSecretKey $v.slack.signingSecret) }}
{{- if or (eq $v.slack.mode "socket") $v.slack.appToken }}
{{- include "threadbox.secretEnv" (list . "THREADBOX_SLACK_APP_TOKEN" $v.slack $v.slack.appTokenKey $v.slack.appToken) }}
{{- end }}
{{- with $v.slack.operatorChannel }}
- {name: THREADBOX_SLACK_OPERATOR_CHANNEL, value: {{ . | quote }}}
{{- end }}
- {name: THREADBOX_HANDOFF_TIMEOUT, value: {{ $v.handoff.timeout | quote }}}
{{- with $v.handoff.keywords }}
- {name: THREADBOX_HANDOFF_KEYWORDS, value: {{ join "," . | quote }}}
{{- end }}
- {name: THREADBOX_TELEGRAM_MODE, value: {{ $v.telegram.mode | quote }}}
- {name: THREADBOX_TELEGRAM_API_URL, value: {{ $v.telegram.apiUrl | quote }}}
{{- include "threadbox.secretEnv" (list . "THREADBOX_TELEGRAM_TOKEN" $v.telegram $v.telegram.tokenKey $v.telegram.token) }}
{{- if or (eq $v.telegram.mode "webhook") $v.telegram.webhookSecret }}
{{- include "threadbox.secretEnv" (list . "THREADBOX_TELEGRAM_WEBHOOK_SECRET" $v.telegram $v.telegram.webhookSecretKey $v.telegram.webhookSecret) }}
{{- end }}
{{- with $v.telegram.operatorChat }}
- {name: THREADBOX_TELEGRAM_OPERATOR_CHAT, value: {{ . | quote }}}
{{- end }}
{{- if $v.discord.applicationId }}
- {name: THREADBOX_DISCORD_APPLICATION_ID, value: {{ $v.discord.applicationId | quote }}}
- {name: THREADBOX_DISCORD_PUBLIC_KEY, value: {{ required "discord.publicKey is required with discord.applicationId" $v.discord.publicKey | quote }}}
- {name: THREADBOX_DISCORD_API_URL, value: {{ $v.discord.apiUrl | quote }}}
{{- include "threadbox.secretEnv" (list . "THREADBOX_DISCORD_TOKEN" $v.discord $v.discord.tokenKey $v.discord.token) }}
{{- end }}
- {name: THREADBOX_AGENT, value: {{ $v.agent.engine | quote }}}
- {name: THREADBOX_AGENT_MAX_STEPS, value: {{ $v.agent.maxSteps | quote }}}
- {name: THREADBOX_LLM_MODEL, value: {{ $v.agent.llm.model | quote }}}
{{- with $v.agent.llm.baseUrl }}
- {name: THREADBOX_LLM_BASE_URL, value: {{ . | quote }}}
{{- end }}
{{- include "threadbox.secretEnv" (list . "THREADBOX_LLM_API_KEY" $v.agent.llm $v.agent.llm.apiKeyKey $v.agent.llm.apiKey) }}
{{- with $v.agent.llm.prices }}
- {name: THREADBOX_PRICES, value: {{ toJson . | quote }}}
{{- end }}
{{- with $v.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* What the controller may do in the sandbox namespace: exactly the API calls of
controller/backends/kubernetes.py and controller/k8s/ (tests/unit/test_chart_static.py checks
both ways). Plain YAML, so that test can read it. */}}
{{- define "threadbox.controllerRules" -}}
- apiGroups: [""]
  resources: [pods]
  verbs: [get, list, watch, create, delete, patch]
- apiGroups: [""]
  resources: [secrets]
  verbs: [get, list, create, delete, patch]
- apiGroups: [networking.k8s.io]
  resources: [networkpolicies]
  verbs: [create, update]
- apiGroups: [coordination.k8s.io]
  resources: [leases]
  verbs: [get, list, watch, create, update, patch, delete]
- apiGroups: [""]
  resources: [events]
  verbs: [create]
{{- end }}
