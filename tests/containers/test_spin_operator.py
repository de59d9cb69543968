"""Tests of spin_operator.py against what spin-operator's source does (its
module docstring names the files). Run by scripts/test:
    target/deploy-venv/bin/python -m unittest discover -s tests/containers
"""

import base64
import copy
import sys
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import spin_operator  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


def executor(**config):
    return {"apiVersion": "core.spinkube.dev/v1alpha1", "kind": "SpinAppExecutor",
            "metadata": {"name": "wharf", "namespace": "ns"},
            "spec": {"createDeployment": True, "deploymentConfig": config}}


def spinapp(**spec):
    base = {"image": "registry.example/shop:1", "executor": "wharf", "replicas": 2}
    base.update(spec)
    return {"apiVersion": "core.spinkube.dev/v1alpha1", "kind": "SpinApp",
            "metadata": {"name": "shop", "namespace": "ns"}, "spec": base}


def container(deployment):
    [only] = deployment["spec"]["template"]["spec"]["containers"]
    return only


class Deployment(unittest.TestCase):
    def test_a_spin_image_executor_runs_up_with_the_operators_args_in_order(self):
        app = spinapp(components=["order", "ops"])
        c = container(spin_operator.deployment(app, executor(spinImage="wharf:1")))
        self.assertEqual(c["image"], "wharf:1")
        self.assertNotIn("command", c)
        self.assertEqual(c["args"], ["up", "--listen", "0.0.0.0:80", "-f", "registry.example/shop:1",
                                     "--runtime-config-file", "/runtime-config.toml",
                                     "--component-id", "order", "--component-id", "ops"])
        self.assertEqual(c["ports"], [{"name": "http-app", "containerPort": 80}])

    def test_a_runtime_class_executor_runs_the_app_image_with_command_slash(self):
        d = spin_operator.deployment(spinapp(), executor(runtimeClassName="wasmtime-spin-v2"))
        c = container(d)
        self.assertEqual((c["image"], c["command"], "args" in c), ("registry.example/shop:1", ["/"], False))
        self.assertEqual(d["spec"]["template"]["spec"]["runtimeClassName"], "wasmtime-spin-v2")

    def test_an_executor_with_neither_image_nor_runtime_class_is_an_error(self):
        with self.assertRaisesRegex(ValueError, "either runtimeClassName or spinImage"):
            spin_operator.deployment(spinapp(), executor())

    def test_env_comes_in_the_operators_order_with_upper_cased_variables(self):
        app = spinapp(components=["a", "b"], invocationLimits={"memory": "40M"}, variables=[
            {"name": "redis_url", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}},
            {"name": "mode-x", "value": "on"},
        ])
        env = container(spin_operator.deployment(app, executor(
            spinImage="w", otel={"exporter_otlp_endpoint": "http://otel:4318", "exporter_otlp_logs_endpoint": ""})))["env"]
        self.assertEqual(env, [
            {"name": "SPIN_VARIABLE_REDIS_URL", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}},
            {"name": "SPIN_VARIABLE_MODE-X", "value": "on"},
            {"name": "SPIN_HTTP_LISTEN_ADDR", "value": "0.0.0.0:80"},
            {"name": "OTEL_EXPORTER_OTLP_ENDPOINT", "value": "http://otel:4318"},
            {"name": "SPIN_MAX_INSTANCE_MEMORY", "value": "40000000"},
            {"name": "SPIN_COMPONENTS_TO_RETAIN", "value": "a,b"},
        ])

    def test_memory_quantities_are_bytes(self):
        self.assertEqual(spin_operator.quantity_bytes("64Mi"), 64 * 2**20)
        self.assertEqual(spin_operator.quantity_bytes("1G"), 10**9)
        self.assertEqual(spin_operator.quantity_bytes("1000"), 1000)
        for bad in ("64MB", "1.5Gi", "ki", "-1"):
            with self.assertRaises(ValueError):
                spin_operator.quantity_bytes(bad)

    def test_probes_only_for_the_checks_given_on_port_80_with_the_crds_defaults(self):
        none = container(spin_operator.deployment(spinapp(), executor(spinImage="w")))
        self.assertNotIn("readinessProbe", none)
        self.assertNotIn("livenessProbe", none)
        app = spinapp(checks={"readiness": {"httpGet": {"path": "/ready"}, "periodSeconds": 3}})
        c = container(spin_operator.deployment(app, executor(spinImage="w")))
        self.assertEqual(c["readinessProbe"], {"httpGet": {"path": "/ready", "port": 80}, "initialDelaySeconds": 10,
                                               "timeoutSeconds": 1, "periodSeconds": 3, "successThreshold": 1,
                                               "failureThreshold": 3})
        self.assertNotIn("livenessProbe", c)
        with self.assertRaisesRegex(ValueError, "httpGet"):
            spin_operator.deployment(spinapp(checks={"liveness": {"exec": {}}}), executor(spinImage="w"))

    def test_runtime_config_and_ca_mounts_in_the_operators_order(self):
        app = spinapp(runtimeConfig={"loadFromSecret": "rc"},
                      volumes=[{"name": "data", "emptyDir": {}}], volumeMounts=[{"name": "data", "mountPath": "/data"}])
        d = spin_operator.deployment(app, executor(spinImage="w", installDefaultCACerts=True))
        self.assertEqual([v["name"] for v in d["spec"]["template"]["spec"]["volumes"]], ["spin-runtime-config", "data", "spin-ca"])
        self.assertEqual(container(d)["volumeMounts"], [
            {"name": "spin-runtime-config", "mountPath": "/runtime-config.toml", "subPath": "runtime-config.toml", "readOnly": True},
            {"name": "data", "mountPath": "/data"},
            {"name": "spin-ca", "mountPath": "/etc/ssl/certs/ca-certificates.crt", "subPath": "ca-certificates.crt", "readOnly": True},
        ])
        self.assertEqual(d["spec"]["template"]["spec"]["volumes"][0]["secret"]["secretName"], "rc")
        custom = spin_operator.deployment(spinapp(), executor(spinImage="w", caCertSecret="my-ca", installDefaultCACerts=True))
        self.assertEqual(custom["spec"]["template"]["spec"]["volumes"][-1]["secret"]["secretName"], "my-ca")

    def test_a_runtime_config_from_inline_stores_is_refused_not_guessed(self):
        app = spinapp(runtimeConfig={"keyValueStores": [{"name": "default", "type": "redis", "options": []}]})
        with self.assertRaisesRegex(ValueError, "not reproduced"):
            spin_operator.deployment(app, executor(spinImage="w"))

    def test_labels_selector_replicas_and_service_account(self):
        app = spinapp(podLabels={"core.spinkube.dev/app-name": "spoofed", "team": "a"}, podAnnotations={"x": "y"})
        d = spin_operator.deployment(app, executor(spinImage="w"))
        ready = {"core.spinkube.dev/app-name": "shop", "core.spinkube.dev/app.shop.status": "ready"}
        self.assertEqual(d["spec"]["selector"], {"matchLabels": ready})
        self.assertEqual(d["spec"]["template"]["metadata"], {"labels": {**ready, "team": "a"}, "annotations": {"x": "y"}})
        self.assertEqual((d["spec"]["replicas"], d["spec"]["template"]["spec"]["serviceAccountName"]), (2, "default"))
        scaled = spin_operator.deployment(spinapp(enableAutoscaling=True, serviceAccountName="sa"), executor(spinImage="w"))
        self.assertNotIn("replicas", scaled["spec"])
        self.assertEqual(scaled["spec"]["template"]["spec"]["serviceAccountName"], "sa")


