#!/usr/bin/env python3
"""Offline validation of the Kubernetes manifests under deploy/.

Renders every kustomize overlay (with a `kustomize`/`kubectl` binary when one
exists, always also with the minimal renderer in kustomize_lite.py, and
compares the two), then checks the rendered objects:

  yaml-parse            every YAML/TOML file under deploy/ parses
  render                each kustomization renders; renderer-agreement: the
                        Python renderer matches the real kustomize output
  identity              unique kind/namespace/name, all in the overlay namespace
  spinkube-schema       SpinApp/SpinAppExecutor against the strict JSON Schemas
                        ($SPINKUBE_SCHEMAS, default /work/shared/spinkube/jsonschema)
  k8s-schema            built-in kinds against kubernetes-validate (strict, 1.30)
  webhook-replicas      replicas >= 1 unless enableAutoscaling, else unset/0
  webhook-executor      the executor exists in the same namespace
  webhook-executor-runtime  exactly one of runtimeClassName/spinImage; the
                        RuntimeClass exists in deploy/cluster
  webhook-invocation-limits invocationLimits.memory is a quantity <= the memory
                        limit (or the request when there is no limit)
  resources             quantities parse, requests <= limits
  pod-labels            podLabels do not collide with the operator's labels
  images                every image pinned (tag or digest, not latest); both
                        SpinApps run the same app image
  references            Secrets/ConfigMaps/keys/ServiceAccounts referenced exist
                        (or are declared in the overlay's required-secrets.yaml)
  runtime-config        loadFromSecret used alone; runtime-config.toml has a
                        Redis `default` store whose URL names a Service and port
                        in the namespace and the Redis password
  variables             known names, required ones bound, environment value,
                        redis_host is a Service's host:port, redis_password
                        is Redis's own and URL-safe, *.spin.internal gateway
                        is retained
  components            known ids, every Redis subscriber runs in exactly one
                        SpinApp, dependencies retained, every component runs
  probes                readiness and liveness on /.well-known/spin/health
  executor-choice       the overlay uses the executor it is meant to, and a
                        containerd-shim-spin SpinApp runs the WASIp2 artifact
                        (tag ending in -wasip2): the shim embeds Spin 3.6.3,
                        which cannot start the WASIp3 build
  scaling               HPA targets the operator's Deployment of an autoscaled
                        SpinApp, requests exist for its metrics, subscribers do
                        not autoscale, PDBs select pods and can be satisfied
  cronjob               reconcile CronJob: Forbid, deadline, POST with the same
                        admin token Secret as the app, URL hits the order app
  services              Service selectors and target ports resolve
  netpol-selects        every NetworkPolicy (and peer) selects pods, using the
                        labels spin-operator puts on SpinApp pods
  netpol-connectivity   who may talk to whom, evaluated from the policies
  containerfile         deploy/wharf/Containerfile has the required shape

--self-test additionally mutates rendered objects in memory, one rule at a
time, and asserts that the intended check reports each mutation.

Exit status: 0 when everything passed, 1 on any failure, 2 on setup errors.
"""

from __future__ import annotations

import argparse
import base64
import copy
import ipaddress
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlsplit

sys.dont_write_bytecode = True
sys.path.insert(0, str(Path(__file__).resolve().parent))

try:
    import jsonschema
    import yaml
    from referencing import Registry, Resource
except ImportError as e:  # pragma: no cover
    print(f"missing dependency ({e}); run tests/deploy/run.sh, which installs them into a venv", file=sys.stderr)
    sys.exit(2)

import kustomize_lite  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
DEFAULT_SCHEMAS = "/work/shared/spinkube/jsonschema"
K8S_VERSION = "1.30"

# --- facts about the app (spin.toml at the repo root overrides the first two) ---
COMPONENTS = {"inventory", "order", "payment", "payment-worker", "order-events", "gateway-sandbox", "ops"}
REDIS_TRIGGERED = {"payment-worker", "order-events"}
DEPENDS_ON = {"order": {"inventory"}}
KNOWN_VARIABLES = {"redis_host", "redis_password", "admin_token", "payment_provider", "payment_gateway_url", "environment", "jwt_verification_key",
                   "jwt_audience", "customer_auth", "reconcile_after_seconds", "payment_timeout_seconds",
                   "idempotency_ttl_seconds", "key_value"}
REQUIRED_VARIABLES = {"admin_token"}
HEALTH_PATH = "/.well-known/spin/health"
# Subscribers are not scaled for throughput: every replica gets every message.
MAX_SUBSCRIBER_REPLICAS = 2

# --- facts about spin-operator (internal/controller, pkg/spinapp) ---
OP_LABEL_PREFIX = "core.spinkube.dev/"
OP_APP_LABEL = "core.spinkube.dev/app-name"
OP_HTTP_PORT = ("http-app", 80, "TCP")

# --- what each overlay is meant to be ---
OVERLAYS: dict[str, dict[str, Any]] = {
    "dev": {"namespace": "shop-dev", "executor": "containerd-shim-spin", "environment": "dev",
            "autoscaled": set(), "registry_egress": False},
    "prod": {"namespace": "shop", "executor": "containerd-shim-spin", "environment": "prod",
             "autoscaled": {"shop"}, "registry_egress": False},
    "wharf": {"namespace": "shop-wharf", "executor": "wharf", "environment": "dev",
              "autoscaled": set(), "registry_egress": True},
}
HTTP_APP, WORKER_APP, REDIS_STS, RECONCILE_CRON = "shop", "shop-worker", "redis", "shop-reconcile"

SPINKUBE_KINDS = {("core.spinkube.dev/v1alpha1", "SpinApp"): "spinapp_v1alpha1-strict.json",
                  ("core.spinkube.dev/v1alpha1", "SpinAppExecutor"): "spinappexecutor_v1alpha1-strict.json"}
WORKLOAD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "CronJob", "Pod"}


# ----------------------------------------------------------------- helpers

def load_app_facts() -> str:
    """Use spin.toml's component ids and triggers when the manifest exists."""
    global COMPONENTS, REDIS_TRIGGERED, REQUIRED_VARIABLES
    path = Path(os.environ.get("SHOP_SPIN_TOML", REPO / "spin.toml"))
    if not path.is_file():
        return f"{path.relative_to(REPO) if path.is_relative_to(REPO) else path} not found: using the component list fixed in validate.py"
    with open(path, "rb") as f:
        m = tomllib.load(f)
    comps = set((m.get("component") or {}).keys())
    redis = {t.get("component") for t in (m.get("trigger") or {}).get("redis", []) if isinstance(t, dict)}
    if comps:
        COMPONENTS = comps
        REDIS_TRIGGERED = {c for c in redis if isinstance(c, str)} & comps
    req = {k for k, v in (m.get("variables") or {}).items() if isinstance(v, dict) and v.get("required")}
    if req:
        REQUIRED_VARIABLES = req
    return f"component ids and Redis triggers read from {path.name}"


