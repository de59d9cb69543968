"""A minimal kustomize renderer for exactly the features deploy/ uses.

Used by validate.py when no `kustomize` or `kubectl` binary is available, and
cross-checked against the real one when it is. Anything outside the subset
below raises Unsupported instead of rendering something different:

- resources: files (multi-document YAML) and directories (kustomizations)
- configMapGenerator / secretGenerator: literals, files, envs; behavior
  create/merge/replace; only with generatorOptions.disableNameSuffixHash
- patches: inline or from a file, strategic-merge (as JSON merge patch, which
  is what kustomize does for maps and for custom resources) or JSON 6902
  (add, remove, replace, test); `target` by group/version/kind/name (name is
  an anchored regex, as in kustomize)/namespace
- namespace (renames Namespace objects, skips cluster-scoped kinds)
- labels (pairs only; includeSelectors/includeTemplates unsupported)
- images (name/newName/newTag/digest) on every containers/initContainers
  list, plus fieldSpecs from `configurations` files (inherited from bases)

Transformers run in kustomize's order: patches, namespace, labels, images.
"""

from __future__ import annotations

import base64
import copy
import os
import re
from typing import Any

import yaml


class Unsupported(Exception):
    pass


class RenderError(Exception):
    pass


KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
SUPPORTED_KEYS = {
    "apiVersion", "kind", "resources", "namespace", "labels", "patches", "images",
    "configMapGenerator", "secretGenerator", "generatorOptions", "configurations",
}
# Kinds kustomize treats as cluster-scoped that could plausibly appear here.
CLUSTER_SCOPED = {
    "Namespace", "RuntimeClass", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition",
    "PersistentVolume", "StorageClass", "PriorityClass", "IngressClass",
    "ValidatingWebhookConfiguration", "MutatingWebhookConfiguration", "APIService", "Node",
}


def _load_docs(path: str) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def _kustomization_path(directory: str) -> str:
    for name in KUSTOMIZATION_FILES:
        p = os.path.join(directory, name)
        if os.path.isfile(p):
            return p
    raise RenderError(f"{directory}: no kustomization.yaml")


def _split_image(image: str) -> tuple[str, str | None, str | None]:
    """name, tag, digest of an image reference."""
    digest = None
    if "@" in image:
        image, digest = image.split("@", 1)
    tag = None
    slash = image.rfind("/")
    colon = image.rfind(":")
    if colon > slash:
        image, tag = image[:colon], image[colon + 1:]
    return image, tag, digest


def _apply_image(value: str, rules: list[dict]) -> str:
    name, tag, digest = _split_image(value)
    for rule in rules:
        if rule.get("name") != name:
            continue
        new_name = rule.get("newName", name)
        if "digest" in rule:
            return f"{new_name}@{rule['digest']}"
        if "newTag" in rule:
            return f"{new_name}:{rule['newTag']}"
        out = new_name
        if tag is not None:
            out += f":{tag}"
        if digest is not None:
            out += f"@{digest}"
        return out
    return value


def _merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch (maps merge, lists replace, null deletes)."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    if not isinstance(target, dict):
        target = {}
    out = dict(target)
    for k, v in patch.items():
        if isinstance(k, str) and k.startswith("$"):
            raise Unsupported(f"strategic-merge directive {k}")
        if v is None:
            out.pop(k, None)
        else:
            out[k] = _merge_patch(out.get(k), v)
    return out


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise RenderError(f"bad JSON pointer {path!r}")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _json6902(doc: dict, ops: list[dict]) -> dict:
    doc = copy.deepcopy(doc)
    for op in ops:
        kind = op.get("op")
        parts = _pointer(op.get("path", ""))
        if not parts:
            raise Unsupported("JSON patch on the document root")
        parent = doc
        for p in parts[:-1]:
            if isinstance(parent, list):
                parent = parent[int(p)]
            elif isinstance(parent, dict) and p in parent:
                parent = parent[p]
            else:
                raise RenderError(f"JSON patch path {op.get('path')} does not exist")
        last = parts[-1]
        if kind in ("add", "replace"):
            value = copy.deepcopy(op.get("value"))
            if isinstance(parent, list):
                if last == "-":
                    parent.append(value)
                elif kind == "add":
                    parent.insert(int(last), value)
                else:
                    parent[int(last)] = value
            else:
                if kind == "replace" and last not in parent:
                    raise RenderError(f"replace: {op.get('path')} does not exist")
                parent[last] = value
        elif kind == "remove":
            if isinstance(parent, list):
                del parent[int(last)]
            elif last in parent:
                del parent[last]
            else:
                raise RenderError(f"remove: {op.get('path')} does not exist")
        elif kind == "test":
            cur = parent[int(last)] if isinstance(parent, list) else parent.get(last)
            if cur != op.get("value"):
                raise RenderError(f"test failed at {op.get('path')}")
        else:
            raise Unsupported(f"JSON patch op {kind!r}")
    return doc


