{{/* Names and labels. */}}
{{- define "webhookmaster.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "webhookmaster.fullname" -}}
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

{{- define "webhookmaster.selectorLabels" -}}
app.kubernetes.io/name: {{ include "webhookmaster.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "webhookmaster.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 }}
{{ include "webhookmaster.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: webhookmaster
{{- end }}

{{/* (list $ "agent") -> the component's selector labels */}}
{{- define "webhookmaster.componentSelector" -}}
{{ include "webhookmaster.selectorLabels" (index . 0) }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end }}

{{- define "webhookmaster.componentLabels" -}}
{{ include "webhookmaster.labels" (index . 0) }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end }}

{{- define "webhookmaster.image" -}}
{{ printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{- define "webhookmaster.topicPrefix" -}}
{{ index .Values.config "WM_TOPIC_PREFIX" | default "webhookmaster." }}
{{- end }}

{{/* (list $ "ingest") -> the full topic (or consumer group) name under the prefix */}}
{{- define "webhookmaster.topic" -}}
{{ include "webhookmaster.topicPrefix" (index . 0) }}{{ index . 1 }}
{{- end }}

{{/* (list $ "ingest") -> a DNS-1123 resource name for that topic (as the CLI makes it) */}}
{{- define "webhookmaster.topicResource" -}}
{{ regexReplaceAll "[^a-z0-9.-]+" (include "webhookmaster.topic" . | lower) "-" | trimAll ".-" | trunc 253 | trimSuffix "-" }}
{{- end }}

{{/* Secret names. The chart's own credentials Secrets exist twice: managed ones for the
Deployments and hook copies ("-init-" names) that the init Job reads before the release's
resources exist; Helm deletes the copies once the hook succeeded. Argument: (list $ hook). */}}
{{- define "webhookmaster.credentialsSecret" -}}
{{ include "webhookmaster.fullname" (index . 0) }}-{{ if index . 1 }}init-{{ end }}credentials
{{- end }}

{{- define "webhookmaster.secretKeysSecret" -}}
{{ default (printf "%s-secret-keys" (include "webhookmaster.fullname" .)) .Values.secretKeys.existingSecret }}
{{- end }}

{{- define "webhookmaster.kafkaSecret" -}}
{{- $ := index . 0 }}
{{- if $.Values.kafka.existingSecret }}{{ $.Values.kafka.existingSecret }}
{{- else if $.Values.kafka.secretEnv }}{{ include "webhookmaster.fullname" $ }}-{{ if index . 1 }}init-{{ end }}kafka
{{- end }}
{{- end }}

{{/* The environment of every container that runs webhookmaster.
Argument: (dict "root" $ "component" "agent" "hook" false). */}}
{{- define "webhookmaster.env" -}}
{{- $ := .root }}
{{- $component := .component }}
{{- $secret := include "webhookmaster.credentialsSecret" (list $ .hook) }}
{{- with include "webhookmaster.kafkaSecret" (list $ .hook) }}
envFrom:
  - secretRef:
      name: {{ . }}
{{- end }}
env:
  {{- range $name, $value := $.Values.config }}
  - name: {{ $name }}
    value: {{ $value | toString | quote }}
  {{- end }}
  - name: WM_KAFKA_BOOTSTRAP
    value: {{ required "kafka.bootstrap is required" $.Values.kafka.bootstrap | quote }}
  - name: WM_GATEWAY_HOST
    value: "0.0.0.0"
  - name: WM_HEALTH_HOST
    value: "0.0.0.0"
  {{- range $c := list "gateway" "agent" "scheduler" "projector" }}
  - name: {{ printf "WM_%s_PORT" (upper $c) }}
    value: {{ (index $.Values $c).port | toString | quote }}
  {{- end }}
  - name: PYTHONDONTWRITEBYTECODE
    value: "1"
  - name: WM_DATABASE_URL
    valueFrom:
      secretKeyRef:
        {{- if $.Values.database.existingSecret }}
        name: {{ $.Values.database.existingSecret }}
        key: {{ $.Values.database.existingSecretUrlKey }}
        {{- else }}
        name: {{ $secret }}
        key: WM_DATABASE_URL
        {{- end }}
  {{- if and $.Values.database.existingSecret $.Values.database.existingSecretPasswordKey }}
  - name: PGPASSWORD
    valueFrom:
      secretKeyRef:
        name: {{ $.Values.database.existingSecret }}
        key: {{ $.Values.database.existingSecretPasswordKey }}
  {{- end }}
  {{- if eq $component "gateway" }}
  - name: WM_API_KEYS
    valueFrom:
      secretKeyRef:
        {{- if $.Values.apiKeys.existingSecret }}
        name: {{ $.Values.apiKeys.existingSecret }}
        key: {{ $.Values.apiKeys.existingSecretKey }}
        {{- else }}
        name: {{ $secret }}
        key: WM_API_KEYS
        {{- end }}
  {{- end }}
  {{- if has $component (list "gateway" "agent") }}
  - name: WM_SECRET_KEYS_FILE
    value: /etc/webhookmaster/secret-keys/keys
  {{- end }}
  {{- with $.Values.extraEnv }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- end }}

{{/* Volumes every pod has: /tmp, and the Kafka files when given. */}}
{{- define "webhookmaster.volumes" -}}
{{- $ := index . 0 }}
{{- $component := index . 1 }}
- name: tmp
  emptyDir:
    sizeLimit: 64Mi
{{- if $.Values.kafka.filesSecret }}
- name: kafka-files
  secret:
    secretName: {{ $.Values.kafka.filesSecret }}
    defaultMode: 0440
{{- end }}
{{- if has $component (list "gateway" "agent") }}
- name: secret-keys
  secret:
    secretName: {{ include "webhookmaster.secretKeysSecret" $ }}
    defaultMode: 0440
    items:
      - key: {{ $.Values.secretKeys.existingSecretKey }}
        path: keys
{{- end }}
{{- end }}

{{- define "webhookmaster.volumeMounts" -}}
{{- $ := index . 0 }}
{{- $component := index . 1 }}
- name: tmp
  mountPath: /tmp
{{- if $.Values.kafka.filesSecret }}
- name: kafka-files
  mountPath: {{ $.Values.kafka.filesMountPath }}
  readOnly: true
{{- end }}
{{- if has $component (list "gateway" "agent") }}
- name: secret-keys
  mountPath: /etc/webhookmaster/secret-keys
  readOnly: true
{{- end }}
{{- end }}

{{/* Pod-level settings shared by the Deployments and the init Job. */}}
{{- define "webhookmaster.podCommon" -}}
automountServiceAccountToken: false
enableServiceLinks: false
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- with .Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- end }}
