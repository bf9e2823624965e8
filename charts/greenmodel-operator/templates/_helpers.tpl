{{/* Chart name, truncated to the 63 characters a label value allows. */}}
{{- define "greenmodel.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Fully qualified app name: <release>-<chart> unless the release name already contains the chart name. */}}
{{- define "greenmodel.fullname" -}}
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

{{- define "greenmodel.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels on every object (app.kubernetes.io recommended labels). */}}
{{- define "greenmodel.labels" -}}
helm.sh/chart: {{ include "greenmodel.chart" . }}
{{ include "greenmodel.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/component: operator
app.kubernetes.io/part-of: greenmodel-operator
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Selector labels: stable across upgrades (a Deployment selector is immutable). */}}
{{- define "greenmodel.selectorLabels" -}}
app.kubernetes.io/name: {{ include "greenmodel.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "greenmodel.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "greenmodel.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create=false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Image reference: a digest, when given, wins over the tag (immutable deploys). */}}
{{- define "greenmodel.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}
{{- end }}

{{/* Namespaces the operator watches; empty means the whole cluster. */}}
{{- define "greenmodel.watchNamespaces" -}}
{{- if eq .Values.rbac.scope "namespace" }}
{{- $ns := .Values.watchNamespaces | default (list .Release.Namespace) }}
{{- join "," $ns }}
{{- else }}
{{- join "," .Values.watchNamespaces }}
{{- end }}
{{- end }}
