"""`erv-grpo bench rollout --clips FILE`: clip-prompt rollouts with vLLM, timed per phase.

Runs in the calling process (one in-process vLLM engine, no Ray, no reward service). Each step takes
prompts_per_step clip prompts with their media (MediaLoader: PyAV decode on a cache miss, the
content-addressed cache after), samples G completions per prompt, then runs the learner's processor
once per prompt (what the learner does before its forward). Reported: completion tokens/s, the
decode-cache hit rate, and the share of step time spent decoding and preprocessing media, for the
first epoch (every clip decoded) and the later ones (every clip seen), after a warm-up. vLLM's own
preprocessing of the media is inside its generate time and is not split out here.
"""

from __future__ import annotations

import math
import tempfile
import time
from pathlib import Path

from orchestrator.data import PromptSampler, load_prompts, model_prompt
from orchestrator.errors import OrchestratorError
from orchestrator.media_loader import MediaLoader, take_with_media


def clip_rollout_steps(config, clips_file: Path, model: str, epochs: int, group_size: int,
                       max_tokens: int, cache_dir: Path | None = None) -> dict:  # fmt: skip
    """Time `epochs` passes over the clip prompts in steps of config.run.prompts_per_step prompts."""
    from policy.multimodal import MediaProcessor
    from rollout.engine import VllmEngine

    records = load_prompts(clips_file)
    if not any(r.has_media for r in records):
        raise OrchestratorError(f"{clips_file} has no clip prompt (no 'video' / 'audio' field)")
    per_step = config.run.prompts_per_step
    rollout = config.rollout
    with tempfile.TemporaryDirectory(prefix="bench-media-") as tmp:  # a cold cache: epoch 1 decodes
        loader = MediaLoader(cache_dir or Path(tmp) / "media", config.data.video_max_pixels)
        engine = VllmEngine(model, dtype=rollout.engine_dtype()[0], max_model_len=rollout.max_model_len,
                            enforce_eager=rollout.enforce_eager, env=rollout.engine_env(),
                                    kv_cache_bytes=rollout.kv_cache_bytes(),
                            limit_mm_per_prompt=rollout.limit_mm_per_prompt,
                            mm_processor_kwargs=rollout.mm_processor_kwargs)  # fmt: skip
        processor = MediaProcessor(model, config.learner.mm_processor_kwargs)
        # Warm-up (compilation, first-call allocations) on one clip decoded outside the timed loader.
        first = next(r for r in records if r.has_media)
        warm = MediaLoader(Path(tmp) / "warm-up", config.data.video_max_pixels).load(first)
        (group,) = engine.generate([model_prompt(first)], n=2, temperature=1.0, max_tokens=4, media=[warm])
        processor(group.prompt_text, warm)
        processor.clear_cache()  # the warm-up clip is timed like any other in epoch 1
        sampler = PromptSampler(records, config.run.seed, shuffle=False)
        steps = []
        for step in range(epochs * math.ceil(len(records) / per_step)):
            decodes, hits = loader.decodes, loader.hits
            t0 = time.perf_counter()
            prompts, media, errors = take_with_media(sampler, per_step, loader, config.data.on_media_error)
            t1 = time.perf_counter()
            groups = engine.generate([model_prompt(p) for p in prompts], n=group_size,
                                     temperature=rollout.temperature, max_tokens=max_tokens,
                                     seeds=[step * per_step + i for i in range(per_step)], media=media)  # fmt: skip
            t2 = time.perf_counter()
            for g, m in zip(groups, media, strict=True):
                if m is not None:
                    processor(g.prompt_text, m)  # once per prompt, for its G completions
            t3 = time.perf_counter()
            steps.append({"step": step + 1, "epoch": step * per_step // len(records) + 1,
                          "decode": t1 - t0, "generate": t2 - t1, "preprocess": t3 - t2, "step_seconds": t3 - t0,
                          "completion_tokens": sum(len(c.token_ids) for g in groups for c in g.completions),
                          "decodes": loader.decodes - decodes, "cache_hits": loader.hits - hits,
                          "media_errors": len(errors)})  # fmt: skip
        del engine
    return {"clips_file": str(clips_file), "model": model, "prompts": len(records), "prompts_per_step": per_step,
            "group_size": group_size, "max_tokens": max_tokens, "steps": steps,
            "first_epoch": summary([s for s in steps if s["epoch"] == 1]),
            "after_first_epoch": summary([s for s in steps if s["epoch"] > 1]),
            "all": summary(steps)}  # fmt: skip


def summary(steps: list[dict]) -> dict:
    """Totals of timed steps: tokens/s of generate, cache hit rate, media (decode + preprocess) share."""
    if not steps:
        return {}
    total = sum(s["step_seconds"] for s in steps)
    generate = sum(s["generate"] for s in steps)
    lookups = sum(s["decodes"] + s["cache_hits"] for s in steps)
    media = sum(s["decode"] + s["preprocess"] for s in steps)
    return {
        "steps": len(steps),
        "tokens_per_second": sum(s["completion_tokens"] for s in steps) / generate,
        "decodes": sum(s["decodes"] for s in steps),
        "cache_hits": sum(s["cache_hits"] for s in steps),
        "cache_hit_rate": sum(s["cache_hits"] for s in steps) / lookups if lookups else 0.0,
        "decode_share": sum(s["decode"] for s in steps) / total,
        "preprocess_share": sum(s["preprocess"] for s in steps) / total,
        "media_share": media / total,
        "media_errors": sum(s["media_errors"] for s in steps),
    }
