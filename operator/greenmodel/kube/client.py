"""A small, synchronous Kubernetes REST client that speaks plain dicts.

Why not the generated ``kubernetes`` client: since v33 it converts every body to and from
pydantic models, which costs CPU per object and hides the wire format we compare against
(server-side apply, managedFields, status subresource). The operator needs seven verbs on a
handful of resources, so it talks REST directly with ``requests`` and borrows only the
kubeconfig / in-cluster credential loading from ``kubernetes.config``.

Every call is blocking: callers in async code run it through ``asyncio.to_thread`` (the
reconciler runs whole passes in a worker thread). One ``requests.Session`` is shared; its
connection pool is sized for the number of worker threads.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from typing import Any, Iterable, Protocol
from urllib.parse import quote

import requests
from kubernetes import client as kclient
from kubernetes import config as kconfig
from requests.adapters import HTTPAdapter

FIELD_MANAGER = "greenmodel-operator"
APPLY_CONTENT_TYPE = "application/apply-patch+yaml"  # JSON is valid YAML
MERGE_CONTENT_TYPE = "application/merge-patch+json"


class ApiError(Exception):
    """A non-2xx answer from the API server, with the status code and the server's message."""

    def __init__(self, status: int, reason: str, message: str, method: str, path: str):
        self.status = status
        self.reason = reason
        self.message = message
        self.method = method
        self.path = path
        super().__init__(f"{method} {path}: {status} {reason}: {message}")

    @property
    def not_found(self) -> bool:
        return self.status == 404

    @property
    def conflict(self) -> bool:
        return self.status == 409

    @property
    def retryable(self) -> bool:
        """Conflicts, throttling and server-side errors are worth retrying later."""
        return self.status in (409, 429) or self.status >= 500


@dataclass(frozen=True)
class ResourceKind:
    """Where a kind lives in the REST tree."""

    group: str  # "" for the core group
    version: str
    plural: str
    namespaced: bool = True

    def path(self, namespace: str | None = None, name: str | None = None, sub: str | None = None) -> str:
        base = f"/api/{self.version}" if not self.group else f"/apis/{self.group}/{self.version}"
        if self.namespaced and namespace is not None:
            base += f"/namespaces/{quote(namespace)}"
        base += f"/{self.plural}"
        if name is not None:
            base += f"/{quote(name)}"
        if sub is not None:
            base += f"/{sub}"
        return base


DEPLOYMENTS = ResourceKind("apps", "v1", "deployments")
SERVICES = ResourceKind("", "v1", "services")
PDBS = ResourceKind("policy", "v1", "poddisruptionbudgets")
PODS = ResourceKind("", "v1", "pods")
PVCS = ResourceKind("", "v1", "persistentvolumeclaims")
JOBS = ResourceKind("batch", "v1", "jobs")
NODES = ResourceKind("", "v1", "nodes", namespaced=False)
EVENTS = ResourceKind("", "v1", "events")
GREENMODELS = ResourceKind("greenmodel.dev", "v1alpha1", "greenmodels")
MODELCATALOGS = ResourceKind("greenmodel.dev", "v1alpha1", "modelcatalogs", namespaced=False)


class KubeAccess(Protocol):
    """The Kubernetes verbs the operator uses (KubeClient; the tests' in-memory fakes implement the same)."""

    def get(self, kind: ResourceKind, name: str, namespace: str | None = None) -> dict | None: ...

    def list(self, kind: ResourceKind, namespace: str | None = None, *, label_selector: str | None = None,
             field_selector: str | None = None, limit: int = 500) -> list[dict]: ...

    def apply(self, kind: ResourceKind, obj: dict, *, force: bool = True, field_manager: str = ...) -> dict: ...

    def patch_status(self, kind: ResourceKind, name: str, namespace: str | None, status: dict,
                     *, resource_version: str | None = None) -> dict: ...

    def delete(self, kind: ResourceKind, name: str, namespace: str | None = None, *,
               propagation: str = "Background", uid: str | None = None) -> bool: ...

    def create(self, kind: ResourceKind, obj: dict, namespace: str | None = None) -> dict: ...


