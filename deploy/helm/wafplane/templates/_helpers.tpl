{{/* Name of every object of the release. */}}
{{- define "wafplane.fullname" -}}
{{- if contains "wafplane" .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-wafplane" .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "wafplane.labels" -}}
app.kubernetes.io/name: wafplane
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "wafplane.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{/* The injector's values: injector, overridden by Datadog's datadog.appsec.injector. */}}
{{- define "wafplane.injector" -}}
{{- $dd := dig "appsec" "injector" (dict) (.Values.datadog | default dict) -}}
{{- $inj := mergeOverwrite (deepCopy .Values.injector) (deepCopy $dd) -}}
{{- $_ := set $inj "mode" ($inj.mode | default "sidecar") -}}
{{- toYaml $inj -}}
{{- end -}}

{{/* The Service Envoys call for ext_proc. */}}
{{- define "wafplane.processorService" -}}
{{- if .Values.processor.deployment.enabled -}}
{{ include "wafplane.fullname" . }}-processor
{{- else -}}
{{ include "wafplane.fullname" . }}
{{- end -}}
{{- end -}}

{{/* Admin flags, volume and mount: loopback, or all addresses behind a token. */}}
{{- define "wafplane.adminArgs" -}}
{{- if .Values.admin.listenAll }}
- --admin-address=0.0.0.0:19000
- --admin-token-file=/etc/wafplane/admin/token
{{- else }}
- --admin-address=127.0.0.1:19000
{{- end }}
{{- end -}}

{{- define "wafplane.adminSecret" -}}
{{ .Values.admin.tokenSecret | default (printf "%s-admin" (include "wafplane.fullname" .)) }}
{{- end -}}

{{/* The MutatingWebhookConfiguration wafplane keeps in sidecar mode. */}}
{{- define "wafplane.webhookConfiguration" -}}
{{ include "wafplane.fullname" . }}-sidecar-injector
{{- end -}}