class Service(unittest.TestCase):
    def test_selects_the_ready_label_only_and_targets_the_named_port(self):
        s = spin_operator.service(spinapp())
        self.assertEqual(s["spec"], {"type": "ClusterIP", "selector": {"core.spinkube.dev/app.shop.status": "ready"},
                                     "ports": [{"protocol": "TCP", "port": 80, "targetPort": "http-app"}]})


class Reconcile(unittest.TestCase):
    def test_the_default_ca_secret_is_created_once_and_an_existing_one_kept(self):
        objects = [executor(spinImage="w", installDefaultCACerts=True), spinapp()]
        out = spin_operator.reconcile(copy.deepcopy(objects), b"BUNDLE")
        [ca] = [o for o in out if o["kind"] == "Secret"]
        self.assertEqual((ca["metadata"]["name"], base64.b64decode(ca["data"]["ca-certificates.crt"])), ("spin-ca", b"BUNDLE"))
        existing = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "spin-ca", "namespace": "ns"}, "data": {}}
        out = spin_operator.reconcile(copy.deepcopy(objects) + [existing], b"BUNDLE")
        self.assertEqual([o for o in out if o["kind"] == "Secret"], [existing])

    def test_an_executor_missing_from_the_apps_namespace_is_an_error(self):
        other = executor(spinImage="w")
        other["metadata"]["namespace"] = "elsewhere"
        with self.assertRaisesRegex(ValueError, "no SpinAppExecutor 'wharf' in its namespace"):
            spin_operator.reconcile([other, spinapp()], b"")

    def test_every_overlay_gives_each_spinapp_a_deployment_and_service_with_its_executors_image(self):
        sys.path.insert(0, str(ROOT / "tests" / "deploy"))
        import kustomize_lite
        for overlay, image in (("dev", None), ("wharf", "ghcr.io/example/wharf:0.1.0")):
            out = spin_operator.reconcile(kustomize_lite.build(str(ROOT / "deploy" / "overlays" / overlay)), b"")
            apps = sorted(o["metadata"]["name"] for o in out if o["kind"] == "SpinApp")
            for kind in ("Deployment", "Service"):
                self.assertEqual(sorted(o["metadata"]["name"] for o in out if o["kind"] == kind and o["metadata"]["name"] in apps), apps)
            for d in (o for o in out if o["kind"] == "Deployment"):
                c = container(d)
                if image:
                    self.assertEqual((c["image"], c["args"][4]), (image, "ghcr.io/example/shop:0.1.0"), overlay)
                else:
                    self.assertEqual((c["image"], c["command"]), ("ghcr.io/example/shop:0.1.0-wasip2", ["/"]), overlay)


if __name__ == "__main__":
    unittest.main()
