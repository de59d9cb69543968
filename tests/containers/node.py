"""One Kubernetes node on podman: runs rendered objects with `podman kube play`.

`podman kube play` (4.3, Debian 12) runs Pods and takes ConfigMaps from the
same YAML, but has no controllers, Services, Secret volumes, readiness
probes or `$(VAR)` expansion. This module does what a cluster would do for
those, and nothing more:

- controllers: a Deployment's or StatefulSet's pods, and a CronJob's Job
  pod, are made from their templates, named as the controllers name them
  (`<deployment>-<n>`, `<statefulset>-<ordinal>`), and played one by one;
  scaling and rolling are steps the caller takes (`add_pod`, `remove_pod`);
- Secrets become podman secrets (for `secretKeyRef` env) and files under
  the work dir (for `secret` volumes, mounted as host paths, `subPath` as
  the one file); claims of a StatefulSet become directories owned by the
  pod's `fsGroup`, as the kubelet sets them up;
- a Service is its name as a DNS name (a network alias) of every pod it
  selects, on the run's own network; its endpoints (`endpoints`) are the
  selected pods whose readiness probe passes, probed as the kubelet probes
  (httpGet and tcpSocket from the node to the pod IP, exec in the
  container);
- `$(VAR)` in command and args is expanded from the container's env.

Everything a run creates is named after its run id, so runs do not meet:
pods and secrets. The pods join the network named by the run id, which the
caller creates beforehand (its registry listens on its gateway) and removes
after `down`, which removes the pods and secrets.

Command line (each prints JSON), used by tests/tests/containers.rs:
  node.py up WORKDIR OBJECTS.json RUN_ID
  node.py add-pod WORKDIR WORKLOAD       a new pod of a Deployment, ready
  node.py remove-pod WORKDIR POD         SIGTERM, the pod's grace period, gone
  node.py run-job WORKDIR CRONJOB        one Job of a CronJob, to its end
  node.py state WORKDIR                  pods, IPs, readiness, endpoints
  node.py logs WORKDIR POD               each container's state and last log lines
  node.py down WORKDIR
"""

from __future__ import annotations

import base64
import copy
import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import yaml

READY_TIMEOUT = 120


def podman(*args: str, check: bool = True, input: bytes | None = None) -> str:
    result = subprocess.run(["podman", *args], capture_output=True, input=input)
    if check and result.returncode != 0:
        raise RuntimeError(f"podman {' '.join(args)}: {result.stderr.decode(errors='replace').strip()}")
    return result.stdout.decode(errors="replace")


