"""deploy/k8s overlays agree with the training config their RayJob runs (configs/a100-cluster.yaml
plus the entrypoint's dotted overrides): rollout and learner GPUs, reward address, ports, secrets."""

from __future__ import annotations

import copy
import shlex

import pytest

from tests.deploy.conftest import OVERLAYS, ROOT, index

CLUSTER_CONFIG = ROOT / "configs/a100-cluster.yaml"
REWARD_SERVICES = {"erv-reward", "erv-reward-headless"}
NAMESPACE = "erv-grpo"


def _entrypoint_config(entrypoint: str):
    """The TrainConfig the RayJob's `erv-grpo train --config FILE [KEY=VALUE ...]` would load,
    parsed by the real `erv-grpo` argument parser."""
    from orchestrator.cli import build_parser
    from orchestrator.config import load_config

    argv = shlex.split(entrypoint)
    if argv[0] == "cd":  # `cd /home/ray && erv-grpo train ...`: the image keeps configs/ under /home/ray
        assert argv[2] == "&&", entrypoint
        argv = argv[3:]
    assert argv[:2] == ["erv-grpo", "train"], entrypoint
    args = build_parser().parse_args(argv[1:])
    assert args.command == "train" and args.resume is None
    return load_config(ROOT / args.config, args.overrides)


def _host_port(address: str) -> tuple[str, int]:
    address = address.removeprefix("dns:///").removeprefix("dns:")
    host, port = address.rsplit(":", 1)
    return host, int(port)


def _group_gpus(group: dict) -> int:
    return group["replicas"] * int(
        group["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"]
    )


@pytest.mark.skipif(
    not CLUSTER_CONFIG.is_file(), reason="configs/a100-cluster.yaml not written yet (orchestrator)"
)
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_agrees_with_cluster_config(overlay, rendered):
    objs = index(rendered[overlay])
    job = objs[("RayJob", "erv-grpo-train")]["spec"]
    config = _entrypoint_config(job["entrypoint"])
    groups = {g["groupName"]: g for g in job["rayClusterSpec"]["workerGroupSpecs"]}

    rollout_gpus = config.rollout.num_workers * config.rollout.num_gpus_per_worker
    assert rollout_gpus == _group_gpus(groups["rollout"]), "rollout GPUs: config vs RayJob worker group"
    learner_gpus = getattr(config.ray, "num_learners", 1) * config.ray.learner_num_gpus
    assert learner_gpus == _group_gpus(groups["learner"]), "learner GPUs: config vs RayJob worker group"
    assert config.ray.address in (None, "auto"), "the driver runs on the head pod: join the local Ray"

    assert config.reward.address is not None, "on the cluster the reward service is reached by address"
    host, port = _host_port(config.reward.address)
    service, _, rest = host.partition(".")
    assert service in REWARD_SERVICES and rest in (
        "",
        NAMESPACE,
        f"{NAMESPACE}.svc",
        f"{NAMESPACE}.svc.cluster.local",
    )
    assert port == 50051
    assert port in {p["port"] for p in objs[("Service", service)]["spec"]["ports"]}

    # Every absolute path the config names is mounted in the pods that use it.
    head = job["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]["containers"][0]
    mounts = {"head": _mounts(head)}
    for name, group in groups.items():
        mounts[name] = _mounts(group["template"]["spec"]["containers"][0])
    needs = {
        "head": [config.run.output_dir, config.data.train_file, config.data.test_file, config.learner.model],
        "rollout": [config.learner.model, config.reward.token_file, config.reward.tls_ca,
                    config.rollout.reward_token_file, config.rollout.reward_tls_ca],
        "learner": [config.learner.model, config.run.output_dir],
    }  # fmt: skip
    for pod, paths in needs.items():
        for path in paths:
            if path and path.startswith("/"):
                assert any(path == m or path.startswith(m + "/") for m in mounts[pod]), (
                    f"{path} not mounted on {pod}"
                )

    # Prometheus scrapes the pod IP: a metrics exporter bound to loopback would be unreachable.
    if hasattr(config.metrics, "host"):
        assert config.metrics.host in ("0.0.0.0", "::"), "metrics.host must listen on the pod IP in a cluster"
    assert (
        config.metrics.prometheus_port
        == {p["name"]: p["containerPort"] for p in head["ports"]}["erv-metrics"]
    )


def _mounts(container: dict) -> list[str]:
    return [m["mountPath"] for m in container.get("volumeMounts", [])]


@pytest.mark.skipif(
    not CLUSTER_CONFIG.is_file(), reason="configs/a100-cluster.yaml not written yet (orchestrator)"
)
def test_agreement_check_catches_a_mismatch(rendered):
    objects = copy.deepcopy(rendered["a100"])
    job = index(objects)[("RayJob", "erv-grpo-train")]
    job["spec"]["entrypoint"] = job["spec"]["entrypoint"].replace(
        "rollout.num_workers=24", "rollout.num_workers=16"
    )
    with pytest.raises(AssertionError, match="rollout GPUs"):
        test_overlay_agrees_with_cluster_config("a100", {"a100": objects})
