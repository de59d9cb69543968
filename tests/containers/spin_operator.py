"""What spin-operator creates for each SpinApp: its Deployment and Service.

No cluster runs here, so nothing runs the operator. This module reproduces
the objects it applies, so that tests/containers can play them with a real
container engine. Read from the operator's source (spinframework/
spin-operator at 943f5b17, `internal/controller/spinapp_controller.go`,
`deployment.go`, `service.go`):

Reproduced:
- Deployment named after the SpinApp, labels `core.spinkube.dev/app-name`,
  selector and pod labels with `core.spinkube.dev/app.<app>.status: ready`
  (copied over `podLabels`), `podAnnotations`, `deploymentAnnotations`,
  replicas (left out with `enableAutoscaling`), `serviceAccountName`
  (`default` when unset), `imagePullSecrets`.
- One container named after the app. Executor with `spinImage`: that image,
  no command, args `up --listen 0.0.0.0:80 -f <spec.image>
  --runtime-config-file /runtime-config.toml` then `--component-id <id>`
  per component. Executor with `runtimeClassName`: the app image, command
  `["/"]`, the pod's runtimeClassName.
- Port `http-app` 80. Env in the operator's order: `SPIN_VARIABLE_<NAME>`
  (upper-cased, value/valueFrom as given), `SPIN_HTTP_LISTEN_ADDR`, the
  executor's OTLP endpoints, `SPIN_MAX_INSTANCE_MEMORY` (bytes),
  `SPIN_COMPONENTS_TO_RETAIN`.
- Probes: each of `checks.readiness`/`checks.liveness` as an httpGet on
  port 80 with the given path, headers and timings; none without checks.
- Resources as given. Volumes: `spin-runtime-config` (the Secret of
  `runtimeConfig.loadFromSecret`, key runtime-config.toml, at
  /runtime-config.toml), `spec.volumes`/`volumeMounts`, `spin-ca` (the
  executor's `caCertSecret`, or `spin-ca` with `installDefaultCACerts`, at
  /etc/ssl/certs/ca-certificates.crt).
- The `spin-ca` Secret the operator creates when `installDefaultCACerts` is
  set and the namespace has none (filled from a CA bundle given here; the
  operator embeds curl's).
- Service named after the app: ClusterIP, selector on the status label only,
  port 80 to target port `http-app`.

Not reproduced (ValueError where the input needs it):
- A runtime config generated from inline `keyValueStores`,
  `sqliteDatabases` or `llmCompute` (`<app>-<adler32>` Secret): deploy/
  uses `loadFromSecret` only.
- The webhooks' defaulting and validation (tests/deploy/validate.py checks
  the rules deploy/ depends on), status, owner references and server-side
  apply, executor lookup across a defaulted `spec.executor`.
"""

from __future__ import annotations

import base64
import copy
import re

GROUP = "core.spinkube.dev"
HTTP_PORT = 80
HTTP_PORT_NAME = "http-app"
RUNTIME_CONFIG_PATH = "/runtime-config.toml"
RUNTIME_CONFIG_KEY = "runtime-config.toml"
CA_FILE = "ca-certificates.crt"
DEFAULT_CA_SECRET = "spin-ca"

# Kubernetes quantity suffixes, as resource.ParseQuantity reads them.
_QUANTITY_SUFFIXES = {
    "": 1, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18,
    "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60,
}


def quantity_bytes(quantity: str) -> int:
    """A memory quantity (`64Mi`, `40M`, `1000`) in bytes."""
    match = re.fullmatch(r"(\d+)([kMGTPE]i?|)", str(quantity))
    if not match or match.group(2) == "ki":
        raise ValueError(f"not a memory quantity: {quantity!r}")
    return int(match.group(1)) * _QUANTITY_SUFFIXES[match.group(2)]


def app_labels(app: str) -> dict:
    return {f"{GROUP}/app-name": app}


def ready_labels(app: str) -> dict:
    return {**app_labels(app), f"{GROUP}/app.{app}.status": "ready"}


