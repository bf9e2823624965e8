{{/*
RBAC rules of the operator, grouped by purpose, each with the reason it is needed. Verbs are those the
code uses (operator/greenmodel/kube/client.py: GET/LIST/WATCH, server-side apply = PATCH, POST of Events,
DELETE of dropped placements) and e2e/rbac-matrix.yaml pins the result. Nothing for CRDs or namespaces:
kopf runs with scanning disabled and only watch handlers, so it writes nothing and discovers nothing.
Two groups, so that with rbac.scope=namespace everything namespaced lives in Roles and the
ClusterRole holds only what needs the whole cluster.
*/}}

{{/* Needed whatever the scope. */}}
{{- define "greenmodel.rules.clusterScoped" -}}
# Catalog: ModelCatalogs are cluster-scoped and admin-owned; the operator only reads them.
- apiGroups: ["greenmodel.dev"]
  resources: ["modelcatalogs"]
  verbs: ["get", "list", "watch"]
# GPU inventory: node labels (region, zone, nvidia.com/gpu.product) and allocatable nvidia.com/gpu.
- apiGroups: [""]
  resources: ["nodes"]
  verbs: ["get", "list", "watch"]
# GPU inventory: GPUs requested by every pod on a node (free = allocatable - requested), whoever owns it;
# read-only, and pods are never created or deleted by the operator (their Deployments are).
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["list", "watch"]
{{- end }}

{{/* Namespaced resources: in the ClusterRole (scope=cluster) or a Role per watched namespace. */}}
{{- define "greenmodel.rules.namespaced" -}}
# The primary resource: read GreenModels. No create/update/patch/delete: the operator never writes the spec.
- apiGroups: ["greenmodel.dev"]
  resources: ["greenmodels"]
  verbs: ["get", "list", "watch"]
# Status is the operator's output (conditions, decision, placement), written as a patch of /status.
- apiGroups: ["greenmodel.dev"]
  resources: ["greenmodels/status"]
  verbs: ["patch"]
# Children: serving Deployments, server-side applied (patch; create when new), deleted when a placement is dropped.
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
# Children: one Service per GreenModel in front of whichever placement is live.
- apiGroups: [""]
  resources: ["services"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
# Children: a PodDisruptionBudget per GreenModel, so voluntary evictions never take all serving pods.
- apiGroups: ["policy"]
  resources: ["poddisruptionbudgets"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
# Children: model caches (a PVC per GreenModel, model and region) when the catalog sets spec.modelCache.
- apiGroups: [""]
  resources: ["persistentvolumeclaims"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
# Children: the Job that fills a model cache once (hf download); the token stays in the tenant's Secret.
- apiGroups: ["batch"]
  resources: ["jobs"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
# Events explaining decisions (VariantSelected, RegionSwitched, ...) on GreenModels.
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create"]
{{- end }}