_QTY_RE = re.compile(r"^([+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E|[eE][+-]?[0-9]+)?$")
_BIN = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DEC = {"n": Fraction(1, 10**9), "u": Fraction(1, 10**6), "m": Fraction(1, 1000), "": 1,
        "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18}


def parse_quantity(value: Any) -> Fraction:
    """A Kubernetes resource.Quantity as an exact number (raises ValueError)."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a quantity")
    if isinstance(value, int):
        return Fraction(value)
    if isinstance(value, float):
        return Fraction(str(value))
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not a quantity")
    m = _QTY_RE.match(value.strip())
    if not m:
        raise ValueError(f"{value!r} is not a quantity")
    number, suffix = Fraction(m.group(1)), m.group(2) or ""
    if suffix in _BIN:
        return number * _BIN[suffix]
    if suffix in _DEC:
        return number * _DEC[suffix]
    return number * Fraction(10) ** int(suffix[1:])


def meta(obj: dict) -> dict:
    return obj.get("metadata") or {}


def name_of(obj: dict) -> str:
    return meta(obj).get("name", "")


def ns_of(obj: dict) -> str:
    return meta(obj).get("namespace", "")


def ref(obj: dict) -> str:
    return f"{obj.get('kind')}/{name_of(obj)}"


def split_image(image: str) -> tuple[str, str | None, str | None]:
    return kustomize_lite._split_image(image)


def selector_matches(selector: dict | None, labels: dict) -> bool:
    if selector is None:
        return True
    for k, v in (selector.get("matchLabels") or {}).items():
        if labels.get(k) != str(v):
            return False
    for e in selector.get("matchExpressions") or []:
        key, op, values = e.get("key"), e.get("operator"), [str(v) for v in e.get("values") or []]
        if op == "In":
            ok = key in labels and labels[key] in values
        elif op == "NotIn":
            ok = key not in labels or labels[key] not in values
        elif op == "Exists":
            ok = key in labels
        elif op == "DoesNotExist":
            ok = key not in labels
        else:
            return False
        if not ok:
            return False
    return True


def secret_value(obj: dict, key: str) -> str | None:
    if key in (obj.get("stringData") or {}):
        return str(obj["stringData"][key])
    if key in (obj.get("data") or {}):
        raw = obj["data"][key]
        if obj.get("kind") == "Secret":
            return base64.b64decode("".join(str(raw).split())).decode()
        return str(raw)
    return None


# ----------------------------------------------------------------- overlay model

@dataclass
class Overlay:
    name: str
    path: Path
    objects: list[dict]
    expect: dict
    cluster: list[dict]
    required: dict[str, dict] = field(default_factory=dict)   # declared external Secrets

    @property
    def namespace(self) -> str:
        return self.expect["namespace"]

    def of_kind(self, kind: str) -> list[dict]:
        return [o for o in self.objects if o.get("kind") == kind]

    def get(self, kind: str, name: str, namespace: str | None = None) -> dict | None:
        namespace = self.namespace if namespace is None else namespace
        for o in self.objects:
            if o.get("kind") == kind and name_of(o) == name and ns_of(o) == namespace:
                return o
        return None

    def spinapps(self) -> list[dict]:
        return self.of_kind("SpinApp")

    def lookup_key(self, kind: str, name: str, key: str) -> tuple[bool, str | None]:
        """(exists, value-or-None-if-unknown) for a Secret/ConfigMap key."""
        obj = self.get(kind, name)
        if obj is not None:
            value = secret_value(obj, key)
            return value is not None, value
        if kind == "Secret" and name in self.required:
            return key in self.required[name].get("keys", []), None
        return False, None

    def pods(self) -> list[dict]:
        """Pod models: workload templates plus what spin-operator makes of SpinApps."""
        out = []
        for o in self.objects:
            kind = o.get("kind")
            tmpl = None
            if kind == "CronJob":
                tmpl = (((o.get("spec") or {}).get("jobTemplate") or {}).get("spec") or {}).get("template")
            elif kind == "Pod":
                tmpl = o
            elif kind in WORKLOAD_KINDS:
                tmpl = (o.get("spec") or {}).get("template")
            if kind == "SpinApp":
                spec = o.get("spec") or {}
                labels = {str(k): str(v) for k, v in (spec.get("podLabels") or {}).items()}
                # constructDeployment: podLabels, then the operator's labels copied over them.
                labels[OP_APP_LABEL] = name_of(o)
                labels[f"{OP_LABEL_PREFIX}app.{name_of(o)}.status"] = "ready"
                out.append({"kind": "pod", "name": ref(o), "namespace": ns_of(o), "labels": labels,
                            "ports": [OP_HTTP_PORT], "owner": o})
            elif isinstance(tmpl, dict):
                labels = {str(k): str(v) for k, v in (meta(tmpl).get("labels") or {}).items()}
                ports = []
                for c in ((tmpl.get("spec") or {}).get("containers") or []):
                    for p in c.get("ports") or []:
                        ports.append((p.get("name"), p.get("containerPort"), p.get("protocol", "TCP")))
                out.append({"kind": "pod", "name": ref(o), "namespace": ns_of(o), "labels": labels,
                            "ports": ports, "owner": o})
        for i, p in enumerate(out):
            p["ip"] = f"10.244.1.{i + 10}"
        return out

    def services(self) -> list[dict]:
        """Services in the overlay plus the ClusterIP Service spin-operator makes per SpinApp."""
        out = list(self.of_kind("Service"))
        for app in self.spinapps():
            out.append({"apiVersion": "v1", "kind": "Service", "synthetic": True,
                        "metadata": {"name": name_of(app), "namespace": ns_of(app)},
                        "spec": {"type": "ClusterIP",
                                 "selector": {f"{OP_LABEL_PREFIX}app.{name_of(app)}.status": "ready"},
                                 "ports": [{"port": 80, "targetPort": "http-app", "protocol": "TCP"}]}})
        return out

    def service_for_host(self, host: str) -> dict | None:
        short = host.split(".")[0]
        valid = {short, f"{short}.{self.namespace}", f"{short}.{self.namespace}.svc",
                 f"{short}.{self.namespace}.svc.cluster.local"}
        if host not in valid:
            return None
        for s in self.services():
            if name_of(s) == short and ns_of(s) == self.namespace:
                return s
        return None

    def pods_of_service(self, svc: dict) -> list[dict]:
        sel = (svc.get("spec") or {}).get("selector")
        if not sel:
            return []
        return [p for p in self.pods() if p["namespace"] == ns_of(svc) and selector_matches({"matchLabels": sel}, p["labels"])]


def spin_var(app: dict, name: str) -> dict | None:
    for v in (app.get("spec") or {}).get("variables") or []:
        if v.get("name") == name:
            return v
    return None


def resolve_var(ov: Overlay, app: dict, name: str) -> tuple[bool, str | None]:
    """(bound, value-or-None-if-unknown)."""
    v = spin_var(app, name)
    if v is None:
        return False, None
    if "value" in v:
        return True, v["value"]
    vf = v.get("valueFrom") or {}
    if "secretKeyRef" in vf:
        r = vf["secretKeyRef"]
        return ov.lookup_key("Secret", r.get("name", ""), r.get("key", ""))
    if "configMapKeyRef" in vf:
        r = vf["configMapKeyRef"]
        return ov.lookup_key("ConfigMap", r.get("name", ""), r.get("key", ""))
    return False, None


def effective_components(app: dict) -> set[str]:
    comps = (app.get("spec") or {}).get("components")
    return set(comps) if comps else set(COMPONENTS)


def env_ref_value(ov: Overlay, pod_spec: dict, var: str) -> str | None:
    for c in pod_spec.get("containers") or []:
        for e in c.get("env") or []:
            if e.get("name") == var:
                if "value" in e:
                    return e["value"]
                r = (e.get("valueFrom") or {}).get("secretKeyRef")
                if r:
                    return ov.lookup_key("Secret", r.get("name", ""), r.get("key", ""))[1]
    return None


def check_redis_url(ov: Overlay, url: str, what: str) -> list[str]:
    """The URL names a Service+port in the namespace; its password matches the server's."""
    errs = []
    try:
        u = urlsplit(url)
        port = u.port or 6379
    except ValueError as e:
        return [f"{what}: {url!r} is not a URL ({e})"]
    if u.scheme not in ("redis", "rediss"):
        errs.append(f"{what}: scheme {u.scheme!r} is not redis/rediss")
    svc = ov.service_for_host(u.hostname or "")
    if svc is None:
        return errs + [f"{what}: host {u.hostname!r} is not a Service in namespace {ov.namespace}"]
    if not any(p.get("port") == port for p in (svc.get("spec") or {}).get("ports") or []):
        errs.append(f"{what}: Service {name_of(svc)} has no port {port}")
    for pod in ov.pods_of_service(svc):
        tmpl_spec = (((pod["owner"].get("spec") or {}).get("template")) or {}).get("spec") or {}
        server_pw = env_ref_value(ov, tmpl_spec, "REDIS_PASSWORD")
        if server_pw is not None and u.password != server_pw:
            errs.append(f"{what}: password in URL does not match REDIS_PASSWORD of {pod['name']}")
    return errs


# ----------------------------------------------------------------- schema validators

class SpinKubeSchemas:
    def __init__(self, directory: Path):
        self.validators = {}
        for key, fname in SPINKUBE_KINDS.items():
            path = directory / "core.spinkube.dev" / fname
            if not path.is_file():
                raise FileNotFoundError(path)
            with open(path) as f:
                schema = json.load(f)
            self.validators[key] = jsonschema.Draft4Validator(schema)

    def validate(self, obj: dict) -> list[str]:
        v = self.validators[(obj.get("apiVersion"), obj.get("kind"))]
        return [f"{ref(obj)}: {'.'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
                for e in sorted(v.iter_errors(obj), key=lambda e: list(map(str, e.absolute_path)))]


class K8sSchemas:
    """kubernetes-validate's bundled strict schemas, with validators cached per kind."""

    def __init__(self, version: str):
        import kubernetes_validate
        from kubernetes_validate import utils
        root = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema"
        versions = [v for v in utils.all_versions()
                    if tuple(map(int, v.split(".")[:2])) <= tuple(map(int, version.split(".")[:2]))]
        if not versions:
            raise RuntimeError(f"kubernetes-validate {kubernetes_validate.__version__} has no schemas for {version}")
        self.version = versions[-1]
        self.dir = root / f"v{self.version}-local-strict"
        with open(self.dir / "_definitions.json") as f:
            self.registry = Resource.from_contents(json.load(f)) @ Registry()
        self.cache: dict[Path, Any] = {}

    def validate(self, obj: dict) -> list[str]:
        api = obj.get("apiVersion", "")
        api_part = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api)
        path = self.dir / f"{str(obj.get('kind', '')).lower()}-{api_part}.json"
        if not path.is_file():
            return [f"{ref(obj)}: no schema for {obj.get('kind')} {api} in Kubernetes {self.version}"]
        if path not in self.cache:
            with open(path) as f:
                schema = json.load(f)
            self.cache[path] = jsonschema.Draft202012Validator(schema, registry=Resource.from_contents(schema) @ self.registry)
        errs = sorted(self.cache[path].iter_errors(obj), key=lambda e: list(map(str, e.absolute_path)))
        return [f"{ref(obj)}: {'.'.join(map(str, e.absolute_path)) or '<root>'}: {e.message[:300]}" for e in errs[:5]]


# ----------------------------------------------------------------- checks

Check = Callable[[Overlay, "Tools"], list[str]]


@dataclass
class Tools:
    spinkube: SpinKubeSchemas
    k8s: K8sSchemas


def c_identity(ov: Overlay, t: Tools) -> list[str]:
    errs, seen = [], set()
    for o in ov.objects:
        key = (o.get("apiVersion"), o.get("kind"), ns_of(o), name_of(o))
        if key in seen:
            errs.append(f"duplicate object {key}")
        seen.add(key)
        if not name_of(o):
            errs.append(f"{o.get('kind')} without metadata.name")
        kind = o.get("kind")
        if kind == "Namespace":
            if name_of(o) != ov.namespace:
                errs.append(f"Namespace object is {name_of(o)!r}, expected {ov.namespace!r}")
        elif kind not in kustomize_lite.CLUSTER_SCOPED and ns_of(o) != ov.namespace:
            errs.append(f"{ref(o)} is in namespace {ns_of(o)!r}, expected {ov.namespace!r}")
    if not ov.of_kind("Namespace"):
        errs.append(f"no Namespace object {ov.namespace}")
    return errs


def c_spinkube_schema(ov: Overlay, t: Tools) -> list[str]:
    errs = []
    for o in ov.objects:
        if (o.get("apiVersion"), o.get("kind")) in SPINKUBE_KINDS:
            errs += t.spinkube.validate(o)
        elif str(o.get("apiVersion", "")).startswith("core.spinkube.dev/"):
            errs.append(f"{ref(o)}: unknown SpinKube kind/version {o.get('apiVersion')}")
    return errs