def _gvk(obj: dict) -> tuple[str, str, str]:
    api = obj.get("apiVersion", "")
    group, _, version = api.rpartition("/")
    return group, version, obj.get("kind", "")


def _matches(obj: dict, target: dict) -> bool:
    group, version, kind = _gvk(obj)
    meta = obj.get("metadata", {})
    for key in target:
        if key not in ("group", "version", "kind", "name", "namespace"):
            raise Unsupported(f"patch target selector {key!r}")
    if "group" in target and target["group"] != group:
        return False
    if "version" in target and target["version"] != version:
        return False
    if "kind" in target and target["kind"] != kind:
        return False
    if "name" in target and not re.fullmatch(target["name"], meta.get("name", "")):
        return False
    if "namespace" in target and not re.fullmatch(target["namespace"], meta.get("namespace", "") or ""):
        return False
    return True


def _walk_containers(node: Any, rules: list[dict]) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("containers", "initContainers") and isinstance(value, list):
                for c in value:
                    if isinstance(c, dict) and isinstance(c.get("image"), str):
                        c["image"] = _apply_image(c["image"], rules)
            else:
                _walk_containers(value, rules)
    elif isinstance(node, list):
        for item in node:
            _walk_containers(item, rules)


def _apply_fieldspec_images(obj: dict, specs: list[dict], rules: list[dict]) -> None:
    for spec in specs:
        if spec.get("kind") and spec["kind"] != obj.get("kind"):
            continue
        parts = spec["path"].split("/")
        node = obj
        for p in parts[:-1]:
            node = node.get(p) if isinstance(node, dict) else None
            if node is None:
                break
        if isinstance(node, dict) and isinstance(node.get(parts[-1]), str):
            node[parts[-1]] = _apply_image(node[parts[-1]], rules)


