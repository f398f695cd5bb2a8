{{/* Chart name, truncated to the 63 characters a label value allows. */}}
{{- define "scorefleet.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name of the release's objects: <release> if it already holds the chart name, else
<release>-<chart>. */}}
{{- define "scorefleet.fullname" -}}
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

{{- define "scorefleet.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Standard labels (https://kubernetes.io/docs/concepts/overview/working-with-objects/common-labels/).
The operator's own children carry app.kubernetes.io/managed-by=scorefleet; these say Helm, so the
operator never mistakes its own Deployment for a scorer. */}}
{{- define "scorefleet.labels" -}}
helm.sh/chart: {{ include "scorefleet.chart" . }}
{{ include "scorefleet.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: operator
app.kubernetes.io/part-of: scorefleet
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "scorefleet.selectorLabels" -}}
app.kubernetes.io/name: {{ include "scorefleet.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "scorefleet.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "scorefleet.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "scorefleet.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{- define "scorefleet.scorerImage" -}}
{{- $repo := default .Values.image.repository .Values.scorer.image.repository }}
{{- printf "%s:%s" $repo (default (default .Chart.AppVersion .Values.image.tag) .Values.scorer.image.tag) }}
{{- end }}

{{/* Rules on cluster-scoped resources: always a ClusterRole, whatever watchNamespace says.
Kopf watches CRDs to notice resources appear and disappear, and (only when given --namespace)
lists and watches namespaces to notice the watched one come and go. */}}
{{- define "scorefleet.clusterRules" -}}
- apiGroups: [apiextensions.k8s.io]
  resources: [customresourcedefinitions]
  verbs: [get, list, watch]
- apiGroups: [""]
  resources: [namespaces]
  verbs: [list, watch]
{{- end }}

{{/* Rules on namespaced resources: a ClusterRole when watching all namespaces, a Role in
watchNamespace otherwise. Derived from scorefleet/operator/kube.py and handlers.py:
- pipelines: Kopf watches them (list/watch), keeps its progress and diff-base in annotations
  (patch); kube.py reads one (get) and merge-patches the status subresource. Never create or
  delete: pipelines belong to their users.
- Deployments/Services/ConfigMaps: Kopf watches the labelled children (list/watch); kube.py lists
  them, server-side applies them (patch, and create when the object is new) and deletes stale
  ones. update is for replace-style writes by Kopf and future code.
- Events: kube.py posts core/v1 Events (create); patch for count/series updates.
- GRPCRoutes: traffic splitting for canary rollouts (coming work). */}}
{{- define "scorefleet.namespacedRules" -}}
- apiGroups: [scorefleet.io]
  resources: [scoringpipelines]
  verbs: [get, list, watch, patch]
- apiGroups: [scorefleet.io]
  resources: [scoringpipelines/status]
  verbs: [get, patch, update]
- apiGroups: [apps]
  resources: [deployments]
  verbs: [get, list, watch, create, update, patch, delete]
- apiGroups: [""]
  resources: [services, configmaps]
  verbs: [get, list, watch, create, update, patch, delete]
- apiGroups: [""]
  resources: [events]
  verbs: [create, patch]
- apiGroups: [gateway.networking.k8s.io]
  resources: [grpcroutes]
  verbs: [get, list, watch, create, update, patch, delete]
{{- end }}
