"""Video + audio prompts in the learner: model loading, the HF processor, the prompt-id check, the forward.

Runs in the learner process. The learner trains the language-model part of an omni / VL model
(Qwen2.5-Omni thinker, Qwen2.5-VL) on the same decoded arrays and chat-templated prompt text the
rollout engine got. The model's own Hugging Face processor turns them into tensors (video pixels
and grid, audio features and mask); its input_ids must equal the prompt token ids vLLM expanded,
or the update stops with `PromptIdsMismatchError` naming the completion and the first differing
position (a mismatch would train on other positions than were sampled). The forward passes no
position ids: the model computes its 3-D rotary positions from input_ids, the grids and the
attention mask (left padding included), as vLLM does.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from pathlib import Path

import torch
import torch.nn.functional as F

from policy.errors import PolicyError
from policy.grpo import token_logprobs

# config.json architectures -> (family, prefix the exported names need for vLLM's loader)
ARCHITECTURES = {
    "Qwen2_5OmniForConditionalGeneration": ("omni", "thinker."),  # vLLM maps thinker.* and skips the rest
    "Qwen2_5OmniModel": ("omni", "thinker."),
    "Qwen2_5_VLForConditionalGeneration": ("vl", ""),
    "Qwen2VLForConditionalGeneration": ("vl", ""),
}
TOWERS = {"vision": ("visual",), "audio": ("audio_tower",)}  # module names in the HF classes
_ROW_KEYS = (
    "pixel_values_videos",
    "video_grid_thw",
    "video_second_per_grid",
    "second_per_grid_ts",
    "pixel_values",
    "image_grid_thw",
)  # fmt: skip  (concatenated over rows along dim 0)


class PromptIdsMismatchError(PolicyError, ValueError):
    """The learner's processor tokenized a multimodal prompt differently from the rollout engine."""


def architecture(name_or_path: str) -> tuple[str, str] | None:
    """(family, export prefix) of a local multimodal model folder; None for a text-only model or a hub id."""
    config = Path(name_or_path).expanduser() / "config.json"
    if not config.is_file():
        return None
    for arch in json.loads(config.read_text()).get("architectures") or []:
        if arch in ARCHITECTURES:
            return ARCHITECTURES[arch]
    return None


def load_model(path: str, family: str, device: str):
    """(trainable model, the model save_pretrained writes): the thinker and its Omni wrapper, or the VL model twice."""
    from transformers import Qwen2_5_VLForConditionalGeneration, Qwen2_5OmniForConditionalGeneration

    if family == "omni":
        full = Qwen2_5OmniForConditionalGeneration.from_pretrained(path, dtype=torch.float32).to(device)
        return full.thinker, full
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(path, dtype=torch.float32).to(device)
    return model, model


def freeze_towers(model, vision: bool, audio: bool) -> list[str]:
    """requires_grad_(False) on the vision / audio encoders; returns the frozen module names."""
    frozen = []
    for kind, flag in (("vision", vision), ("audio", audio)):
        if not flag:
            continue
        for name, module in model.named_modules():
            if name.split(".")[-1] in TOWERS[kind]:
                module.requires_grad_(False)
                frozen.append(name)
    return frozen