class Kustomizer:
    def __init__(self) -> None:
        self.features_used: set[str] = set()

    def build(self, directory: str) -> list[dict]:
        objs, _ = self._build(os.path.abspath(directory))
        return objs

    def _build(self, directory: str) -> tuple[list[dict], list[dict]]:
        kpath = _kustomization_path(directory)
        with open(kpath, encoding="utf-8") as f:
            k = yaml.safe_load(f) or {}
        unknown = set(k) - SUPPORTED_KEYS
        if unknown:
            raise Unsupported(f"{kpath}: kustomization fields {sorted(unknown)}")
        if k.get("kind", "Kustomization") != "Kustomization":
            raise Unsupported(f"{kpath}: kind {k.get('kind')}")
        self.features_used.update(key for key in k if key not in ("apiVersion", "kind"))

        resources: list[dict] = []
        image_specs: list[dict] = []
        for entry in k.get("resources", []) or []:
            path = os.path.normpath(os.path.join(directory, entry))
            if os.path.isdir(path):
                sub, specs = self._build(path)
                resources.extend(sub)
                image_specs.extend(specs)
            elif os.path.isfile(path):
                resources.extend(_load_docs(path))
            else:
                raise RenderError(f"{kpath}: resource {entry} not found")
        for entry in k.get("configurations", []) or []:
            cfg = _load_docs(os.path.join(directory, entry))
            for doc in cfg:
                extra = set(doc) - {"images"}
                if extra:
                    raise Unsupported(f"{entry}: transformer configs {sorted(extra)}")
                image_specs.extend(doc.get("images", []) or [])

        options = k.get("generatorOptions") or {}
        if set(options) - {"disableNameSuffixHash"}:
            raise Unsupported(f"{kpath}: generatorOptions {sorted(set(options))}")
        for kind, field in (("ConfigMap", "configMapGenerator"), ("Secret", "secretGenerator")):
            for gen in k.get(field, []) or []:
                if not options.get("disableNameSuffixHash"):
                    raise Unsupported(f"{kpath}: {field} without disableNameSuffixHash (hash suffixes are not implemented)")
                self._generate(directory, kind, gen, resources)

        for patch in k.get("patches", []) or []:
            self._patch(directory, patch, resources)

        ns = k.get("namespace")
        if ns:
            for obj in resources:
                if obj.get("kind") == "Namespace":
                    obj.setdefault("metadata", {})["name"] = ns
                elif obj.get("kind") not in CLUSTER_SCOPED:
                    obj.setdefault("metadata", {})["namespace"] = ns

        for entry in k.get("labels", []) or []:
            if set(entry) - {"pairs", "includeSelectors", "includeTemplates"}:
                raise Unsupported(f"{kpath}: labels fields {sorted(entry)}")
            if entry.get("includeSelectors") or entry.get("includeTemplates"):
                raise Unsupported(f"{kpath}: labels with includeSelectors/includeTemplates")
            for obj in resources:
                labels = obj.setdefault("metadata", {}).setdefault("labels", {})
                labels.update({str(a): str(b) for a, b in (entry.get("pairs") or {}).items()})

        rules = k.get("images") or []
        for rule in rules:
            if set(rule) - {"name", "newName", "newTag", "digest"}:
                raise Unsupported(f"{kpath}: images fields {sorted(rule)}")
        if rules:
            for obj in resources:
                _walk_containers(obj, rules)
                _apply_fieldspec_images(obj, image_specs, rules)
        return resources, image_specs

    def _generate(self, directory: str, kind: str, gen: dict, resources: list[dict]) -> None:
        allowed = {"name", "namespace", "behavior", "literals", "files", "envs", "type"}
        if set(gen) - allowed:
            raise Unsupported(f"{kind} generator fields {sorted(set(gen) - allowed)}")
        data: dict[str, str] = {}
        for lit in gen.get("literals", []) or []:
            key, sep, value = str(lit).partition("=")
            if not sep:
                raise RenderError(f"generator literal {lit!r} has no '='")
            data[key] = value
        for entry in gen.get("files", []) or []:
            key, sep, rel = str(entry).partition("=")
            if not sep:
                key, rel = os.path.basename(entry), entry
            with open(os.path.join(directory, rel), encoding="utf-8") as f:
                data[key] = f.read()
        for entry in gen.get("envs", []) or []:
            with open(os.path.join(directory, entry), encoding="utf-8") as f:
                for line in f:
                    line = line.strip()
                    if not line or line.startswith("#"):
                        continue
                    key, _, value = line.partition("=")
                    data[key] = value
        behavior = gen.get("behavior", "create")
        name = gen["name"]
        existing = [o for o in resources if o.get("kind") == kind and o.get("metadata", {}).get("name") == name
                    and ("namespace" not in gen or o["metadata"].get("namespace") == gen["namespace"])]
        if behavior == "create":
            if existing:
                raise RenderError(f"{kind} {name} already exists; use behavior merge or replace")
            obj: dict = {"apiVersion": "v1", "kind": kind, "metadata": {"name": name}}
            if "namespace" in gen:
                obj["metadata"]["namespace"] = gen["namespace"]
            if kind == "Secret":
                obj["type"] = gen.get("type", "Opaque")
            resources.append(obj)
            existing = [obj]
        elif behavior in ("merge", "replace"):
            if len(existing) != 1:
                raise RenderError(f"{kind} {name}: behavior {behavior} needs exactly one existing object")
            if behavior == "replace":
                existing[0].pop("data", None)
        else:
            raise Unsupported(f"generator behavior {behavior!r}")
        obj = existing[0]
        target = obj.setdefault("data", {})
        for key, value in data.items():
            if kind == "Secret":
                target[key] = base64.b64encode(value.encode()).decode()
            else:
                target[key] = value

    def _patch(self, directory: str, entry: dict, resources: list[dict]) -> None:
        if set(entry) - {"path", "patch", "target"}:
            raise Unsupported(f"patch fields {sorted(entry)}")
        if "path" in entry:
            with open(os.path.join(directory, entry["path"]), encoding="utf-8") as f:
                text = f.read()
        else:
            text = entry["patch"]
        body = yaml.safe_load(text)
        target = entry.get("target")
        if isinstance(body, list):
            if not target:
                raise RenderError("JSON 6902 patch without target")
            apply = lambda obj: _json6902(obj, body)  # noqa: E731
        elif isinstance(body, dict):
            if not target:
                group, version, kind = _gvk(body)
                target = {"kind": kind, "name": re.escape(body.get("metadata", {}).get("name", ""))}
            patch_body = {k: v for k, v in body.items() if k not in ("apiVersion", "kind", "metadata")}
            if "metadata" in body:
                meta = {k: v for k, v in body["metadata"].items() if k not in ("name", "namespace")}
                if meta:
                    patch_body["metadata"] = meta
            apply = lambda obj: _merge_patch(obj, patch_body)  # noqa: E731
        else:
            raise RenderError(f"patch is neither a map nor a list: {text[:60]!r}")
        hits = 0
        for i, obj in enumerate(resources):
            if _matches(obj, target):
                resources[i] = apply(obj)
                hits += 1
        if hits == 0:
            raise RenderError(f"patch target {target} matches nothing")


def build(directory: str) -> list[dict]:
    return Kustomizer().build(directory)
