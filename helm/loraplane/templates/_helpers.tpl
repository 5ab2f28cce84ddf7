{{- define "loraplane.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}{{ .Release.Name | trunc 63 | trimSuffix "-" }}{{- else -}}{{ printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" }}{{- end -}}
{{- end -}}

{{- define "loraplane.labels" -}}
app.kubernetes.io/name: loraplane
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "loraplane.selectorLabels" -}}
app.kubernetes.io/name: loraplane
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{- define "loraplane.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}{{ default (include "loraplane.fullname" .) .Values.serviceAccount.name }}{{- else -}}{{ default "default" .Values.serviceAccount.name }}{{- end -}}
{{- end -}}

{{/* The rules the operator needs: exactly the verbs and resources it uses. */}}
{{- define "loraplane.rules" -}}
- apiGroups: [loraplane.io]
  resources: [finetunejobs, chatbotdeployments, modelpools]
  verbs: [get, list, watch, patch, update]
- apiGroups: [loraplane.io]
  resources: [finetunejobs/status, chatbotdeployments/status, modelpools/status]
  verbs: [get, patch, update]
- apiGroups: [batch]
  resources: [jobs]
  verbs: [get, list, watch, create, patch, delete]
- apiGroups: [""]
  resources: [configmaps, services]
  verbs: [get, list, watch, create, patch, update, delete]
- apiGroups: [""]
  resources: [secrets]
  # create: each pool's generated keys Secret. Reading Secrets is granted apart
  # (loraplane.secretReadRule), only where FineTuneJobs' storage credentials or chatbots'
  # auth.apiKeySecretRef (of which only SHA-256 digests leave the operator) are read.
  verbs: [create]
- apiGroups: [networking.k8s.io]
  resources: [networkpolicies]
  verbs: [get, list, watch, create, patch, update, delete]
- apiGroups: [""]
  resources: [pods]
  verbs: [get, list, watch]
- apiGroups: ["", events.k8s.io]
  resources: [events]
  verbs: [create, patch]
- apiGroups: [apps]
  resources: [deployments]
  verbs: [get, list, watch, create, patch, update, delete]
- apiGroups: [policy]
  resources: [poddisruptionbudgets]
  verbs: [get, list, watch, create, patch, update, delete]
- apiGroups: [autoscaling]
  resources: [horizontalpodautoscalers]
  verbs: [get, list, watch, create, patch, update, delete]
- apiGroups: [monitoring.coreos.com]
  resources: [servicemonitors]
  verbs: [get, list, watch, create, patch, update, delete]
- apiGroups: [inference.networking.k8s.io]
  # One InferencePool per ModelPool, where the cluster serves the Gateway API Inference Extension.
  resources: [inferencepools]
  verbs: [get, list, watch, create, patch, update, delete]
- apiGroups: [kopf.dev]
  resources: [kopfpeerings]
  verbs: [get, list, watch, patch]
{{- end -}}


{{/* Reading Secrets: FineTuneJobs' output.credentialsSecretRef (storage credentials for progress.json) and
ChatbotDeployments' auth.apiKeySecretRef (per-chatbot API keys, turned into digests). */}}
{{- define "loraplane.secretReadRule" -}}
- apiGroups: [""]
  resources: [secrets]
  verbs: [get]
{{- end -}}

{{/* The fine-tuning API server (api.enabled): its own labels, name and ServiceAccount. */}}
{{- define "loraplane.api.fullname" -}}
{{- printf "%s-api" (include "loraplane.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "loraplane.api.labels" -}}
app.kubernetes.io/name: loraplane
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: api-server
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "loraplane.api.selectorLabels" -}}
app.kubernetes.io/name: loraplane
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: api-server
{{- end -}}

{{/* What the API server does in a namespace for its callers, after their SubjectAccessReview allowed it. */}}
{{- define "loraplane.api.rules" -}}
- apiGroups: [loraplane.io]
  resources: [finetunejobs]
  verbs: [get, list, create, patch]
- apiGroups: [loraplane.io]
  resources: [chatbotdeployments]
  verbs: [get, patch]
- apiGroups: [""]
  resources: [configmaps]
  resourceNames: [loraplane-finetune-template]
  verbs: [get]
- apiGroups: [""]
  resources: [events]
  verbs: [list]
{{- end -}}
