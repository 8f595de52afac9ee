"""A small Python renderer of the kustomize subset deploy/k8s uses (tests only; users run kustomize).

Runs in the pytest process. Supported kustomization fields: resources (files and directories),
namespace, images, patches (RFC 6902 JSON patches, from `path` or inline `patch`, selected by
`target` kind/name). Anything else raises, so a new field in deploy/k8s cannot be silently
ignored here. test_kustomize.py checks it against `kubectl kustomize` wherever kubectl exists.
"""

from __future__ import annotations

import copy
from pathlib import Path

import yaml

SUPPORTED = {"apiVersion", "kind", "namespace", "resources", "images", "patches"}
# Kinds the namespace transformer leaves alone (the ones deploy/k8s could plausibly contain).
CLUSTER_SCOPED = {
    "Namespace",
    "ClusterRole",
    "ClusterRoleBinding",
    "CustomResourceDefinition",
    "PriorityClass",
}


class KustomizeError(ValueError):
    """The kustomization uses something this renderer does not support, or is wrong."""


def load_yaml_docs(path: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def build(directory: str | Path) -> list[dict]:
    """Render the kustomization in `directory` to a list of Kubernetes objects."""
    directory = Path(directory)
    kfile = directory / "kustomization.yaml"
    if not kfile.is_file():
        raise KustomizeError(f"{directory} has no kustomization.yaml")
    kust = yaml.safe_load(kfile.read_text()) or {}
    unknown = set(kust) - SUPPORTED
    if unknown:
        raise KustomizeError(f"{kfile}: unsupported fields {sorted(unknown)}")
    objects: list[dict] = []
    for entry in kust.get("resources", []):
        target = directory / entry
        objects.extend(build(target) if target.is_dir() else load_yaml_docs(target))
    _check_unique(objects, kfile)
    for patch in kust.get("patches", []):
        _apply_patch(objects, patch, directory)
    if "namespace" in kust:
        for obj in objects:
            if obj["kind"] not in CLUSTER_SCOPED:
                obj.setdefault("metadata", {})["namespace"] = kust["namespace"]
    for image in kust.get("images", []):
        for obj in objects:
            _set_images(obj, image)
    return objects


def index(objects: list[dict]) -> dict[tuple[str, str], dict]:
    """{(kind, name): object} for lookups in tests."""
    return {(o["kind"], o["metadata"]["name"]): o for o in objects}


def _check_unique(objects: list[dict], where: Path) -> None:
    seen = set()
    for obj in objects:
        key = (obj.get("kind"), obj.get("metadata", {}).get("name"))
        if None in key:
            raise KustomizeError(f"{where}: an object without kind or metadata.name")
        if key in seen:
            raise KustomizeError(f"{where}: duplicate object {key}")
        seen.add(key)


def _apply_patch(objects: list[dict], patch: dict, directory: Path) -> None:
    if set(patch) - {"path", "patch", "target"}:
        raise KustomizeError(f"unsupported patch fields {sorted(set(patch) - {'path', 'patch', 'target'})}")
    ops = (
        yaml.safe_load((directory / patch["path"]).read_text())
        if "path" in patch
        else yaml.safe_load(patch["patch"])
    )
    if not isinstance(ops, list):
        raise KustomizeError("only JSON 6902 patches (a list of operations) are supported")
    target = patch.get("target") or {}
    if set(target) - {"kind", "name"}:
        raise KustomizeError(f"unsupported target selector {sorted(set(target) - {'kind', 'name'})}")
    matched = [
        o for o in objects
        if target.get("kind", o["kind"]) == o["kind"] and target.get("name", o["metadata"]["name"]) == o["metadata"]["name"]
    ]  # fmt: skip
    if not matched:
        raise KustomizeError(f"patch target {target} matches no object")
    for obj in matched:
        for op in ops:
            json_patch(obj, op)


def _pointer(path: str) -> list[str]:
    if not path.startswith("/"):
        raise KustomizeError(f"JSON pointer {path!r} must start with /")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _child(node, key: str):
    if isinstance(node, list):
        return node[int(key)]
    if key not in node:
        raise KustomizeError(f"path element {key!r} does not exist")
    return node[key]


def json_patch(obj: dict, op: dict) -> None:
    """Apply one RFC 6902 operation (add, replace, remove, test) in place."""
    parts = _pointer(op["path"])
    parent = obj
    for key in parts[:-1]:
        parent = _child(parent, key)
    last = parts[-1]
    kind = op["op"]
    if kind == "test":
        if _child(parent, last) != op["value"]:
            raise KustomizeError(f"test failed at {op['path']}")
    elif kind == "remove":
        _child(parent, last)
        del parent[int(last) if isinstance(parent, list) else last]
    elif kind == "replace":
        _child(parent, last)
        parent[int(last) if isinstance(parent, list) else last] = copy.deepcopy(op["value"])
    elif kind == "add":
        value = copy.deepcopy(op["value"])
        if isinstance(parent, list):
            parent.append(value) if last == "-" else parent.insert(int(last), value)
        else:
            parent[last] = value
    else:
        raise KustomizeError(f"unsupported JSON patch op {kind!r}")


def _set_images(node, image: dict) -> None:
    """Rewrite `image` of every container whose image name matches, at any depth (CRDs too)."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("containers", "initContainers") and isinstance(value, list):
                for container in value:
                    container["image"] = _new_image(container.get("image", ""), image)
            _set_images(value, image)
    elif isinstance(node, list):
        for item in node:
            _set_images(item, image)


def _new_image(current: str, image: dict) -> str:
    name, tag = current, None
    if "@" in name:
        name = name.split("@", 1)[0]
    elif ":" in name.rsplit("/", 1)[-1]:
        name, tag = name.rsplit(":", 1)
    if name != image["name"]:
        return current
    name = image.get("newName", name)
    if "digest" in image:
        return f"{name}@{image['digest']}"
    tag = image.get("newTag", tag)
    return f"{name}:{tag}" if tag else name