def c_k8s_schema(ov: Overlay, t: Tools) -> list[str]:
    errs = []
    for o in ov.objects:
        if str(o.get("apiVersion", "")).startswith("core.spinkube.dev/"):
            continue
        errs += t.k8s.validate(o)
    return errs


def c_webhook_replicas(ov: Overlay, t: Tools) -> list[str]:
    errs = []
    for app in ov.spinapps():
        spec = app.get("spec") or {}
        auto, replicas = bool(spec.get("enableAutoscaling")), spec.get("replicas")
        if auto and replicas not in (None, 0):
            errs.append(f"{ref(app)}: replicas={replicas} with enableAutoscaling (must be unset or 0)")
        if not auto and (not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 1):
            errs.append(f"{ref(app)}: replicas={replicas!r} without enableAutoscaling (must be >= 1)")
    return errs


def c_webhook_executor(ov: Overlay, t: Tools) -> list[str]:
    errs = []
    for app in ov.spinapps():
        spec = app.get("spec") or {}
        name = spec.get("executor")
        if not name:
            errs.append(f"{ref(app)}: spec.executor is empty")
            continue
        ex = ov.get("SpinAppExecutor", name, ns_of(app))
        if ex is None:
            errs.append(f"{ref(app)}: executor {name!r} does not exist in namespace {ns_of(app)!r}")
            continue
        if not (ex.get("spec") or {}).get("createDeployment"):
            if spec.get("podAnnotations") or spec.get("deploymentAnnotations"):
                errs.append(f"{ref(app)}: pod/deployment annotations with executor {name} that creates no Deployment")
            errs.append(f"{ref(app)}: executor {name} does not create a Deployment (probes, HPA, NetworkPolicies assume one)")
    return errs


def c_webhook_executor_runtime(ov: Overlay, t: Tools) -> list[str]:
    errs = []
    runtime_classes = {name_of(o) for o in ov.cluster + ov.objects if o.get("kind") == "RuntimeClass"}
    for ex in ov.of_kind("SpinAppExecutor"):
        spec = ex.get("spec") or {}
        cfg = spec.get("deploymentConfig")
        if not spec.get("createDeployment") and cfg is None:
            continue
        cfg = cfg or {}
        has_rc, has_img = "runtimeClassName" in cfg, "spinImage" in cfg
        if has_rc and has_img:
            errs.append(f"{ref(ex)}: runtimeClassName and spinImage are mutually exclusive")
        elif not has_rc and not has_img:
            errs.append(f"{ref(ex)}: needs one of runtimeClassName or spinImage")
        if has_rc and cfg["runtimeClassName"] not in runtime_classes:
            errs.append(f"{ref(ex)}: RuntimeClass {cfg['runtimeClassName']!r} is not in deploy/cluster")
    return errs


def c_webhook_invocation_limits(ov: Overlay, t: Tools) -> list[str]:
    errs = []
    for app in ov.spinapps():
        spec = app.get("spec") or {}
        limits = spec.get("invocationLimits") or {}
        if "memory" not in limits:
            continue
        try:
            inv = parse_quantity(limits["memory"])
        except ValueError as e:
            errs.append(f"{ref(app)}: invocationLimits.memory: {e}")
            continue
        if inv <= 0:
            errs.append(f"{ref(app)}: invocationLimits.memory must be positive")
        res = spec.get("resources") or {}
        lim, req = (res.get("limits") or {}).get("memory"), (res.get("requests") or {}).get("memory")
        bound, which = (lim, "limit") if lim is not None else (req, "request")
        if bound is None:
            continue
        try:
            if inv > parse_quantity(bound):
                errs.append(f"{ref(app)}: invocationLimits.memory {limits['memory']} > memory {which} {bound}")
        except ValueError as e:
            errs.append(f"{ref(app)}: resources memory {which}: {e}")
    return errs


def _containers(o: dict) -> list[dict]:
    out = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                if k in ("containers", "initContainers") and isinstance(v, list):
                    out.extend(c for c in v if isinstance(c, dict))
                else:
                    walk(v)
        elif isinstance(node, list):
            for i in node:
                walk(i)
    walk(o)
    return out


def c_resources(ov: Overlay, t: Tools) -> list[str]:
    errs = []
    holders = [(ref(a), (a.get("spec") or {}).get("resources") or {}) for a in ov.spinapps()]
    for o in ov.objects:
        for c in _containers(o):
            holders.append((f"{ref(o)} container {c.get('name')}", c.get("resources") or {}))
    for where, res in holders:
        req, lim = res.get("requests") or {}, res.get("limits") or {}
        for section, values in (("requests", req), ("limits", lim)):
            for k, v in values.items():
                try:
                    parse_quantity(v)
                except ValueError as e:
                    errs.append(f"{where}: {section}.{k}: {e}")
        for k in set(req) & set(lim):
            try:
                if parse_quantity(req[k]) > parse_quantity(lim[k]):
                    errs.append(f"{where}: request {k}={req[k]} exceeds limit {lim[k]}")
            except ValueError:
                pass
    return errs


def c_pod_labels(ov: Overlay, t: Tools) -> list[str]:
    errs = []
    for app in ov.spinapps():
        for k in ((app.get("spec") or {}).get("podLabels") or {}):
            if str(k).startswith(OP_LABEL_PREFIX):
                errs.append(f"{ref(app)}: podLabels key {k} is owned by spin-operator (it overwrites it)")
    return errs


def c_images(ov: Overlay, t: Tools) -> list[str]:
    errs, images = [], []
    for o in ov.objects:
        if o.get("kind") == "SpinApp":
            images.append((ref(o), (o.get("spec") or {}).get("image", "")))
        if o.get("kind") == "SpinAppExecutor" and "spinImage" in ((o.get("spec") or {}).get("deploymentConfig") or {}):
            images.append((ref(o), o["spec"]["deploymentConfig"]["spinImage"]))
        for c in _containers(o):
            images.append((f"{ref(o)} container {c.get('name')}", c.get("image", "")))
    for where, image in images:
        name, tag, digest = split_image(str(image))
        if not name:
            errs.append(f"{where}: empty image")
        elif digest is None and (tag is None or tag == "latest"):
            errs.append(f"{where}: image {image!r} is not pinned to a tag or digest")
    app_images = {(a.get("spec") or {}).get("image") for a in ov.spinapps()}
    if len(app_images) > 1:
        errs.append(f"SpinApps run different app images {sorted(map(str, app_images))}; a release must move all of them")
    return errs


def _refs(ov: Overlay) -> list[tuple[str, str, str, str | None, bool]]:
    """(where, kind, name, key, optional) for every reference to a Secret/ConfigMap/ServiceAccount."""
    out = []
    for app in ov.spinapps():
        spec = app.get("spec") or {}
        for v in spec.get("variables") or []:
            vf = v.get("valueFrom") or {}
            for field_, kind in (("secretKeyRef", "Secret"), ("configMapKeyRef", "ConfigMap")):
                if field_ in vf:
                    r = vf[field_]
                    out.append((f"{ref(app)} variable {v.get('name')}", kind, r.get("name", ""), r.get("key"), bool(r.get("optional"))))
        rc = (spec.get("runtimeConfig") or {}).get("loadFromSecret")
        if rc:
            out.append((f"{ref(app)} runtimeConfig.loadFromSecret", "Secret", rc, "runtime-config.toml", False))
        for s in spec.get("imagePullSecrets") or []:
            out.append((f"{ref(app)} imagePullSecrets", "Secret", s.get("name", ""), None, False))
        if spec.get("serviceAccountName"):
            out.append((f"{ref(app)} serviceAccountName", "ServiceAccount", spec["serviceAccountName"], None, False))
    for o in ov.objects:
        for c in _containers(o):
            where = f"{ref(o)} container {c.get('name')}"
            for e in c.get("env") or []:
                vf = e.get("valueFrom") or {}
                for field_, kind in (("secretKeyRef", "Secret"), ("configMapKeyRef", "ConfigMap")):
                    if field_ in vf:
                        r = vf[field_]
                        out.append((f"{where} env {e.get('name')}", kind, r.get("name", ""), r.get("key"), bool(r.get("optional"))))
            for e in c.get("envFrom") or []:
                for field_, kind in (("secretRef", "Secret"), ("configMapRef", "ConfigMap")):
                    if field_ in e:
                        out.append((f"{where} envFrom", kind, e[field_].get("name", ""), None, bool(e[field_].get("optional"))))
    return out


def c_references(ov: Overlay, t: Tools) -> list[str]:
    errs, used = [], set()
    for where, kind, name, key, optional in _refs(ov):
        if kind == "Secret":
            used.add(name)
        if kind == "ServiceAccount":
            if name != "default" and ov.get("ServiceAccount", name) is None:
                errs.append(f"{where}: ServiceAccount {name!r} not found")
            continue
        obj = ov.get(kind, name)
        declared = kind == "Secret" and name in ov.required
        if obj is None and not declared:
            if not optional:
                errs.append(f"{where}: {kind} {name!r} is neither rendered nor listed in required-secrets.yaml")
            continue
        if key is not None:
            exists, _ = ov.lookup_key(kind, name, key)
            if not exists and not optional:
                errs.append(f"{where}: {kind} {name!r} has no key {key!r}")
    for name in ov.required:
        if name not in used:
            errs.append(f"required-secrets.yaml lists {name!r}, which nothing references")
        if ov.get("Secret", name) is not None:
            errs.append(f"required-secrets.yaml lists {name!r}, but the overlay also renders it")
    return errs