class MediaProcessor:
    """The model folder's HF processor over (prompt text, media dict) -> tensors of one prompt (batch 1)."""

    def __init__(self, path: str, mm_processor_kwargs: dict | None = None, max_cache_bytes: int = 256 << 20):
        from common.torchvision_ops import ensure_torchvision_importable

        ensure_torchvision_importable()
        from transformers import AutoProcessor

        self.processor = AutoProcessor.from_pretrained(path)
        self.kwargs = dict(mm_processor_kwargs or {})
        self.tokenizer = self.processor.tokenizer
        # A clip comes back every epoch: its tensors are kept (LRU, bounded by bytes) under the media
        # cache's content key and the prompt text, so the processor runs once per clip, not per step.
        self._cache: OrderedDict[tuple[str, str], dict] = OrderedDict()
        self.cache_bytes, self.max_cache_bytes, self.calls = 0, max_cache_bytes, 0

    def __call__(self, prompt_text: str, media: dict) -> dict:
        key = (media["cache_key"], prompt_text) if media.get("cache_key") else None
        if key is not None and key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        out = self._process(prompt_text, media)
        if key is not None:
            self._cache[key] = out
            self.cache_bytes += sum(t.numel() * t.element_size() for t in out.values())
            while self.cache_bytes > self.max_cache_bytes and self._cache:
                _, old = self._cache.popitem(last=False)
                self.cache_bytes -= sum(t.numel() * t.element_size() for t in old.values())
        return out

    def clear_cache(self) -> None:
        """Forget every kept clip (a benchmark's warm-up must not count as a seen clip)."""
        self._cache.clear()
        self.cache_bytes = 0

    def _process(self, prompt_text: str, media: dict) -> dict:
        self.calls += 1
        kw = dict(self.kwargs)
        if media.get("video") is not None:
            kw["videos"] = [media["video"]]
            fps, n = (
                float(media.get("video_fps") or 2.0),
                len(media["video"]),
            )  # as rollout.engine.DEFAULT_VIDEO_FPS
            # The frames' timing sets the temporal rotary step: the same metadata vLLM gets (the Omni
            # processor reads `fps`, Qwen2.5-VL's the metadata; without it, it assumes 24 fps).
            kw["fps"] = fps
            kw["video_metadata"] = [{"fps": fps, "total_num_frames": n, "frames_indices": list(range(n)),
                                     "duration": n / fps}]  # fmt: skip
        if media.get("audio") is not None:
            kw["audio"] = [media["audio"]]
        out = self.processor(text=[prompt_text], return_tensors="pt", **kw)
        return {k: v for k, v in out.items() if isinstance(v, torch.Tensor)}


def check_prompt_ids(expected: list[int], processed: dict, completion_id: str) -> None:
    """Raise PromptIdsMismatchError unless the processor's input_ids equal the engine's expanded prompt ids."""
    got = processed["input_ids"][0].tolist()
    if got == list(expected):
        return
    first = next(
        (i for i, (a, b) in enumerate(zip(got, expected, strict=False)) if a != b),
        min(len(got), len(expected)),
    )
    raise PromptIdsMismatchError(
        f"completion {completion_id!r}: the learner's processor gives {len(got)} prompt tokens, the rollout engine "
        f"expanded {len(expected)}; first difference at position {first} (learner "
        f"{got[first] if first < len(got) else 'end'}, engine {expected[first] if first < len(expected) else 'end'}); "
        "check that learner.mm_processor_kwargs equals rollout.mm_processor_kwargs"
    )


def process_rows(processor, prompts, completion_ids, media, texts) -> list[dict | None]:
    """Per row: the processor's tensors of its prompt (once per distinct media dict), ids checked."""
    done: dict[int, dict] = {}
    rows: list[dict | None] = []
    for ids, cid, m, text in zip(prompts, completion_ids, media, texts, strict=True):
        if not m:
            rows.append(None)
            continue
        if processor is None:
            raise PromptIdsMismatchError(f"completion {cid!r} has media, but the policy is a text-only model")
        key = id(m)  # the G rows of a group share one media dict
        if key not in done:
            done[key] = processor(text, m)
        check_prompt_ids(ids, done[key], cid)
        rows.append(done[key])
    return rows


def mrope_settings(model, family: str) -> dict | None:
    """What `reference_mrope_positions` needs of a Qwen2-VL / Qwen2.5-VL model; None for the Omni thinker."""
    if family != "vl":
        return None  # the thinker's own get_rope_index matches vLLM's (measured 1.8e-7)
    c = model.config
    return {"image": c.image_token_id, "video": c.video_token_id, "merge": c.vision_config.spatial_merge_size,
            "tokens_per_second": getattr(c.vision_config, "tokens_per_second", 1.0)}  # fmt: skip