def container_logs(container: str) -> str:
    """What the container wrote, stdout and stderr interleaved."""
    result = subprocess.run(["podman", "logs", container], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    return result.stdout.decode(errors="replace")


def _secret_data(secret: dict) -> dict[str, bytes]:
    data = {key: base64.b64decode(value) for key, value in (secret.get("data") or {}).items()}
    data.update({key: value.encode() for key, value in (secret.get("stringData") or {}).items()})
    return data


def _selects(selector: dict, labels: dict) -> bool:
    return bool(selector) and all(labels.get(key) == value for key, value in selector.items())


class Node:
    def __init__(self, workdir: Path):
        self.workdir = workdir
        state = json.loads((workdir / "state.json").read_text())
        self.run = state["run"]
        self.objects = state["objects"]
        self.pods = state["pods"]
        self.counters = state["counters"]

    @classmethod
    def create(cls, workdir: Path, objects: list[dict], run: str) -> "Node":
        if not re.fullmatch(r"[a-z0-9][a-z0-9-]{0,30}", run):
            raise ValueError(f"run id {run!r}: lowercase letters, digits and dashes")
        workdir.mkdir(parents=True, exist_ok=True)
        state = {"run": run, "objects": objects, "pods": {}, "counters": {}}
        (workdir / "state.json").write_text(json.dumps(state))
        node = cls(workdir)
        for secret in node.of_kind("Secret"):
            data = _secret_data(secret)
            # podman kube play reads a secret as a JSON map of key to base64.
            payload = json.dumps({key: base64.b64encode(value).decode() for key, value in data.items()}).encode()
            podman("secret", "create", node.secret_name(secret["metadata"]["name"]), "-", input=payload)
            for key, value in data.items():
                path = node.workdir / "secrets" / secret["metadata"]["name"] / key
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(value)
        return node

    @property
    def network(self) -> str:
        return self.run

    def secret_name(self, name: str) -> str:
        return f"{self.run}-{name}"

    def save(self) -> None:
        state = {"run": self.run, "objects": self.objects, "pods": self.pods, "counters": self.counters}
        (self.workdir / "state.json").write_text(json.dumps(state))

    def of_kind(self, kind: str) -> list[dict]:
        return [obj for obj in self.objects if obj["kind"] == kind]

    def named(self, kind: str, name: str) -> dict:
        for obj in self.of_kind(kind):
            if obj["metadata"]["name"] == name:
                return obj
        raise KeyError(f"no {kind} {name}")

    # -- pods ---------------------------------------------------------------

    def _env_values(self, container: dict) -> dict[str, str]:
        """The container's env as the kubelet resolves it (for `$(VAR)`)."""
        values = {}
        for entry in container.get("env") or []:
            source = entry.get("valueFrom")
            if source is None:
                values[entry["name"]] = entry.get("value", "")
            elif "secretKeyRef" in source:
                ref = source["secretKeyRef"]
                values[entry["name"]] = _secret_data(self.named("Secret", ref["name"]))[ref["key"]].decode()
            elif "configMapKeyRef" in source:
                ref = source["configMapKeyRef"]
                values[entry["name"]] = self.named("ConfigMap", ref["name"])["data"][ref["key"]]
        return values

    def _pod_manifest(self, name: str, template: dict, claims: dict[str, str]) -> dict:
        template = copy.deepcopy(template)
        spec = template["spec"]
        host_paths = {}
        for volume in spec.get("volumes") or []:
            if "secret" in volume:
                secret = volume["secret"]["secretName"]
                host_paths[volume["name"]] = (self.workdir / "secrets" / secret, volume["secret"].get("items"))
        for claim, path in claims.items():
            host_paths.setdefault(claim, (Path(path), None))
        volumes = []
        for container in spec["containers"]:
            values = self._env_values(container)
            for field in ("command", "args"):
                if field in container:
                    container[field] = [
                        re.sub(r"\$\$|\$\((\w+)\)", lambda m: "$" if m.group(0) == "$$" else values.get(m.group(1), m.group(0)), arg)
                        for arg in container[field]
                    ]
            for entry in container.get("env") or []:
                ref = (entry.get("valueFrom") or {}).get("secretKeyRef")
                if ref:
                    ref["name"] = self.secret_name(ref["name"])
            for mount in container.get("volumeMounts") or []:
                if mount["name"] not in host_paths:
                    continue
                base, items = host_paths[mount["name"]]
                sub_path = mount.pop("subPath", None)
                if items and sub_path:
                    key = next(item["key"] for item in items if item["path"] == sub_path)
                    path, kind = base / key, "File"
                elif sub_path:
                    path, kind = base / sub_path, "File"
                else:
                    path, kind = base, "Directory"
                if not path.exists():
                    raise ValueError(f"pod {name}: volume {mount['name']} has no {path}")
                volume_name = f"{mount['name']}-{len(volumes)}"
                volumes.append({"name": volume_name, "hostPath": {"path": str(path), "type": kind}})
                mount["name"] = volume_name
        spec["volumes"] = volumes + [v for v in spec.get("volumes") or [] if v["name"] not in host_paths]
        metadata = template.get("metadata") or {}
        metadata["name"] = name
        return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec}

    def _aliases(self, labels: dict) -> list[str]:
        return [svc["metadata"]["name"] for svc in self.of_kind("Service") if _selects(svc["spec"].get("selector") or {}, labels)]

    def _play(self, pod_name: str, workload: str, template: dict, claims: dict[str, str] | None = None) -> None:
        name = f"{self.run}-{pod_name}"
        manifest = self._pod_manifest(name, template, claims or {})
        labels = manifest["metadata"].get("labels") or {}
        ports = {p["name"]: p["containerPort"] for c in manifest["spec"]["containers"] for p in c.get("ports") or [] if "name" in p}
        # podman 4.3 publishes every containerPort on the host (its hostPort
        # defaults to the containerPort); in a cluster a containerPort
        # publishes nothing, and pods are reached at their own IPs.
        for container in manifest["spec"]["containers"]:
            container.pop("ports", None)
        documents = [manifest] + [cm for cm in self.of_kind("ConfigMap")]
        path = self.workdir / f"{pod_name}.yaml"
        path.write_text(yaml.safe_dump_all(documents, sort_keys=False))
        network = self.network + "".join(f"{',' if i else ':'}alias={alias}" for i, alias in enumerate(self._aliases(labels)))
        podman("kube", "play", "--network", network, str(path))
        grace = (template["spec"].get("terminationGracePeriodSeconds") or 30)
        # The pod keeps its IP while it lives: its infra container holds the
        # network namespace across restarts of the others.
        infra = podman("pod", "inspect", name, "--format", "{{.InfraContainerID}}").strip()
        ip = podman("inspect", infra, "--format", f'{{{{(index .NetworkSettings.Networks "{self.network}").IPAddress}}}}').strip()
        self.pods[name] = {"workload": workload, "labels": labels, "grace": grace, "ip": ip,
                           "containers": [c["name"] for c in manifest["spec"]["containers"]],
                           "readiness": [c.get("readinessProbe") for c in manifest["spec"]["containers"]],
                           "liveness": [c.get("livenessProbe") for c in manifest["spec"]["containers"]],
                           "ports": ports}
        self.save()

    def _probe(self, pod: str, container: str, probe: dict) -> bool:
        if "httpGet" in probe:
            http_get = probe["httpGet"]
            port = self.pods[pod]["ports"].get(http_get["port"], http_get["port"])
            request = urllib.request.Request(f"http://{self.pods[pod]['ip']}:{port}{http_get.get('path', '/')}",
                                             headers={h["name"]: h["value"] for h in http_get.get("httpHeaders") or []})
            try:
                with urllib.request.urlopen(request, timeout=probe.get("timeoutSeconds", 1)) as reply:
                    return 200 <= reply.status < 400
            except OSError:
                return False
        if "tcpSocket" in probe:
            port = self.pods[pod]["ports"].get(probe["tcpSocket"]["port"], probe["tcpSocket"]["port"])
            try:
                socket.create_connection((self.pods[pod]["ip"], int(port)), timeout=probe.get("timeoutSeconds", 1)).close()
                return True
            except OSError:
                return False
        if "exec" in probe:
            result = subprocess.run(["podman", "exec", f"{pod}-{container}", *probe["exec"]["command"]],
                                    capture_output=True, timeout=max(probe.get("timeoutSeconds", 1), 5))
            return result.returncode == 0
        raise ValueError(f"pod {pod}: probe {probe} is none of httpGet, tcpSocket, exec")

    def probes(self, pod: str, kind: str) -> bool:
        """Whether every container's `kind` probe ("readiness" or "liveness")
        passes now (a container without one passes)."""
        info = self.pods[pod]
        return all(probe is None or self._probe(pod, container, probe)
                   for container, probe in zip(info["containers"], info[kind]))

    def running(self, pod: str) -> bool:
        states = podman("pod", "inspect", pod, "--format", "{{range .Containers}}{{.State}} {{end}}", check=False).split()
        return bool(states) and all(state == "running" for state in states)

    def wait_ready(self, pod: str) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if self.running(pod) and self.probes(pod, "readiness"):
                return
            time.sleep(0.2)
        logs = "\n".join(container_logs(f"{pod}-{c}") for c in self.pods[pod]["containers"])
        raise RuntimeError(f"pod {pod} not ready within {READY_TIMEOUT}s:\n{logs[-4000:]}")

    # -- controllers --------------------------------------------------------

    def _next(self, workload: str) -> int:
        n = self.counters.get(workload, 0)
        self.counters[workload] = n + 1
        return n

    def add_pod(self, deployment: str) -> str:
        template = self.named("Deployment", deployment)["spec"]["template"]
        name = f"{deployment}-{self._next(deployment)}"
        self._play(name, deployment, template)
        pod = f"{self.run}-{name}"
        self.wait_ready(pod)
        return pod

    def up(self) -> None:
        for statefulset in self.of_kind("StatefulSet"):
            for ordinal in range(statefulset["spec"].get("replicas", 1)):
                template = statefulset["spec"]["template"]
                fs_group = (template["spec"].get("securityContext") or {}).get("fsGroup")
                claims = {}
                for claim in statefulset["spec"].get("volumeClaimTemplates") or []:
                    claim_name = claim["metadata"]["name"]
                    path = self.workdir / "claims" / f"{claim_name}-{statefulset['metadata']['name']}-{ordinal}"
                    path.mkdir(parents=True, exist_ok=True)
                    if fs_group is not None:
                        os.chown(path, 0, fs_group)
                        path.chmod(0o2775)
                    claims[claim_name] = str(path)
                name = f"{statefulset['metadata']['name']}-{ordinal}"
                self._play(name, statefulset["metadata"]["name"], template, claims)
                self.wait_ready(f"{self.run}-{name}")
        for deployment in self.of_kind("Deployment"):
            for _ in range(deployment["spec"].get("replicas", 1)):
                self.add_pod(deployment["metadata"]["name"])

    def remove_pod(self, pod: str) -> dict:
        """As the kubelet deletes a pod: SIGTERM, then SIGKILL after the
        grace period. Returns how long the stop took and the exit codes."""
        started = time.monotonic()
        podman("pod", "stop", "-t", str(self.pods[pod]["grace"]), pod)
        took = time.monotonic() - started
        exits = {c: podman("inspect", f"{pod}-{c}", "--format", "{{.State.ExitCode}}").strip() for c in self.pods[pod]["containers"]}
        logs = {c: container_logs(f"{pod}-{c}") for c in self.pods[pod]["containers"]}
        podman("pod", "rm", "-f", pod)
        del self.pods[pod]
        self.save()
        return {"pod": pod, "seconds": took, "exit_codes": exits, "logs": logs}

    def run_job(self, cronjob: str) -> dict:
        template = self.named("CronJob", cronjob)["spec"]["jobTemplate"]["spec"]["template"]
        name = f"{cronjob}-{self._next(cronjob)}"
        self._play(name, cronjob, template)
        pod = f"{self.run}-{name}"
        container = f"{pod}-{template['spec']['containers'][0]['name']}"
        exit_code = podman("wait", container).strip()
        result = {"pod": pod, "exit_code": int(exit_code), "logs": container_logs(container)}
        podman("pod", "rm", "-f", pod)
        del self.pods[pod]
        self.save()
        return result

    def state(self) -> dict:
        pods = {pod: {"ip": info["ip"], "workload": info["workload"], "labels": info["labels"],
                      "restarts": sum(int(podman("inspect", f"{pod}-{c}", "--format", "{{.RestartCount}}"))
                                      for c in info["containers"]),
                      "ready": self.running(pod) and self.probes(pod, "readiness"),
                      "live": self.running(pod) and self.probes(pod, "liveness")}
                for pod, info in self.pods.items()}
        endpoints = {}
        for svc in self.of_kind("Service"):
            selector = svc["spec"].get("selector") or {}
            endpoints[svc["metadata"]["name"]] = sorted(p["ip"] for p in pods.values() if p["ready"] and _selects(selector, p["labels"]))
        return {"pods": pods, "endpoints": endpoints}

    def logs(self, pod: str) -> dict:
        """Why a container restarted: podman's view of its state, and the
        last lines it wrote (podman keeps the earlier runs' lines too)."""
        return {c: {"state": podman("inspect", f"{pod}-{c}", "--format",
                                    "oom_killed={{.State.OOMKilled}} exit={{.State.ExitCode}} error={{.State.Error}}").strip(),
                    "log": "\n".join(container_logs(f"{pod}-{c}").splitlines()[-30:])}
                for c in self.pods[pod]["containers"]}

    def down(self) -> None:
        for pod in list(self.pods):
            podman("pod", "rm", "-f", "-t", "0", pod, check=False)
        for secret in self.of_kind("Secret"):
            podman("secret", "rm", self.secret_name(secret["metadata"]["name"]), check=False)


def main(argv: list[str]) -> None:
    command, workdir = argv[0], Path(argv[1])
    if command == "up":
        node = Node.create(workdir, json.loads(Path(argv[2]).read_text()), argv[3])
        node.up()
        print(json.dumps(node.state()))
        return
    node = Node(workdir)
    if command == "add-pod":
        print(json.dumps({"pod": node.add_pod(argv[2])}))
    elif command == "remove-pod":
        print(json.dumps(node.remove_pod(argv[2])))
    elif command == "run-job":
        print(json.dumps(node.run_job(argv[2])))
    elif command == "state":
        print(json.dumps(node.state()))
    elif command == "logs":
        print(json.dumps(node.logs(argv[2])))
    elif command == "down":
        node.down()
        print("{}")
    else:
        raise SystemExit(f"unknown command {command}")


if __name__ == "__main__":
    main(sys.argv[1:])