def c_runtime_config(ov: Overlay, t: Tools) -> list[str]:
    errs = []
    for app in ov.spinapps():
        rc = (app.get("spec") or {}).get("runtimeConfig") or {}
        secret = rc.get("loadFromSecret")
        if not secret:
            errs.append(f"{ref(app)}: runtimeConfig.loadFromSecret is not set")
            continue
        inline = [k for k in ("keyValueStores", "sqliteDatabases", "llmCompute") if rc.get(k)]
        if inline:
            errs.append(f"{ref(app)}: runtimeConfig.{'/'.join(inline)} next to loadFromSecret (the operator ignores them)")
        exists, text = ov.lookup_key("Secret", secret, "runtime-config.toml")
        source = f"Secret {secret}"
        if text is None and secret in ov.required and ov.required[secret].get("example"):
            source = str(ov.path / ov.required[secret]["example"])
            try:
                text = Path(source).read_text()
            except OSError as e:
                errs.append(f"{ref(app)}: cannot read {source}: {e}")
                continue
        if text is None:
            errs.append(f"{ref(app)}: runtime-config.toml of {secret} is not available to check")
            continue
        try:
            doc = tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            errs.append(f"{ref(app)}: {source}: runtime-config.toml does not parse: {e}")
            continue
        store = (doc.get("key_value_store") or {}).get("default")
        if not isinstance(store, dict) or store.get("type") != "redis":
            errs.append(f"{ref(app)}: {source}: [key_value_store.default] with type = \"redis\" is missing")
            continue
        errs += check_redis_url(ov, str(store.get("url", "")), f"{ref(app)}: {source} key_value_store.default.url")
    return errs


def check_redis_variables(ov: Overlay, app: dict) -> list[str]:
    """redis_host and redis_password name the overlay's Redis as its pods run it.

    spin.toml builds redis://:{{ redis_password }}@{{ redis_host }} for the
    trigger and the components, and allows redis://{{ redis_host }}: Spin
    3.x refuses credentials, paths and queries in an allowed host.
    """
    errs = []
    bound, host = resolve_var(ov, app, "redis_host")
    _, password = resolve_var(ov, app, "redis_password")
    if bound and host is not None:
        if not re.fullmatch(r"[A-Za-z0-9.-]+(:[0-9]+)?", host):
            errs.append(f"{ref(app)}: redis_host {host!r} is not host[:port]; it is also the allowed outbound host "
                        "redis://{{ redis_host }}, which takes no scheme, credentials, path or query")
        else:
            url = f"redis://:{password}@{host}" if password is not None else f"redis://{host}"
            errs += check_redis_url(ov, url, f"{ref(app)}: redis_host/redis_password")
    if password is not None and not re.fullmatch(r"[A-Za-z0-9._~-]*", password):
        errs.append(f"{ref(app)}: redis_password has characters other than letters, digits and -._~; "
                    "it goes into redis:// URLs as it is")
    # Where the values are not rendered (prod), the references must at least
    # be the one Redis itself is started with.
    var = spin_var(app, "redis_password")
    app_ref = ((var or {}).get("valueFrom") or {}).get("secretKeyRef")
    svc = ov.service_for_host((host or "").split(":")[0]) if host else None
    for pod in ov.pods_of_service(svc) if svc else []:
        tmpl_spec = (((pod["owner"].get("spec") or {}).get("template")) or {}).get("spec") or {}
        for c in tmpl_spec.get("containers") or []:
            for e in c.get("env") or []:
                server_ref = (e.get("valueFrom") or {}).get("secretKeyRef")
                if e.get("name") == "REDIS_PASSWORD" and server_ref and app_ref and \
                        (server_ref.get("name"), server_ref.get("key")) != (app_ref.get("name"), app_ref.get("key")):
                    errs.append(f"{ref(app)}: redis_password comes from {app_ref.get('name')}/{app_ref.get('key')}, "
                                f"Redis's REDIS_PASSWORD of {pod['name']} from {server_ref.get('name')}/{server_ref.get('key')}")
    return errs


def c_variables(ov: Overlay, t: Tools) -> list[str]:
    errs = []
    for app in ov.spinapps():
        names = []
        for v in (app.get("spec") or {}).get("variables") or []:
            n = v.get("name", "")
            names.append(n)
            if not re.fullmatch(r"[a-z][a-z0-9_]*", n):
                errs.append(f"{ref(app)}: variable name {n!r} is not a Spin variable name")
            elif n not in KNOWN_VARIABLES:
                errs.append(f"{ref(app)}: variable {n!r} is not one the app declares {sorted(KNOWN_VARIABLES)}")
            if ("value" in v) == ("valueFrom" in v):
                errs.append(f"{ref(app)}: variable {n!r} needs exactly one of value/valueFrom")
        for n in sorted({n for n in names if names.count(n) > 1}):
            errs.append(f"{ref(app)}: variable {n!r} bound twice")
        for n in sorted(REQUIRED_VARIABLES - set(names)):
            errs.append(f"{ref(app)}: required variable {n!r} is not bound")
        bound, env = resolve_var(ov, app, "environment")
        if bound and env is not None and env != ov.expect["environment"]:
            errs.append(f"{ref(app)}: environment={env!r}, overlay {ov.name} expects {ov.expect['environment']!r}")
        errs += check_redis_variables(ov, app)
        # payment_provider "sandbox" (the default) charges through the sandbox
        # composed into the payment components: no network, nothing to check.
        # "http" goes to payment_gateway_url, which must then be reachable.
        _, provider = resolve_var(ov, app, "payment_provider")
        if provider is not None and provider not in ("sandbox", "http"):
            errs.append(f"{ref(app)}: payment_provider={provider!r}; the app knows \"sandbox\" and \"http\"")
        bound, gw = resolve_var(ov, app, "payment_gateway_url")
        if provider == "http" and bound and gw is not None:
            host = urlsplit(gw).hostname or ""
            if host.endswith(".spin.internal"):
                comp = host[: -len(".spin.internal")]
                if comp not in effective_components(app):
                    errs.append(f"{ref(app)}: payment_gateway_url {gw} needs component {comp!r} in spec.components")
            else:
                pod = next((p for p in ov.pods() if p["owner"] is app), None)
                port = urlsplit(gw).port or (443 if gw.startswith("https") else 80)
                ext = {"kind": "external", "name": "gateway", "ip": "203.0.113.20", "labels": {}, "ports": []}
                if pod and not allowed(ov, pod, ext, port, "TCP"):
                    errs.append(f"{ref(app)}: payment_gateway_url {gw} is external but egress to it is not allowed")
    return errs


def c_components(ov: Overlay, t: Tools) -> list[str]:
    errs, runs = [], {}
    for app in ov.spinapps():
        comps = (app.get("spec") or {}).get("components")
        if comps is not None:
            for c in comps:
                if c not in COMPONENTS:
                    errs.append(f"{ref(app)}: unknown component {c!r} (known: {sorted(COMPONENTS)})")
            if len(set(comps)) != len(comps):
                errs.append(f"{ref(app)}: components listed twice")
        eff = effective_components(app)
        for c, deps in DEPENDS_ON.items():
            if c in eff and not deps <= eff:
                errs.append(f"{ref(app)}: component {c!r} depends on {sorted(deps - eff)}, which are not retained")
        for c in eff:
            runs.setdefault(c, []).append(name_of(app))
    for c in sorted(REDIS_TRIGGERED):
        if len(runs.get(c, [])) != 1:
            errs.append(f"Redis subscriber {c!r} runs in {runs.get(c, [])}; it must run in exactly one SpinApp")
    for c in sorted(COMPONENTS - set(runs)):
        errs.append(f"component {c!r} runs in no SpinApp")
    return errs


def c_probes(ov: Overlay, t: Tools) -> list[str]:
    errs = []
    for app in ov.spinapps():
        checks = (app.get("spec") or {}).get("checks") or {}
        for kind in ("readiness", "liveness"):
            path = ((checks.get(kind) or {}).get("httpGet") or {}).get("path")
            if path != HEALTH_PATH:
                errs.append(f"{ref(app)}: {kind} probe path is {path!r}, expected {HEALTH_PATH}")
    return errs


# The tag suffix of the shop's WASIp2 build (spin.p2.toml), the only one
# that Spin 3.x, and so containerd-shim-spin, can start.
WASIP2_TAG_SUFFIX = "-wasip2"


def c_executor_choice(ov: Overlay, t: Tools) -> list[str]:
    errs = [f"{ref(a)}: executor {(a.get('spec') or {}).get('executor')!r}, overlay {ov.name} expects {ov.expect['executor']!r}"
            for a in ov.spinapps() if (a.get("spec") or {}).get("executor") != ov.expect["executor"]]
    for a in ov.spinapps():
        spec = a.get("spec") or {}
        _, tag, _ = split_image(str(spec.get("image", "")))
        if spec.get("executor") == "containerd-shim-spin" and not (tag or "").endswith(WASIP2_TAG_SUFFIX):
            errs.append(f"{ref(a)}: containerd-shim-spin (Spin 3.6.3 inside) cannot start image {spec.get('image')!r}; "
                        f"use the WASIp2 build's artifact (tag ending in {WASIP2_TAG_SUFFIX!r}, pushed from spin.p2.toml)")
    return errs


