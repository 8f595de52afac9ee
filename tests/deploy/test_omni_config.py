"""configs/a100-omni.yaml (Qwen2.5-Omni-7B thinker on clips) validates, has the settings the 7B omni run
needs, and agrees with the a100 overlay's RayJob when its entrypoint runs this config."""

from __future__ import annotations

import copy

from tests.deploy import test_cluster_config as cluster_checks
from tests.deploy.conftest import ROOT, index

OMNI_CONFIG = "configs/a100-omni.yaml"


def test_omni_config_has_what_a_7b_clip_run_needs():
    from orchestrator.config import load_config

    c = load_config(ROOT / OMNI_CONFIG)
    assert c.learner.strategy == "fsdp" and c.learner.precision == "bf16" and c.rollout.dtype == "bf16"
    assert c.learner.freeze_vision and c.learner.freeze_audio
    assert c.rollout.limit_mm_per_prompt == {"video": 1, "audio": 1}
    # the learner's processor must tokenize prompts exactly as vLLM did
    assert c.rollout.mm_processor_kwargs == c.learner.mm_processor_kwargs
    assert c.rollout.mm_processor_kwargs["min_pixels"] <= c.rollout.mm_processor_kwargs["max_pixels"]
    assert "omni" in c.learner.model and c.data.video_max_pixels == 384 * 384
    assert c.data.media_cache_dir.startswith(c.run.output_dir + "/")  # on a volume the driver pod mounts


def test_a100_overlay_agrees_with_the_omni_config(rendered):
    objects = copy.deepcopy(rendered["a100"])
    job = index(objects)[("RayJob", "erv-grpo-train")]
    job["spec"]["entrypoint"] = job["spec"]["entrypoint"].replace("configs/a100-cluster.yaml", OMNI_CONFIG)
    assert OMNI_CONFIG in job["spec"]["entrypoint"]
    cluster_checks.test_overlay_agrees_with_cluster_config("a100", {"a100": objects})