def reference_mrope_positions(ids: list[int], processed: dict, s: dict) -> torch.Tensor:
    """(3, L) rotary positions of one unpadded row, by the reference Qwen2-VL rule that vLLM implements:
    a vision block gets (t * t_factor, h, w) grid positions after the text before it, and the text after
    it continues at the block's largest position + 1.

    Written here because transformers 5.19's Qwen2.5-VL get_rope_index continues the text after a
    video at max(h, w) / merge instead, ignoring the temporal span: 1e-3 logprob off vLLM on 4 frames.
    """
    grids = [
        (k, g) for k in ("video", "image") for g in processed.get(f"{k}_grid_thw", torch.zeros(0, 3)).tolist()
    ]
    videos = iter(g for k, g in grids if k == "video")
    images = iter(g for k, g in grids if k == "image")
    seconds = iter(processed.get("second_per_grid_ts", torch.ones(len(grids))).tolist())
    parts, st, i = [], 0, 0
    while i < len(ids):
        kind = "video" if ids[i] == s["video"] else "image" if ids[i] == s["image"] else None
        if kind is None:
            j = i
            while j < len(ids) and ids[j] not in (s["video"], s["image"]):
                j += 1
            parts.append(torch.arange(j - i).expand(3, -1) + st)
            st += j - i
            i = j
            continue
        t, h, w = next(videos) if kind == "video" else next(images)
        h, w = h // s["merge"], w // s["merge"]
        factor = next(seconds) * s["tokens_per_second"] if kind == "video" else 1.0
        grid = torch.stack(torch.meshgrid(torch.arange(t), torch.arange(h), torch.arange(w), indexing="ij"))
        if factor != 1.0:
            grid[0] = (grid[0] * factor).long()
        parts.append(grid.reshape(3, -1) + st)
        st = int(parts[-1].max()) + 1
        i += t * h * w
    return torch.cat(parts, dim=1)


def attach_media(
    mb: dict, prompt_lens: list[int], processed: list[dict | None], mrope: dict | None = None
) -> dict:
    """Add mb["mm"]: the forward's media kwargs for the rows of a padded micro-batch (None = a text row).

    Row tensors are concatenated along dim 0 (the model splits them by grid / mask); audio features
    are right-padded to the longest; mm_token_type_ids is laid out like input_ids.
    """
    device = mb["input_ids"].device
    n, width = mb["input_ids"].shape
    p_max = width - mb["completion_mask"].shape[1]
    rows = [p for p in processed if p]
    mm: dict = {}
    for key in _ROW_KEYS:
        parts = [p[key] for p in rows if key in p]
        if parts:
            mm[key] = torch.cat(parts, dim=0).to(device)
    feats = [p for p in rows if "input_features" in p]
    if feats:
        longest = max(p["input_features"].shape[-1] for p in feats)
        mm["input_features"] = torch.cat(
            [F.pad(p["input_features"], (0, longest - p["input_features"].shape[-1])) for p in feats]
        ).to(device)
        mm["feature_attention_mask"] = torch.cat(
            [
                F.pad(p["feature_attention_mask"], (0, longest - p["feature_attention_mask"].shape[-1]))
                for p in feats
            ]
        ).to(device)
    if any("mm_token_type_ids" in p for p in rows):
        types = torch.zeros((n, width), dtype=torch.long)
        for i, (p, length) in enumerate(zip(processed, prompt_lens, strict=True)):
            if p and "mm_token_type_ids" in p:
                types[i, p_max - length : p_max] = p["mm_token_type_ids"][0]
        mm["mm_token_type_ids"] = types.to(device)
    if mrope is not None:  # explicit positions (padding: 1, masked anyway)
        positions = torch.ones((3, n, width), dtype=torch.long)
        mask = mb["attention_mask"].bool().cpu()
        for r in range(n):
            ids = mb["input_ids"][r].cpu()[mask[r]].tolist()
            positions[:, r, mask[r]] = reference_mrope_positions(ids, processed[r] or {}, mrope)
        mm["position_ids"] = positions.to(device)
    mb["mm"] = mm
    return mb


def completion_logprobs(model, mb: dict, autocast) -> torch.Tensor:
    """(N, C) logprobs of the completion tokens; the model derives its 3-D rotary positions itself."""
    c = mb["completion_mask"].shape[1]
    with autocast():
        # Full logits: these forwards take no logits_to_keep (the omni thinker's passes kwargs to its LM).
        out = model(
            input_ids=mb["input_ids"], attention_mask=mb["attention_mask"], use_cache=False, **mb["mm"]
        )
    logits = out.logits[:, -c - 1 : -1, :]  # (N, C, V): position P-1+j predicts completion token j
    return token_logprobs(logits, mb["input_ids"][:, -c:])