def c_scaling(ov: Overlay, t: Tools) -> list[str]:
    errs = []
    apps = {name_of(a): a for a in ov.spinapps()}
    autoscaled = {n for n, a in apps.items() if (a.get("spec") or {}).get("enableAutoscaling")}
    if autoscaled != ov.expect["autoscaled"]:
        errs.append(f"autoscaled SpinApps are {sorted(autoscaled)}, overlay {ov.name} expects {sorted(ov.expect['autoscaled'])}")
    scalers: dict[str, list[str]] = {}
    hpa_min: dict[str, int] = {}
    for h in ov.of_kind("HorizontalPodAutoscaler"):
        spec = h.get("spec") or {}
        tgt = spec.get("scaleTargetRef") or {}
        if tgt.get("kind") != "Deployment" or tgt.get("apiVersion") != "apps/v1":
            errs.append(f"{ref(h)}: must target apps/v1 Deployment (SpinApp has no scale subresource)")
            continue
        app = apps.get(tgt.get("name", ""))
        if app is None:
            errs.append(f"{ref(h)}: targets Deployment {tgt.get('name')!r}, which no SpinApp creates")
            continue
        scalers.setdefault(name_of(app), []).append(ref(h))
        hpa_min[name_of(app)] = spec.get("minReplicas", 1)
        if name_of(app) not in autoscaled:
            errs.append(f"{ref(h)}: SpinApp {name_of(app)} lacks enableAutoscaling; the operator would reset replicas")
        if not 1 <= spec.get("minReplicas", 1) <= spec.get("maxReplicas", 0):
            errs.append(f"{ref(h)}: need 1 <= minReplicas <= maxReplicas")
        requests = (((app.get("spec") or {}).get("resources") or {}).get("requests") or {})
        for m in spec.get("metrics") or []:
            res = m.get("resource") or {}
            if m.get("type") == "Resource" and (res.get("target") or {}).get("type") == "Utilization" \
                    and res.get("name") not in requests:
                errs.append(f"{ref(h)}: {res.get('name')} utilisation needs resources.requests.{res.get('name')} on {ref(app)}")
    for so in ov.of_kind("ScaledObject"):
        tgt = ((so.get("spec") or {}).get("scaleTargetRef") or {}).get("name", "")
        scalers.setdefault(tgt, []).append(ref(so))
    for n in autoscaled:
        if len(scalers.get(n, [])) != 1:
            errs.append(f"SpinApp/{n}: enableAutoscaling needs exactly one HPA/ScaledObject, found {scalers.get(n, [])}")
    for n, a in apps.items():
        if effective_components(a) & REDIS_TRIGGERED:
            if n in autoscaled:
                errs.append(f"SpinApp/{n}: runs Redis subscribers and autoscales (every replica gets every message)")
            elif (a.get("spec") or {}).get("replicas", 0) > MAX_SUBSCRIBER_REPLICAS:
                errs.append(f"SpinApp/{n}: {a['spec']['replicas']} replicas of Redis subscribers (max {MAX_SUBSCRIBER_REPLICAS})")
    pods = ov.pods()
    for pdb in ov.of_kind("PodDisruptionBudget"):
        spec = pdb.get("spec") or {}
        selected = [p for p in pods if selector_matches(spec.get("selector") or {}, p["labels"])]
        if not selected:
            errs.append(f"{ref(pdb)}: selector selects no pods")
            continue
        owner = selected[0]["owner"]
        if owner.get("kind") == "SpinApp" and isinstance(spec.get("minAvailable"), int):
            n = name_of(owner)
            floor = hpa_min.get(n) if n in autoscaled else (owner.get("spec") or {}).get("replicas", 0)
            if floor is not None and spec["minAvailable"] >= floor:
                errs.append(f"{ref(pdb)}: minAvailable {spec['minAvailable']} >= {floor} replicas blocks every drain")
    return errs


_CRON_FIELD = re.compile(r"^(\*|\d+(-\d+)?)(/\d+)?(,(\*|\d+(-\d+)?)(/\d+)?)*$")


def c_cronjob(ov: Overlay, t: Tools) -> list[str]:
    errs = []
    cron = ov.get("CronJob", RECONCILE_CRON)
    if cron is None:
        return [f"CronJob {RECONCILE_CRON} missing"]
    spec = cron.get("spec") or {}
    fields = str(spec.get("schedule", "")).split()
    if len(fields) != 5 or not all(_CRON_FIELD.match(f) for f in fields):
        errs.append(f"{ref(cron)}: schedule {spec.get('schedule')!r} is not a 5-field cron expression")
    if spec.get("concurrencyPolicy") != "Forbid":
        errs.append(f"{ref(cron)}: concurrencyPolicy is {spec.get('concurrencyPolicy')!r}, expected Forbid")
    if spec.get("suspend"):
        errs.append(f"{ref(cron)}: suspended")
    job = (spec.get("jobTemplate") or {}).get("spec") or {}
    m = re.fullmatch(r"\*/(\d+)", fields[0]) if fields else None
    deadline = job.get("activeDeadlineSeconds")
    if deadline is None:
        errs.append(f"{ref(cron)}: no activeDeadlineSeconds (a hung run would block every later one under Forbid)")
    elif m and deadline > int(m.group(1)) * 60:
        errs.append(f"{ref(cron)}: activeDeadlineSeconds {deadline} exceeds the {m.group(1)}-minute interval")
    pod_spec = (job.get("template") or {}).get("spec") or {}
    containers = pod_spec.get("containers") or []
    if len(containers) != 1:
        return errs + [f"{ref(cron)}: expected one container"]
    c = containers[0]
    script = " ".join(map(str, (c.get("command") or []) + (c.get("args") or [])))
    env = {e.get("name"): e for e in c.get("env") or []}
    if not re.search(r"(-X|--request)\s+POST", script):
        errs.append(f"{ref(cron)}: does not POST")
    if "/orders/reconcile" not in script:
        errs.append(f"{ref(cron)}: does not call /orders/reconcile")
    if "Bearer" not in script:
        errs.append(f"{ref(cron)}: sends no Bearer token")
    url = (env.get("SHOP_URL") or {}).get("value")
    if url is None:
        found = re.search(r"https?://[^\s\"']+", script)
        url = found.group(0) if found else None
    if url is None:
        errs.append(f"{ref(cron)}: no target URL")
    else:
        u = urlsplit(url)
        svc = ov.service_for_host(u.hostname or "")
        if svc is None:
            errs.append(f"{ref(cron)}: {url} is not a Service in namespace {ov.namespace}")
        else:
            port = u.port or 80
            if not any(p.get("port") == port for p in (svc.get("spec") or {}).get("ports") or []):
                errs.append(f"{ref(cron)}: Service {name_of(svc)} has no port {port}")
            backends = ov.pods_of_service(svc)
            if not any(p["owner"].get("kind") == "SpinApp" and "order" in effective_components(p["owner"]) for p in backends):
                errs.append(f"{ref(cron)}: {url} does not reach a SpinApp running component 'order'")
            app = next((p["owner"] for p in backends if p["owner"].get("kind") == "SpinApp"), None)
            tok = ((env.get("ADMIN_TOKEN") or {}).get("valueFrom") or {}).get("secretKeyRef")
            app_tok = (((spin_var(app, "admin_token") or {}) if app else {}).get("valueFrom") or {}).get("secretKeyRef")
            if not tok:
                errs.append(f"{ref(cron)}: ADMIN_TOKEN does not come from a Secret")
            elif not app_tok or (tok.get("name"), tok.get("key")) != (app_tok.get("name"), app_tok.get("key")):
                errs.append(f"{ref(cron)}: ADMIN_TOKEN {tok} differs from the app's admin_token binding {app_tok}")
    return errs


def c_services(ov: Overlay, t: Tools) -> list[str]:
    errs = []
    for svc in ov.of_kind("Service"):
        pods = ov.pods_of_service(svc)
        if not pods:
            errs.append(f"{ref(svc)}: selector {(svc.get('spec') or {}).get('selector')} selects no pods")
            continue
        for p in (svc.get("spec") or {}).get("ports") or []:
            tp = p.get("targetPort", p.get("port"))
            if isinstance(tp, str) and not any(port[0] == tp for pod in pods for port in pod["ports"]):
                errs.append(f"{ref(svc)}: targetPort {tp!r} is not a named port of its pods")
    for sts in ov.of_kind("StatefulSet"):
        sname = (sts.get("spec") or {}).get("serviceName")
        svc = ov.get("Service", sname or "")
        if svc is None or (svc.get("spec") or {}).get("clusterIP") != "None":
            errs.append(f"{ref(sts)}: serviceName {sname!r} is not a headless Service")
        sel = ((sts.get("spec") or {}).get("selector") or {})
        labels = (meta(((sts.get("spec") or {}).get("template") or {})).get("labels") or {})
        if not selector_matches(sel, {str(k): str(v) for k, v in labels.items()}):
            errs.append(f"{ref(sts)}: selector does not match its pod template")
    return errs


# --- NetworkPolicy model -------------------------------------------------

def _policy_types(p: dict) -> list[str]:
    spec = p.get("spec") or {}
    return spec.get("policyTypes") or (["Ingress"] + (["Egress"] if "egress" in spec else []))


def _namespaces(ov: Overlay) -> dict[str, dict]:
    out = {n: {"kubernetes.io/metadata.name": n} for n in ("kube-system", "ingress-nginx", "default")}
    labels = {"kubernetes.io/metadata.name": ov.namespace}
    for o in ov.of_kind("Namespace"):
        labels.update({str(k): str(v) for k, v in (meta(o).get("labels") or {}).items()})
    out[ov.namespace] = labels
    return out


def _peer_matches(peer: dict, ep: dict, policy_ns: str, namespaces: dict) -> bool:
    if "ipBlock" in peer:
        if "ip" not in ep:
            return False
        ip = ipaddress.ip_address(ep["ip"])
        block = peer["ipBlock"]
        return ip in ipaddress.ip_network(block["cidr"]) and not any(
            ip in ipaddress.ip_network(x) for x in block.get("except") or [])
    if ep["kind"] != "pod":
        return False
    if "namespaceSelector" in peer:
        ns_ok = selector_matches(peer["namespaceSelector"], namespaces.get(ep["namespace"], {}))
    else:
        ns_ok = ep["namespace"] == policy_ns
    return ns_ok and selector_matches(peer.get("podSelector"), ep["labels"])


def _port_matches(ports: list | None, dst: dict, port: int, proto: str) -> bool:
    if not ports:
        return True
    for p in ports:
        if p.get("protocol", "TCP") != proto:
            continue
        pp = p.get("port")
        if pp is None:
            return True
        if isinstance(pp, str):
            if any(n == pp and num == port and pr == proto for n, num, pr in dst.get("ports", [])):
                return True
        elif pp <= port <= p.get("endPort", pp):
            return True
    return False


def _side_allows(ov: Overlay, ep: dict, other: dict, port: int, proto: str, direction: str) -> bool:
    if ep["kind"] != "pod":
        return True
    namespaces = _namespaces(ov)
    policies = [p for p in ov.of_kind("NetworkPolicy") if ns_of(p) == ep["namespace"]
                and selector_matches((p.get("spec") or {}).get("podSelector") or {}, ep["labels"])
                and direction in _policy_types(p)]
    if not policies:
        return True
    rules_key, peers_key = ("egress", "to") if direction == "Egress" else ("ingress", "from")
    dst = other if direction == "Egress" else ep
    for p in policies:
        for rule in (p.get("spec") or {}).get(rules_key) or []:
            peers = rule.get(peers_key)
            if peers and not any(_peer_matches(x, other, ns_of(p), namespaces) for x in peers):
                continue
            if _port_matches(rule.get("ports"), dst, port, proto):
                return True
    return False