class KubeClient:
    """Blocking REST calls with dict bodies. Thread-safe (one pooled session)."""

    def __init__(self, host: str, *, verify: Any = True, cert: tuple[str, str] | None = None,
                 token_getter=None, pool_size: int = 16, timeout_seconds: float = 30.0):
        self.host = host.rstrip("/")
        self._session = requests.Session()
        # Not the environment's CA bundle or proxies (REQUESTS_CA_BUNDLE would override the
        # cluster CA): only what the kubeconfig / service account says.
        self._session.trust_env = False
        self._session.verify = verify
        if cert:
            self._session.cert = cert
        adapter = HTTPAdapter(pool_connections=4, pool_maxsize=pool_size, max_retries=0)
        self._session.mount("https://", adapter)
        self._session.mount("http://", adapter)
        self._token_getter = token_getter
        self._timeout = timeout_seconds
        self._lock = threading.Lock()
        self.requests_total: dict[str, int] = {}  # by verb, for tests and the metrics module
        self.request_seconds_total: dict[str, float] = {}  # wall time of those requests, by verb

    # -- construction -------------------------------------------------------------------
    @classmethod
    def from_environment(cls, kubeconfig: str | None = None, *, pool_size: int = 16) -> "KubeClient":
        """In-cluster credentials when running in a pod, else the kubeconfig (``$KUBECONFIG``)."""
        cfg = kclient.Configuration()
        try:
            if kubeconfig:
                raise kconfig.ConfigException("explicit kubeconfig")
            kconfig.load_incluster_config(client_configuration=cfg)
        except kconfig.ConfigException:
            kconfig.load_kube_config(config_file=kubeconfig, client_configuration=cfg)

        def token() -> str | None:
            return cfg.get_api_key_with_prefix("authorization") or cfg.get_api_key_with_prefix("BearerToken")

        verify: Any = cfg.ssl_ca_cert if cfg.verify_ssl and cfg.ssl_ca_cert else cfg.verify_ssl
        cert = (cfg.cert_file, cfg.key_file) if cfg.cert_file and cfg.key_file else None
        return cls(cfg.host, verify=verify, cert=cert, token_getter=token, pool_size=pool_size)

    # -- transport ----------------------------------------------------------------------
    def _request(self, method: str, path: str, *, params: dict | None = None, body: Any = None,
                 content_type: str = "application/json") -> dict:
        headers = {"Accept": "application/json", "User-Agent": "greenmodel-operator"}
        if self._token_getter is not None:
            tok = self._token_getter()
            if tok:
                headers["Authorization"] = tok if tok.lower().startswith("bearer ") else f"Bearer {tok}"
        data = None
        if body is not None:
            headers["Content-Type"] = content_type
            data = json.dumps(body, separators=(",", ":"))
        with self._lock:
            self.requests_total[method] = self.requests_total.get(method, 0) + 1
        started = time.perf_counter()
        try:
            resp = self._session.request(method, self.host + path, params=params, data=data,
                                         headers=headers, timeout=self._timeout)
        finally:
            with self._lock:
                self.request_seconds_total[method] = (self.request_seconds_total.get(method, 0.0)
                                                      + time.perf_counter() - started)
        if resp.status_code >= 400:
            reason, message = resp.reason or "", resp.text[:500]
            try:
                st = resp.json()
                reason, message = st.get("reason", reason), st.get("message", message)
            except ValueError:
                pass
            raise ApiError(resp.status_code, str(reason), str(message), method, path)
        if not resp.content:
            return {}
        return resp.json()

    # -- verbs --------------------------------------------------------------------------
    def get(self, kind: ResourceKind, name: str, namespace: str | None = None) -> dict | None:
        """The object, or None when it does not exist."""
        try:
            return self._request("GET", kind.path(namespace, name))
        except ApiError as exc:
            if exc.not_found:
                return None
            raise

    def list(self, kind: ResourceKind, namespace: str | None = None, *, label_selector: str | None = None,
             field_selector: str | None = None, limit: int = 500) -> list[dict]:
        """All items (follows `continue` tokens). Namespace None lists across namespaces."""
        items: list[dict] = []
        params: dict[str, Any] = {"limit": limit}
        if label_selector:
            params["labelSelector"] = label_selector
        if field_selector:
            params["fieldSelector"] = field_selector
        while True:
            page = self._request("GET", kind.path(namespace), params=params)
            items.extend(page.get("items") or [])
            token = (page.get("metadata") or {}).get("continue")
            if not token:
                return items
            params["continue"] = token

    def apply(self, kind: ResourceKind, obj: dict, *, force: bool = True,
              field_manager: str = FIELD_MANAGER) -> dict:
        """Server-side apply ``obj`` (a full intent: apiVersion, kind, metadata.name[, namespace])."""
        meta = obj["metadata"]
        return self._request(
            "PATCH", kind.path(meta.get("namespace"), meta["name"]),
            params={"fieldManager": field_manager, "force": "true" if force else "false"},
            body=obj, content_type=APPLY_CONTENT_TYPE,
        )

    def patch_status(self, kind: ResourceKind, name: str, namespace: str | None, status: dict,
                     *, resource_version: str | None = None) -> dict:
        """Merge-patch ``/status``. With ``resource_version`` it fails with 409 if the object moved on."""
        body: dict[str, Any] = {"status": status}
        if resource_version:
            body["metadata"] = {"resourceVersion": resource_version}
        return self._request("PATCH", kind.path(namespace, name, "status"), body=body,
                             content_type=MERGE_CONTENT_TYPE)

    def delete(self, kind: ResourceKind, name: str, namespace: str | None = None, *,
               propagation: str = "Background", uid: str | None = None) -> bool:
        """Delete; True if something was deleted, False if it was already gone.

        ``uid`` makes it a conditional delete (precondition), so we never delete a newer
        object that reuses the name.
        """
        body: dict[str, Any] = {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": propagation}
        if uid:
            body["preconditions"] = {"uid": uid}
        try:
            self._request("DELETE", kind.path(namespace, name), body=body)
            return True
        except ApiError as exc:
            if exc.not_found:
                return False
            raise

    def create(self, kind: ResourceKind, obj: dict, namespace: str | None = None) -> dict:
        return self._request("POST", kind.path(namespace), body=obj)

    def request_count(self, verbs: Iterable[str] | None = None) -> int:
        with self._lock:
            return sum(v for k, v in self.requests_total.items() if verbs is None or k in verbs)