def _env(spec: dict, executor_config: dict) -> list[dict]:
    env = []
    for variable in spec.get("variables") or []:
        entry = {"name": "SPIN_VARIABLE_" + variable["name"].upper()}
        for field in ("value", "valueFrom"):
            if field in variable:
                entry[field] = copy.deepcopy(variable[field])
        env.append(entry)
    env.append({"name": "SPIN_HTTP_LISTEN_ADDR", "value": f"0.0.0.0:{HTTP_PORT}"})
    otel = executor_config.get("otel") or {}
    for field, name in (
        ("exporter_otlp_endpoint", "OTEL_EXPORTER_OTLP_ENDPOINT"),
        ("exporter_otlp_traces_endpoint", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"),
        ("exporter_otlp_metrics_endpoint", "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"),
        ("exporter_otlp_logs_endpoint", "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT"),
    ):
        if otel.get(field):
            env.append({"name": name, "value": otel[field]})
    memory = (spec.get("invocationLimits") or {}).get("memory")
    if memory is not None:
        env.append({"name": "SPIN_MAX_INSTANCE_MEMORY", "value": str(quantity_bytes(memory))})
    if spec.get("components") is not None:
        env.append({"name": "SPIN_COMPONENTS_TO_RETAIN", "value": ",".join(spec["components"])})
    return env


def _probe(check: dict) -> dict:
    if "httpGet" not in check:
        raise ValueError("a SpinApp health check needs httpGet")
    http_get = {"path": check["httpGet"]["path"], "port": HTTP_PORT}
    if check["httpGet"].get("httpHeaders"):
        http_get["httpHeaders"] = copy.deepcopy(check["httpGet"]["httpHeaders"])
    probe = {"httpGet": http_get}
    # The CRD's defaults, which the API server fills in.
    for field, default in (("initialDelaySeconds", 10), ("timeoutSeconds", 1), ("periodSeconds", 10),
                           ("successThreshold", 1), ("failureThreshold", 3)):
        probe[field] = check.get(field, default)
    return probe


def ca_secret_name(executor_config: dict) -> str | None:
    if executor_config.get("caCertSecret"):
        return executor_config["caCertSecret"]
    if executor_config.get("installDefaultCACerts"):
        return DEFAULT_CA_SECRET
    return None


def deployment(spinapp: dict, executor: dict) -> dict:
    """The Deployment spin-operator applies for `spinapp` run by `executor`."""
    app = spinapp["metadata"]["name"]
    spec = spinapp["spec"]
    config = executor["spec"].get("deploymentConfig") or {}
    runtime_config = spec.get("runtimeConfig") or {}
    if any(runtime_config.get(field) for field in ("keyValueStores", "sqliteDatabases", "llmCompute")) \
            and not runtime_config.get("loadFromSecret"):
        raise ValueError(f"SpinApp {app}: a runtime config generated from inline stores is not reproduced here")

    container = {"name": app}
    pod_spec = {}
    if config.get("runtimeClassName"):
        container.update(image=spec["image"], command=["/"])
        pod_spec["runtimeClassName"] = config["runtimeClassName"]
    elif config.get("spinImage"):
        args = ["up", "--listen", f"0.0.0.0:{HTTP_PORT}", "-f", spec["image"], "--runtime-config-file", RUNTIME_CONFIG_PATH]
        for component in spec.get("components") or []:
            args += ["--component-id", component]
        container.update(image=config["spinImage"], args=args)
    else:
        raise ValueError(f"executor {executor['metadata']['name']}: must specify either runtimeClassName or spinImage")
    container["ports"] = [{"name": HTTP_PORT_NAME, "containerPort": HTTP_PORT}]
    container["env"] = _env(spec, config)
    resources = spec.get("resources") or {}
    container["resources"] = {key: copy.deepcopy(resources[key]) for key in ("limits", "requests") if key in resources}
    checks = spec.get("checks") or {}
    if checks.get("liveness"):
        container["livenessProbe"] = _probe(checks["liveness"])
    if checks.get("readiness"):
        container["readinessProbe"] = _probe(checks["readiness"])

    volumes, mounts = [], []
    if runtime_config.get("loadFromSecret"):
        volumes.append({"name": "spin-runtime-config", "secret": {
            "secretName": runtime_config["loadFromSecret"], "optional": True,
            "items": [{"key": RUNTIME_CONFIG_KEY, "path": RUNTIME_CONFIG_KEY}]}})
        mounts.append({"name": "spin-runtime-config", "mountPath": RUNTIME_CONFIG_PATH,
                       "subPath": RUNTIME_CONFIG_KEY, "readOnly": True})
    volumes += copy.deepcopy(spec.get("volumes") or [])
    mounts += copy.deepcopy(spec.get("volumeMounts") or [])
    ca_secret = ca_secret_name(config)
    if ca_secret:
        volumes.append({"name": "spin-ca", "secret": {
            "secretName": ca_secret, "optional": True, "items": [{"key": CA_FILE, "path": CA_FILE}]}})
        mounts.append({"name": "spin-ca", "mountPath": f"/etc/ssl/certs/{CA_FILE}", "subPath": CA_FILE, "readOnly": True})
    container["volumeMounts"] = mounts

    pod_spec.update(
        serviceAccountName=spec.get("serviceAccountName") or "default",
        containers=[container],
        volumes=volumes,
    )
    if spec.get("imagePullSecrets"):
        pod_spec["imagePullSecrets"] = copy.deepcopy(spec["imagePullSecrets"])
    namespace = spinapp["metadata"].get("namespace")
    deployment_spec = {
        "selector": {"matchLabels": ready_labels(app)},
        "template": {
            "metadata": {
                "labels": {**(spec.get("podLabels") or {}), **ready_labels(app)},
                "annotations": copy.deepcopy(spec.get("podAnnotations") or {}),
            },
            "spec": pod_spec,
        },
    }
    if not spec.get("enableAutoscaling"):
        deployment_spec["replicas"] = spec.get("replicas", 1)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": app, **({"namespace": namespace} if namespace else {}), "labels": app_labels(app),
                     "annotations": copy.deepcopy(spec.get("deploymentAnnotations") or {})},
        "spec": deployment_spec,
    }