def allowed(ov: Overlay, src: dict, dst: dict, port: int, proto: str) -> bool:
    return _side_allows(ov, src, dst, port, proto, "Egress") and _side_allows(ov, dst, src, port, proto, "Ingress")


def _extra_endpoints() -> dict[str, dict]:
    return {
        "kube-dns": {"kind": "pod", "name": "kube-dns", "namespace": "kube-system", "labels": {"k8s-app": "kube-dns"},
                     "ports": [("dns", 53, "UDP"), ("dns-tcp", 53, "TCP")], "ip": "10.244.0.10"},
        "ingress-client": {"kind": "pod", "name": "ingress-nginx-controller", "namespace": "ingress-nginx",
                           "labels": {"app.kubernetes.io/name": "ingress-nginx"}, "ports": [], "ip": "10.244.0.20"},
        "other-pod": {"kind": "pod", "name": "unrelated", "namespace": "default", "labels": {"app": "other"},
                      "ports": [("http", 8080, "TCP")], "ip": "10.244.0.30"},
        "external": {"kind": "external", "name": "internet", "labels": {}, "ports": [], "ip": "203.0.113.10"},
    }


def c_netpol_selects(ov: Overlay, t: Tools) -> list[str]:
    errs = []
    pods = ov.pods()
    extra = list(_extra_endpoints().values())
    namespaces = _namespaces(ov)
    for p in ov.of_kind("NetworkPolicy"):
        spec = p.get("spec") or {}
        sel = spec.get("podSelector") or {}
        if sel and not any(selector_matches(sel, x["labels"]) for x in pods if x["namespace"] == ns_of(p)):
            errs.append(f"{ref(p)}: podSelector {sel} selects no pod (SpinApp pods carry {OP_APP_LABEL}=<name>)")
        for rule in (spec.get("ingress") or []) + (spec.get("egress") or []):
            for peer in (rule.get("from") or []) + (rule.get("to") or []):
                if "ipBlock" in peer:
                    continue
                if not any(_peer_matches(peer, x, ns_of(p), namespaces) for x in pods + extra):
                    errs.append(f"{ref(p)}: peer {peer} matches no pod")
    return errs


def c_netpol_connectivity(ov: Overlay, t: Tools) -> list[str]:
    errs = []
    roles = dict(_extra_endpoints())
    for pod in ov.pods():
        o = pod["owner"]
        if o.get("kind") == "SpinApp" and name_of(o) in (HTTP_APP, WORKER_APP):
            roles[name_of(o)] = pod
        elif o.get("kind") == "StatefulSet" and name_of(o) == REDIS_STS:
            roles["redis"] = pod
        elif o.get("kind") == "CronJob" and name_of(o) == RECONCILE_CRON:
            roles["reconcile"] = pod
    missing = {HTTP_APP, WORKER_APP, "redis", "reconcile"} - set(roles)
    if missing:
        return [f"workloads missing for the connectivity model: {sorted(missing)}"]
    reg = ov.expect["registry_egress"]
    expectations = [
        ("ingress-client", HTTP_APP, 80, "TCP", True), ("other-pod", HTTP_APP, 80, "TCP", True),
        ("reconcile", HTTP_APP, 80, "TCP", True), (HTTP_APP, "redis", 6379, "TCP", True),
        (WORKER_APP, "redis", 6379, "TCP", True),
        ("ingress-client", "redis", 6379, "TCP", False), ("other-pod", "redis", 6379, "TCP", False),
        ("reconcile", "redis", 6379, "TCP", False), ("ingress-client", WORKER_APP, 80, "TCP", False),
        (WORKER_APP, HTTP_APP, 80, "TCP", False), ("redis", HTTP_APP, 80, "TCP", False),
        (HTTP_APP, "other-pod", 8080, "TCP", False), ("redis", "external", 443, "TCP", False),
        ("reconcile", "external", 443, "TCP", False), (HTTP_APP, "external", 443, "TCP", reg),
        (WORKER_APP, "external", 443, "TCP", reg), (HTTP_APP, "external", 80, "TCP", False),
    ]
    for src in (HTTP_APP, WORKER_APP, "redis", "reconcile"):
        expectations.append((src, "kube-dns", 53, "UDP", True))
        expectations.append((src, "kube-dns", 53, "TCP", True))
    for src, dst, port, proto, want in expectations:
        got = allowed(ov, roles[src], roles[dst], port, proto)
        if got != want:
            errs.append(f"{src} -> {dst}:{port}/{proto} is {'allowed' if got else 'denied'}, should be {'allowed' if want else 'denied'}")
    return errs


CHECKS: list[tuple[str, Check]] = [
    ("identity", c_identity), ("spinkube-schema", c_spinkube_schema), ("k8s-schema", c_k8s_schema),
    ("webhook-replicas", c_webhook_replicas), ("webhook-executor", c_webhook_executor),
    ("webhook-executor-runtime", c_webhook_executor_runtime),
    ("webhook-invocation-limits", c_webhook_invocation_limits), ("resources", c_resources),
    ("pod-labels", c_pod_labels), ("images", c_images), ("references", c_references),
    ("runtime-config", c_runtime_config), ("variables", c_variables), ("components", c_components),
    ("probes", c_probes), ("executor-choice", c_executor_choice), ("scaling", c_scaling),
    ("cronjob", c_cronjob), ("services", c_services), ("netpol-selects", c_netpol_selects),
    ("netpol-connectivity", c_netpol_connectivity),
]


def run_checks(ov: Overlay, tools: Tools) -> dict[str, list[str]]:
    out = {}
    for rule, fn in CHECKS:
        try:
            out[rule] = fn(ov, tools)
        except Exception as e:  # a crash in a check is a failure of that check
            out[rule] = [f"check crashed: {type(e).__name__}: {e}"]
    return out


# ----------------------------------------------------------------- repo-level checks

def parse_yaml_text(text: str, where: str) -> list[str]:
    try:
        list(yaml.safe_load_all(text))
        return []
    except yaml.YAMLError as e:
        return [f"{where}: {str(e).splitlines()[0]} {getattr(e, 'problem_mark', '')}".strip()]


def check_files_parse() -> list[str]:
    errs = []
    files = sorted(p for p in DEPLOY.rglob("*") if p.is_file())
    for p in files:
        rel = p.relative_to(REPO)
        if p.suffix in (".yaml", ".yml") or p.name == "Kustomization":
            errs += parse_yaml_text(p.read_text(), str(rel))
        elif p.suffix == ".toml":
            try:
                tomllib.loads(p.read_text())
            except tomllib.TOMLDecodeError as e:
                errs.append(f"{rel}: {e}")
    if not any(p.suffix in (".yaml", ".yml") for p in files):
        errs.append("no YAML files under deploy/")
    return errs


def check_containerfile(text: str) -> list[str]:
    errs = []
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith("#")]
    froms = [ln for ln in lines if ln.upper().startswith("FROM ")]
    if len(froms) < 2 or "rust:1.95-slim-bookworm" not in froms[0] or " AS " not in froms[0].upper():
        errs.append("first stage must be FROM rust:1.95-slim-bookworm AS <name>")
    if not froms or "debian:bookworm-slim" not in froms[-1]:
        errs.append("runtime stage must be FROM debian:bookworm-slim")
    # The image ships the profile the benchmarks measure (Cargo.toml's `fastest`).
    if not any("cargo build" in ln and "--profile fastest" in ln and "-p wharf" in ln for ln in lines):
        errs.append("no `cargo build --profile fastest -p wharf`")
    if not any("target/fastest/wharf" in ln for ln in lines):
        errs.append("the binary installed is not target/fastest/wharf")
    if not any("ca-certificates" in ln for ln in lines):
        errs.append("runtime stage does not install ca-certificates")
    users = [ln for ln in lines if ln.upper().startswith("USER ")]
    if not users or not users[-1].split()[1].startswith("65532"):
        errs.append("final USER is not 65532")
    if 'ENTRYPOINT ["/usr/local/bin/wharf"]' not in lines:
        errs.append('no ENTRYPOINT ["/usr/local/bin/wharf"]')
    if "EXPOSE 80" not in lines:
        errs.append("no EXPOSE 80")
    return errs


def find_binary_renderer() -> list[str] | None:
    if os.environ.get("DEPLOY_RENDERER") == "python":
        return None
    if shutil.which("kustomize"):
        return ["kustomize", "build"]
    if shutil.which("kubectl"):
        return ["kubectl", "kustomize"]
    return None


def render_binary(cmd: list[str], directory: Path) -> list[dict]:
    proc = subprocess.run(cmd + [str(directory)], capture_output=True, text=True, timeout=60)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr.strip() or f"exit {proc.returncode}")
    return [d for d in yaml.safe_load_all(proc.stdout) if d is not None]


def normalize(objs: list[dict]) -> list[dict]:
    out = []
    for o in copy.deepcopy(objs):
        if o.get("kind") == "Secret" and isinstance(o.get("data"), dict):
            o["data"] = {k: base64.b64decode("".join(str(v).split())).decode() for k, v in o["data"].items()}
        out.append(o)
    return sorted(out, key=lambda o: (str(o.get("apiVersion")), str(o.get("kind")), ns_of(o), name_of(o)))


def diff_renders(a: list[dict], b: list[dict]) -> list[str]:
    na, nb = normalize(a), normalize(b)
    ka = {(o.get("kind"), ns_of(o), name_of(o)): o for o in na}
    kb = {(o.get("kind"), ns_of(o), name_of(o)): o for o in nb}
    errs = [f"only in kustomize output: {k}" for k in sorted(set(ka) - set(kb), key=str)]
    errs += [f"only in Python render: {k}" for k in sorted(set(kb) - set(ka), key=str)]
    errs += [f"differs: {k}" for k in sorted(set(ka) & set(kb), key=str) if ka[k] != kb[k]]
    return errs


