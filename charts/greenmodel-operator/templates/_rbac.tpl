{{/*
RBAC rules of the operator, grouped by purpose, each with the reason it is needed.
Two groups, so that with rbac.scope=namespace everything namespaced lives in Roles and the
ClusterRole holds only what is cluster-scoped by nature.
*/}}

{{/* Cluster-scoped resources: needed whatever the scope. */}}
{{- define "greenmodel.rules.clusterScoped" -}}
# Catalog: ModelCatalogs are cluster-scoped and admin-owned; the operator only reads them.
- apiGroups: ["greenmodel.dev"]
  resources: ["modelcatalogs"]
  verbs: ["get", "list", "watch"]
# GPU inventory: node labels (region, zone, nvidia.com/gpu.product) and allocatable nvidia.com/gpu.
- apiGroups: [""]
  resources: ["nodes"]
  verbs: ["get", "list", "watch"]
# kopf start-up: resource discovery checks that the CRDs it serves exist.
- apiGroups: ["apiextensions.k8s.io"]
  resources: ["customresourcedefinitions"]
  verbs: ["get", "list", "watch"]
{{- end }}

{{/* Cluster-wide watching needs the namespace list (kopf follows namespaces as they come and go). */}}
{{- define "greenmodel.rules.namespaceDiscovery" -}}
# kopf cluster-wide mode: list and watch namespaces to serve GreenModels in all of them.
- apiGroups: [""]
  resources: ["namespaces"]
  verbs: ["list", "watch"]
{{- end }}

{{/* Namespaced resources: in a ClusterRole (scope=cluster) or a Role per watched namespace. */}}
{{- define "greenmodel.rules.namespaced" -}}
# The primary resource: watch GreenModels; patch for kopf's finalizer and progress annotations.
# No create/update/delete: the operator never writes the user's spec.
- apiGroups: ["greenmodel.dev"]
  resources: ["greenmodels"]
  verbs: ["get", "list", "watch", "patch"]
# Status is the operator's output (conditions, decision, placement).
- apiGroups: ["greenmodel.dev"]
  resources: ["greenmodels/status"]
  verbs: ["get", "patch", "update"]
# Children: serving Deployments, applied with server-side apply (patch), removed when a placement is dropped.
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
# Children: one Service per GreenModel in front of the serving pods.
- apiGroups: [""]
  resources: ["services"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
# Children: a PodDisruptionBudget per GreenModel, so voluntary evictions never take all serving pods.
- apiGroups: ["policy"]
  resources: ["poddisruptionbudgets"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
# GPU inventory: GPUs already requested by running pods (free = allocatable - requested); read-only.
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["get", "list", "watch"]
# Events explaining decisions (core/v1: kopf and the operator's own Events; patch aggregates repeats).
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create", "patch"]
# Events through the events.k8s.io/v1 API (same objects, newer API).
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end }}
