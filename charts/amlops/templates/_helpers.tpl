{{/* Resource base name: the release name, suffixed with the chart name unless it already contains it. */}}
{{- define "amlops.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "amlops.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "amlops.labels" -}}
{{ include "amlops.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "amlops.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "amlops.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* kopf peering keeps exactly one replica active; a single replica runs standalone. */}}
{{- define "amlops.peering" -}}
{{- if ge (int .Values.replicas) 2 -}}true{{- end -}}
{{- end -}}

{{/*
RBAC rules for the namespaced objects the operator works on. The same list goes into the ClusterRole
(cluster-wide mode) or into a Role per watched namespace, so both modes grant exactly the same verbs.
*/}}
{{- define "amlops.namespacedRules" -}}
# The kinds come from templates/_kinds.tpl, which `amlops crdgen` generates from the API models.
- apiGroups: ["amlops.io"]
  resources: {{ include "amlops.kinds" . }}
  verbs: ["get", "list", "watch", "patch", "update"]
{{- if ne (include "amlops.kinds.jobs" .) "[]" }}
# A finished job with ttlSecondsAfterFinished deletes itself; nothing else is ever deleted.
- apiGroups: ["amlops.io"]
  resources: {{ include "amlops.kinds.jobs" . }}
  verbs: ["delete"]
{{- end }}
- apiGroups: ["amlops.io"]
  resources: {{ include "amlops.kinds.status" . }}
  verbs: ["get", "patch", "update"]
{{- if ne (include "amlops.kinds.scale" .) "[]" }}
- apiGroups: ["amlops.io"]
  resources: {{ include "amlops.kinds.scale" . }}
  verbs: ["get"]
{{- end }}
# kopf posts core/v1 Events; events.k8s.io for clients that use the newer API.
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create", "patch"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
# Credentials Secrets named by spec.credentials and ParallelJob code in ConfigMaps: read one by name, never list.
- apiGroups: [""]
  resources: ["secrets", "configmaps"]
  verbs: ["get"]
# A credentials Secret in use carries the amlops.io/credentials-in-use finalizer, so a namespace deletion keeps
# it until its resources have cleaned up in Azure. The secret-guard admission policy lets the operator change
# nothing else of a Secret.
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["patch"]
{{- if include "amlops.peering" . }}
- apiGroups: ["kopf.dev"]
  resources: ["kopfpeerings"]
  verbs: ["get", "list", "watch", "patch"]
{{- end }}
{{- end -}}