# ----------------------------------------------------------------- self-test

def _find(ov: Overlay, kind: str, name: str) -> dict:
    o = ov.get(kind, name)
    if o is None:
        raise KeyError(f"{kind}/{name} not in overlay {ov.name}")
    return o


def _spec(ov: Overlay, kind: str, name: str) -> dict:
    return _find(ov, kind, name).setdefault("spec", {})


def _drop(ov: Overlay, kind: str, name: str) -> None:
    ov.objects.remove(_find(ov, kind, name))


def _set_secret(ov: Overlay, name: str, key: str, value: str) -> None:
    _find(ov, "Secret", name)["data"][key] = base64.b64encode(value.encode()).decode()


def _cron_container(ov: Overlay) -> dict:
    return _spec(ov, "CronJob", RECONCILE_CRON)["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]


MUTATIONS: list[tuple[str, str, str, Callable[[Overlay], None]]] = [
    ("SpinApp field typo enableAutoScaling", "prod", "spinkube-schema",
     lambda ov: _spec(ov, "SpinApp", HTTP_APP).update(enableAutoScaling=True)),
    ("SpinApp replicas as a string", "dev", "spinkube-schema",
     lambda ov: _spec(ov, "SpinApp", HTTP_APP).update(replicas="1")),
    ("SpinAppExecutor field typo", "dev", "spinkube-schema",
     lambda ov: _spec(ov, "SpinAppExecutor", "containerd-shim-spin")["deploymentConfig"].update(runtimeClass="x")),
    ("CronJob field typo", "dev", "k8s-schema",
     lambda ov: _spec(ov, "CronJob", RECONCILE_CRON).update(concurrencypolicy="Forbid")),
    ("StatefulSet with unknown apiVersion", "dev", "k8s-schema",
     lambda ov: _find(ov, "StatefulSet", REDIS_STS).update(apiVersion="apps/v2")),
    ("Service port as a non-numeric string", "prod", "k8s-schema",
     lambda ov: _spec(ov, "Service", "redis")["ports"][0].update(port="6379x")),
    ("replicas set together with enableAutoscaling", "prod", "webhook-replicas",
     lambda ov: _spec(ov, "SpinApp", HTTP_APP).update(replicas=3)),
    ("replicas missing without autoscaling", "dev", "webhook-replicas",
     lambda ov: _spec(ov, "SpinApp", HTTP_APP).pop("replicas")),
    ("executor that does not exist", "dev", "webhook-executor",
     lambda ov: _spec(ov, "SpinApp", HTTP_APP).update(executor="containerd-shim-spin-v2")),
    ("executor in another namespace", "dev", "webhook-executor",
     lambda ov: _find(ov, "SpinAppExecutor", "containerd-shim-spin")["metadata"].update(namespace="default")),
    ("executor with runtimeClassName and spinImage", "dev", "webhook-executor-runtime",
     lambda ov: _spec(ov, "SpinAppExecutor", "containerd-shim-spin")["deploymentConfig"].update(spinImage="x/y:1")),
    ("executor with neither runtimeClassName nor spinImage", "wharf", "webhook-executor-runtime",
     lambda ov: _spec(ov, "SpinAppExecutor", "wharf")["deploymentConfig"].pop("spinImage")),
    ("RuntimeClass not in deploy/cluster", "dev", "webhook-executor-runtime",
     lambda ov: _spec(ov, "SpinAppExecutor", "containerd-shim-spin")["deploymentConfig"].update(runtimeClassName="wasmtime-spin")),
    ("invocation memory above the memory limit", "prod", "webhook-invocation-limits",
     lambda ov: _spec(ov, "SpinApp", HTTP_APP)["invocationLimits"].update(memory="1Gi")),
    ("invocation memory in decimal units above the limit (200M > 128Mi)", "dev", "webhook-invocation-limits",
     lambda ov: _spec(ov, "SpinApp", WORKER_APP)["invocationLimits"].update(memory="200M")),
    ("invocation memory above the request when there is no limit", "dev", "webhook-invocation-limits",
     lambda ov: (_spec(ov, "SpinApp", HTTP_APP)["resources"].pop("limits"),
                 _spec(ov, "SpinApp", HTTP_APP)["invocationLimits"].update(memory="65Mi"))),
    ("invocation memory that is not a quantity", "dev", "webhook-invocation-limits",
     lambda ov: _spec(ov, "SpinApp", HTTP_APP)["invocationLimits"].update(memory="32MB")),
    ("request above limit", "dev", "resources",
     lambda ov: _spec(ov, "SpinApp", HTTP_APP)["resources"]["requests"].update(cpu="2")),
    ("podLabels overriding the operator's label", "dev", "pod-labels",
     lambda ov: _spec(ov, "SpinApp", HTTP_APP)["podLabels"].update({OP_APP_LABEL: "x"})),
    ("app image on :latest", "dev", "images",
     lambda ov: _spec(ov, "SpinApp", HTTP_APP).update(image="ghcr.io/example/shop:latest")),
    ("two SpinApps on different releases", "prod", "images",
     lambda ov: _spec(ov, "SpinApp", WORKER_APP).update(image="ghcr.io/example/shop:0.0.9")),
    ("Secret key typo in a variable", "dev", "references",
     lambda ov: spin_var(_find(ov, "SpinApp", HTTP_APP), "admin_token")["valueFrom"]["secretKeyRef"].update(key="admin-token")),
    ("required Secret not declared in prod", "prod", "references",
     lambda ov: ov.required.pop("redis-auth")),
    ("inline keyValueStores next to loadFromSecret", "dev", "runtime-config",
     lambda ov: _spec(ov, "SpinApp", HTTP_APP)["runtimeConfig"].update(keyValueStores=[{"name": "default", "type": "redis"}])),
    ("runtime config Redis host that is no Service", "dev", "runtime-config",
     lambda ov: _set_secret(ov, "shop-runtime-config", "runtime-config.toml",
                            '[key_value_store.default]\ntype = "redis"\nurl = "redis://:dev-redis-password@redis-master:6379/0"\n')),
    ("runtime config Redis password mismatch", "dev", "runtime-config",
     lambda ov: _set_secret(ov, "shop-runtime-config", "runtime-config.toml",
                            '[key_value_store.default]\ntype = "redis"\nurl = "redis://:wrong@redis:6379/0"\n')),
    ("redis_host as a URL with a database path", "dev", "variables",
     lambda ov: _find(ov, "ConfigMap", "shop-config")["data"].update(redis_host="redis://redis:6379/0")),
    ("redis_host naming no Service", "dev", "variables",
     lambda ov: _find(ov, "ConfigMap", "shop-config")["data"].update(redis_host="redis-master:6379")),
    ("redis_password that is not URL-safe", "dev", "variables",
     lambda ov: [_set_secret(ov, "redis-auth", "password", "p@ss/word")]),
    ("redis_password from another Secret than Redis's", "prod", "variables",
     lambda ov: spin_var(_find(ov, "SpinApp", WORKER_APP), "redis_password")["valueFrom"]["secretKeyRef"].update(
         name="shop-secrets", key="redis_password")),
    ("runtime config without a default Redis store", "dev", "runtime-config",
     lambda ov: _set_secret(ov, "shop-runtime-config", "runtime-config.toml",
                            '[key_value_store.default]\ntype = "spin"\n')),
    ("environment value wrong for the overlay", "prod", "variables",
     lambda ov: _find(ov, "ConfigMap", "shop-config")["data"].update(environment="dev")),
    ("variable name typo", "dev", "variables",
     lambda ov: _spec(ov, "SpinApp", HTTP_APP)["variables"].append({"name": "admin-token", "value": "x"})),
    ("required variable unbound", "dev", "variables",
     lambda ov: _spec(ov, "SpinApp", WORKER_APP).update(
         variables=[v for v in _spec(ov, "SpinApp", WORKER_APP)["variables"] if v["name"] != "admin_token"])),
    ("gateway-sandbox dropped while payment_provider=http and payment_gateway_url points at it", "dev", "variables",
     lambda ov: (_find(ov, "ConfigMap", "shop-config")["data"].update(payment_provider="http"),
                 _spec(ov, "SpinApp", WORKER_APP)["components"].remove("gateway-sandbox"))),
    ("payment_provider names no provider the app has", "prod", "variables",
     lambda ov: _find(ov, "ConfigMap", "shop-config")["data"].update(payment_provider="stripe")),
    ("Redis subscriber in both SpinApps", "dev", "components",
     lambda ov: _spec(ov, "SpinApp", HTTP_APP)["components"].append("payment-worker")),
    ("unknown component id", "dev", "components",
     lambda ov: _spec(ov, "SpinApp", HTTP_APP)["components"].append("orders")),
    ("dependency not retained", "dev", "components",
     lambda ov: _spec(ov, "SpinApp", HTTP_APP)["components"].remove("inventory")),
    ("liveness probe on the app's own /health", "dev", "probes",
     lambda ov: _spec(ov, "SpinApp", HTTP_APP)["checks"]["liveness"]["httpGet"].update(path="/health")),
    ("wrong executor for the overlay", "wharf", "executor-choice",
     lambda ov: _spec(ov, "SpinApp", HTTP_APP).update(executor="containerd-shim-spin")),
    ("the WASIp3 artifact on containerd-shim-spin", "prod", "executor-choice",
     lambda ov: [a["spec"].update(image="ghcr.io/example/shop:0.1.0") for a in ov.spinapps()]),
    ("HPA targeting a Deployment no SpinApp creates", "prod", "scaling",
     lambda ov: _spec(ov, "HorizontalPodAutoscaler", HTTP_APP)["scaleTargetRef"].update(name="shop-http")),
    ("HPA on a SpinApp without enableAutoscaling", "prod", "scaling",
     lambda ov: _spec(ov, "SpinApp", HTTP_APP).update(enableAutoscaling=False, replicas=2)),
    ("HPA on CPU without a CPU request", "prod", "scaling",
     lambda ov: _spec(ov, "SpinApp", HTTP_APP)["resources"]["requests"].pop("cpu")),
    ("subscribers scaled out", "prod", "scaling",
     lambda ov: _spec(ov, "SpinApp", WORKER_APP).update(replicas=5)),
    ("CronJob without Forbid", "dev", "cronjob",
     lambda ov: _spec(ov, "CronJob", RECONCILE_CRON).update(concurrencyPolicy="Allow")),
    ("CronJob token from a different Secret key", "dev", "cronjob",
     lambda ov: next(e for e in _cron_container(ov)["env"] if e["name"] == "ADMIN_TOKEN")["valueFrom"]["secretKeyRef"].update(key="jwt_verification_key")),
    ("CronJob calling the worker", "dev", "cronjob",
     lambda ov: next(e for e in _cron_container(ov)["env"] if e["name"] == "SHOP_URL").update(value="http://shop-worker")),
    ("Service selecting nothing", "dev", "services",
     lambda ov: _spec(ov, "Service", "redis").update(selector={"app.kubernetes.io/name": "redis-server"})),
    ("NetworkPolicy podSelector typo", "prod", "netpol-selects",
     lambda ov: _spec(ov, "NetworkPolicy", "redis-from-spin-apps")["podSelector"]["matchLabels"].update({"app.kubernetes.io/name": "rediss"})),
    ("NetworkPolicy on a label the operator does not set", "dev", "netpol-selects",
     lambda ov: _spec(ov, "NetworkPolicy", "shop-http-ingress").update(podSelector={"matchLabels": {"app": "shop"}})),
    ("DNS egress removed", "dev", "netpol-connectivity",
     lambda ov: _drop(ov, "NetworkPolicy", "allow-dns-egress")),
    ("Redis open to every pod", "dev", "netpol-connectivity",
     lambda ov: _spec(ov, "NetworkPolicy", "redis-from-spin-apps")["ingress"][0].pop("from")),
    ("default deny removed", "prod", "netpol-connectivity",
     lambda ov: _drop(ov, "NetworkPolicy", "default-deny-all")),
    ("registry egress missing with the wharf executor", "wharf", "netpol-connectivity",
     lambda ov: _drop(ov, "NetworkPolicy", "spin-apps-registry-egress")),
    ("duplicate object", "dev", "identity",
     lambda ov: ov.objects.append(copy.deepcopy(_find(ov, "ServiceAccount", "shop-app")))),
]


def self_tests(overlays: dict[str, Overlay], tools: Tools) -> list[tuple[str, bool, str]]:
    results = []
    for label, name, rule, mutate in MUTATIONS:
        base = overlays.get(name)
        if base is None:
            results.append((label, False, f"overlay {name} was not rendered"))
            continue
        ov = Overlay(base.name, base.path, copy.deepcopy(base.objects), base.expect, base.cluster,
                     copy.deepcopy(base.required))
        try:
            mutate(ov)
        except Exception as e:
            results.append((label, False, f"mutation failed: {type(e).__name__}: {e}"))
            continue
        found = run_checks(ov, tools)
        if found.get(rule):
            results.append((label, True, f"[{name}] {rule}: {found[rule][0]}"))
        else:
            failing = sorted(r for r, e in found.items() if e)
            results.append((label, False, f"[{name}] {rule} did not report it (failing instead: {failing})"))
    # Repo-level rules.
    bad = parse_yaml_text("spec:\n  replicas: [1\n", "<mutated>")
    results.append(("YAML that does not parse", bool(bad), f"yaml-parse: {bad[0] if bad else 'not reported'}"))
    with tempfile.TemporaryDirectory() as d:
        Path(d, "kustomization.yaml").write_text("commonLabels:\n  a: b\nresources: []\n")
        try:
            kustomize_lite.build(d)
            results.append(("unsupported kustomize feature in the Python renderer", False, "render: not reported"))
        except kustomize_lite.Unsupported as e:
            results.append(("unsupported kustomize feature in the Python renderer", True, f"render: {e}"))
    if "prod" in overlays:
        other = copy.deepcopy(overlays["prod"].objects)
        _s = next(o for o in other if o.get("kind") == "SpinApp")
        _s["spec"]["image"] = "ghcr.io/example/shop:9.9.9"
        d = diff_renders(overlays["prod"].objects, other)
        results.append(("renderers disagreeing", bool(d), f"renderer-agreement: {d[0] if d else 'not reported'}"))
    cf = (DEPLOY / "wharf" / "Containerfile")
    if cf.is_file():
        bad = check_containerfile(cf.read_text().replace("USER 65532:65532", "USER root"))
        results.append(("Containerfile running as root", bool(bad), f"containerfile: {bad[0] if bad else 'not reported'}"))
    return results


# ----------------------------------------------------------------- main

def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--self-test", action="store_true", help="also mutate rendered objects and check every rule fires")
    ap.add_argument("--renderer", choices=["auto", "python"], default="auto",
                    help="auto: a kustomize/kubectl binary if present (cross-checked with the Python renderer)")
    ap.add_argument("--k8s-version", default=K8S_VERSION)
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args()
    started = time.monotonic()

    schema_dir = Path(os.environ.get("SPINKUBE_SCHEMAS", DEFAULT_SCHEMAS))
    try:
        tools = Tools(SpinKubeSchemas(schema_dir), K8sSchemas(args.k8s_version))
    except FileNotFoundError as e:
        print(f"FATAL: SpinKube JSON Schema not found: {e}\n"
              f"       set SPINKUBE_SCHEMAS to the directory holding core.spinkube.dev/*-strict.json "
              f"(default {DEFAULT_SCHEMAS})", file=sys.stderr)
        return 2
    except (ImportError, RuntimeError) as e:
        print(f"FATAL: kubernetes-validate unusable: {e}", file=sys.stderr)
        return 2

    results: list[tuple[str, str, list[str]]] = []   # (scope, check, errors)
    notes = [load_app_facts()]
    binary = None if args.renderer == "python" else find_binary_renderer()
    notes.append(f"renderer: {' '.join(binary)} (cross-checked with tests/deploy/kustomize_lite.py)" if binary
                 else "renderer: tests/deploy/kustomize_lite.py (no kustomize/kubectl binary found)")
    notes.append(f"SpinKube schemas: {schema_dir}; Kubernetes schemas: kubernetes-validate {tools.k8s.version} (strict)")

    results.append(("deploy/", "yaml-parse", check_files_parse()))
    cf = DEPLOY / "wharf" / "Containerfile"
    results.append(("deploy/wharf", "containerfile",
                    check_containerfile(cf.read_text()) if cf.is_file() else ["deploy/wharf/Containerfile missing"]))

    def render(path: Path, scope: str) -> list[dict] | None:
        errs, objs = [], None
        try:
            py = kustomize_lite.build(str(path))
            objs = py
        except (kustomize_lite.Unsupported, kustomize_lite.RenderError, OSError, yaml.YAMLError) as e:
            errs.append(f"Python renderer: {e}")
            py = None
        if binary:
            try:
                real = render_binary(binary, path)
                objs = real
                if py is not None:
                    results.append((scope, "renderer-agreement", diff_renders(real, py)))
            except (RuntimeError, subprocess.TimeoutExpired, yaml.YAMLError) as e:
                errs.append(f"{' '.join(binary)}: {e}")
                objs = None
        results.append((scope, "render", errs))
        return objs

    cluster = render(DEPLOY / "cluster", "deploy/cluster") or []
    cluster_errs = []
    for o in cluster:
        cluster_errs += tools.k8s.validate(o)
    if not any(o.get("kind") == "RuntimeClass" for o in cluster):
        cluster_errs.append("deploy/cluster renders no RuntimeClass")
    results.append(("deploy/cluster", "k8s-schema", cluster_errs))

    overlays: dict[str, Overlay] = {}
    found = sorted(p.parent.name for p in (DEPLOY / "overlays").glob("*/kustomization.yaml"))
    for name in sorted(set(found) | set(OVERLAYS)):
        scope = f"overlays/{name}"
        if name not in OVERLAYS:
            results.append((scope, "render", [f"overlay {name} has no expectations in validate.py OVERLAYS"]))
            continue
        if name not in found:
            results.append((scope, "render", [f"deploy/overlays/{name}/kustomization.yaml missing"]))
            continue
        path = DEPLOY / "overlays" / name
        objs = render(path, scope)
        if objs is None:
            continue
        required = {}
        req_file = path / "required-secrets.yaml"
        if req_file.is_file():
            doc = yaml.safe_load(req_file.read_text()) or {}
            required = {s["name"]: s for s in doc.get("requiredSecrets", [])}
        ov = Overlay(name, path, objs, OVERLAYS[name], cluster, required)
        overlays[name] = ov
        for rule, errs in run_checks(ov, tools).items():
            results.append((scope, rule, errs))

    passed = sum(1 for _, _, e in results if not e)
    failed = len(results) - passed
    print("Validation of deploy/ (offline)")
    for n in notes:
        print(f"  note: {n}")
    current = None
    for scope, check, errs in results:
        if scope != current:
            print(f"\n[{scope}]")
            current = scope
        print(f"  {'PASS' if not errs else 'FAIL'}  {check}")
        for e in errs:
            print(f"        - {e}")

    st_pass = st_fail = 0
    if args.self_test:
        print("\n[self-test: every mutation must be reported by its rule]")
        for label, ok, detail in self_tests(overlays, tools):
            print(f"  {'PASS' if ok else 'FAIL'}  {label}")
            if args.verbose or not ok:
                print(f"        - {detail}")
            st_pass += ok
            st_fail += not ok

    total_pass, total_fail = passed + st_pass, failed + st_fail
    elapsed = time.monotonic() - started
    print(f"\nchecks: {passed} passed, {failed} failed" + (f"; self-test: {st_pass} passed, {st_fail} failed" if args.self_test else ""))
    print(f"time: {elapsed:.1f}s")
    print(f"{total_pass} passed, {total_fail} failed")
    return 0 if total_fail == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