def service(spinapp: dict) -> dict:
    """The Service spin-operator applies for `spinapp`."""
    app = spinapp["metadata"]["name"]
    namespace = spinapp["metadata"].get("namespace")
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": app, **({"namespace": namespace} if namespace else {}), "labels": app_labels(app),
                     "annotations": copy.deepcopy(spinapp["spec"].get("serviceAnnotations") or {})},
        "spec": {
            "type": "ClusterIP",
            "selector": {f"{GROUP}/app.{app}.status": "ready"},
            "ports": [{"protocol": "TCP", "port": HTTP_PORT, "targetPort": HTTP_PORT_NAME}],
        },
    }


def reconcile(objects: list[dict], ca_bundle: bytes) -> list[dict]:
    """`objects` as a cluster holds them once the operator has reconciled:
    SpinApps and SpinAppExecutors stay, and each SpinApp adds its Deployment
    and Service; the `spin-ca` Secret is added (from `ca_bundle`) where an
    executor installs default CA certificates and the namespace has none."""
    def key(obj):
        return obj["kind"], obj["metadata"].get("namespace"), obj["metadata"]["name"]

    by_key = {key(obj): obj for obj in objects}
    out = list(objects)
    for spinapp in (obj for obj in objects if obj["kind"] == "SpinApp"):
        namespace = spinapp["metadata"].get("namespace")
        executor = by_key.get(("SpinAppExecutor", namespace, spinapp["spec"]["executor"]))
        if executor is None:
            raise ValueError(f"SpinApp {spinapp['metadata']['name']}: no SpinAppExecutor "
                             f"{spinapp['spec']['executor']!r} in its namespace")
        config = executor["spec"].get("deploymentConfig") or {}
        if executor["spec"].get("createDeployment"):
            out.append(deployment(spinapp, executor))
            if config.get("installDefaultCACerts") and not config.get("caCertSecret") \
                    and ("Secret", namespace, DEFAULT_CA_SECRET) not in by_key:
                ca = {"apiVersion": "v1", "kind": "Secret",
                      "metadata": {"name": DEFAULT_CA_SECRET, **({"namespace": namespace} if namespace else {}),
                                   "annotations": {"app.kubernetes.io/managed-by": "spin-operator.spinkube.dev"}},
                      "data": {CA_FILE: base64.b64encode(ca_bundle).decode()}}
                by_key[key(ca)] = ca
                out.append(ca)
        out.append(service(spinapp))
    return out


def main(argv: list[str]) -> None:
    """`spin_operator.py KUSTOMIZATION_DIR CA_BUNDLE`: renders the
    kustomization (tests/deploy/kustomize_lite.py) and prints, as JSON, the
    objects once the operator has reconciled them."""
    import json
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "deploy"))
    import kustomize_lite

    directory, ca_bundle = argv
    print(json.dumps(reconcile(kustomize_lite.build(directory), Path(ca_bundle).read_bytes())))


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
