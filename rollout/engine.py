"""Thin wrapper over a vLLM engine: chat-templated sampling with per-token logprobs, in-place weight reload.

Runs inside a rollout worker process (a Ray actor, or the `erv-grpo eval`/`bench` process).
This is the only module of the project that imports vllm; there is no fallback engine.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from rollout.errors import PromptTooLongError

Prompt = str | list[dict]  # plain user text, or chat messages [{"role": ..., "content": ...}]
# A prompt's media: {"video": uint8 (T, H, W, 3), "audio": float32 (N,) at 16 kHz, "video_fps": float}.
Media = dict
AUDIO_RATE = 16000
DEFAULT_VIDEO_FPS = 2.0  # the Qwen processors' default: sets the video's temporal rotary step
# Multimodal placeholder / boundary tokens of Qwen2-VL, Qwen2.5-VL and Qwen2.5-Omni: never sampled.
PLACEHOLDER_TOKENS = (
    "<|AUDIO|>", "<|IMAGE|>", "<|VIDEO|>", "<|audio_bos|>", "<|audio_eos|>", "<|vision_bos|>",
    "<|vision_eos|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>", "<|vision_start|>",
    "<|vision_end|>", "<|audio_pad|>", "<|audio_start|>", "<|audio_end|>",
)  # fmt: skip


@dataclass
class SampledCompletion:
    """One sampled completion: what the learner needs (token ids, sampling logprobs) and what the reward reads."""

    token_ids: list[int]
    text: str
    logprobs: list[float]  # (T,) logprob of each sampled token under the sampling policy
    finish_reason: str  # "stop" (EOS / stop string) or "length"


@dataclass
class PromptSamples:
    """All n completions sampled for one prompt, with the chat-templated prompt token ids."""

    prompt_token_ids: list[int]  # as the engine expanded them (one id per video / audio placeholder position)
    completions: list[SampledCompletion]
    prompt_text: str | None = None  # the chat-templated text given to the engine (multimodal prompts)


class VllmEngine:
    """One in-process vLLM engine over a Hugging Face model folder; records the policy version it holds."""

    def __init__(
        self,
        model_path: str | Path,
        *,
        dtype: str = "float32",
        max_model_len: int = 1024,
        enforce_eager: bool = True,
        gpu_memory_utilization: float = 0.5,
        kv_cache_bytes: int | None = 1 << 30,
        seed: int = 0,
        env: dict[str, str] | None = None,
        limit_mm_per_prompt: dict[str, int] | None = None,
        mm_processor_kwargs: dict | None = None,
    ) -> None:
        # vLLM reads its CPU settings from the environment at import/start time.
        for key, value in (env or {}).items():
            os.environ.setdefault(key, value)
        _register_in_process(model_path)
        from vllm import LLM

        mm = {}
        if limit_mm_per_prompt:
            mm["limit_mm_per_prompt"] = dict(limit_mm_per_prompt)
        if mm_processor_kwargs:
            mm["mm_processor_kwargs"] = dict(mm_processor_kwargs)

        self.model_path = str(model_path)
        self.dtype = dtype
        self.max_model_len = max_model_len
        self.llm = LLM(
            model=self.model_path,
            dtype=dtype,
            max_model_len=max_model_len,
            enforce_eager=enforce_eager,
            gpu_memory_utilization=gpu_memory_utilization,
            # An explicit size (CPU: else vLLM takes a share of the machine's RAM); None: vLLM sizes it
            # from gpu_memory_utilization (GPU workers pass None).
            kv_cache_memory_bytes=kv_cache_bytes,
            seed=seed,
            # A prefill split across steps rewinds the request's seeded generator, which vLLM's CPU
            # generators cannot do ("CPU Generator does not use offset"): schedule whole prompts only.
            enable_chunked_prefill=False,
            # Adds load_policy_weights to vLLM's worker: reload in place, then refresh tied layers.
            worker_extension_cls="rollout.engine.WeightSyncExtension",
            **mm,
        )
        self.tokenizer = self.llm.get_tokenizer()
        self.version = 0
        self._next_request = 0
        vocab = self.tokenizer.get_vocab()
        self.banned_token_ids = sorted({vocab[t] for t in PLACEHOLDER_TOKENS if t in vocab})
        # A hard mask (not a finite logit bias): a placeholder can never be drawn, however favoured.
        # vLLM reports raw logprobs (before this mask), the ones the learner computes.
        banned = set(self.banned_token_ids)
        self._allowed = [i for i in range(len(self.tokenizer)) if i not in banned] if banned else None

    def prompt_text(self, prompt: Prompt) -> str:
        """The chat-templated prompt text (assistant turn opened); typed content parts become placeholders."""
        messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt
        return self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)

    def prompt_token_ids(self, prompt: Prompt) -> list[int]:
        """Apply the model's chat template (with the assistant turn opened) and tokenize."""
        return list(self.tokenizer(self.prompt_text(prompt), add_special_tokens=False)["input_ids"])

    def iter_generate(
        self,
        prompts: Sequence[Prompt],
        *,
        n: int,
        temperature: float,
        top_p: float = 1.0,
        max_tokens: int = 512,
        seeds: Sequence[int | None] | None = None,
        media: Sequence[Media | None] | None = None,
    ) -> Iterator[tuple[int, PromptSamples]]:
        """Sample n completions per prompt; yield (prompt index, samples) as soon as each prompt's group is done.

        `media[i]`, when given, goes to the engine once for prompt i's n samples (vLLM's multi_modal_data).
        """
        from vllm import SamplingParams
        from vllm.sampling_params import RequestOutputKind

        engine = self.llm.llm_engine
        seeds = list(seeds) if seeds is not None else [None] * len(prompts)
        media = list(media) if media is not None else [None] * len(prompts)
        index_of: dict[str, int] = {}
        texts: dict[int, str] = {}
        for i, prompt in enumerate(prompts):
            if media[i]:
                texts[i] = self.prompt_text(prompt)
                request = {"prompt": texts[i], "multi_modal_data": multi_modal_data(media[i])}
                if media[i].get("video") is not None:
                    # The Omni processor takes the frame rate as a kwarg, not from the frames' metadata
                    # (else 2 fps): the temporal rotary step must match the learner's processor.
                    request["mm_processor_kwargs"] = {
                        "fps": float(media[i].get("video_fps") or DEFAULT_VIDEO_FPS)
                    }
                ids = self.tokenizer(texts[i], add_special_tokens=False)["input_ids"]  # before expansion
            else:
                ids = self.prompt_token_ids(prompt)
                request = {"prompt_token_ids": ids}
            if len(ids) >= self.max_model_len:
                raise PromptTooLongError(
                    f"prompt {i} has {len(ids)} tokens, max_model_len is {self.max_model_len}"
                )
            params = SamplingParams(
                n=n,
                temperature=temperature,
                top_p=top_p,
                max_tokens=min(max_tokens, self.max_model_len - len(ids)),
                logprobs=0,  # logprob of the sampled token only
                seed=seeds[i],
                output_kind=RequestOutputKind.FINAL_ONLY,
                allowed_token_ids=self._allowed,
            )
            request_id = f"r{self._next_request}"
            self._next_request += 1
            index_of[request_id] = i
            engine.add_request(request_id, request, params)
        # Drive the engine ourselves (instead of LLM.generate) so finished groups leave while others decode.
        while engine.has_unfinished_requests():
            for output in engine.step():
                if output.finished and output.request_id in index_of:
                    i = index_of.pop(output.request_id)
                    if len(output.prompt_token_ids) >= self.max_model_len:
                        raise PromptTooLongError(f"prompt {i} has {len(output.prompt_token_ids)} tokens "
                                                 f"with its media, max_model_len is {self.max_model_len}")  # fmt: skip
                    yield i, _to_samples(output, texts.get(i))

    def generate(self, prompts: Sequence[Prompt], **kwargs) -> list[PromptSamples]:
        """Like iter_generate, but return all groups in prompt order."""
        results: list[PromptSamples | None] = [None] * len(prompts)
        for i, samples in self.iter_generate(prompts, **kwargs):
            results[i] = samples
        return results  # type: ignore[return-value]

    def load_weights(self, version: int, buckets: Iterable[Iterable[tuple[str, object]]]) -> None:
        """Replace the engine's weights in place (no restart) with the learner's buckets and record the version."""
        weights = [(name, tensor) for bucket in buckets for name, tensor in bucket]
        self.llm.collective_rpc("load_policy_weights", kwargs={"weights": weights})
        # Cached prefixes and encoder outputs (vision / audio tower embeddings) came from the old weights.
        self.llm.reset_prefix_cache()
        self.llm.llm_engine.reset_encoder_cache()
        self.version = version

    # -- direct weight transport (run.weight_transport: collective; rollout/weight_receiver.py) --------
    def open_weight_transport(
        self, address: str, port: int, rank: int, world_size: int, timeout_s: float
    ) -> None:
        """Join the learner -> engines group as `rank` (blocks until every member has joined)."""
        kwargs = {
            "address": address,
            "port": port,
            "rank": rank,
            "world_size": world_size,
            "timeout_s": timeout_s,
        }
        self.llm.collective_rpc("open_weight_transport", kwargs=kwargs)

    def receive_weights(self) -> int:
        """Receive one sync over the group, in place like load_weights; returns and records its version."""
        (version,) = self.llm.collective_rpc("receive_policy_weights")
        self.llm.reset_prefix_cache()
        self.llm.llm_engine.reset_encoder_cache()  # tower outputs of the old weights
        self.version = int(version)
        return self.version


class WeightSyncExtension:
    """Mixed into vLLM's worker class (`worker_extension_cls`); its methods run in the vLLM worker process.

    vLLM's in-place `reload_weights` copies new values into a tied LM head's shared storage, but the
    head receives no weight of its own (the loader skips `lm_head.weight` of tied models), so its
    post-processing never re-runs: on CPU the GEMM keeps the weights it packed at engine start
    ("ParallelLMHead: Failed to load weights") and sampling used a stale output layer.
    """

    def load_policy_weights(self, weights: Iterable[tuple[str, object]]) -> list[str]:
        """Load `weights` in place; returns the modules whose kernels were rebuilt. CPU engines take
        rollout/inplace_load.py's direct path; others vLLM's reload, then re-run post-processing of
        every layer sharing a parameter."""
        from rollout import inplace_load

        model = self.model_runner.get_model()
        plan = inplace_load.plan_load(model)
        if plan is not None:
            first, weights = inplace_load.peek(weights)
            if first in plan.by_source:  # else names vLLM maps itself (hf_to_vllm_mapper)
                return inplace_load.load(plan, weights)
        self.reload_weights(weights_iterator=weights)
        return refresh_tied_layers(model)

    def open_weight_transport(self, **group) -> None:
        """Join the direct transport's group (a new one replaces an older one of a previous run)."""
        from rollout.weight_receiver import WeightReceiver

        if getattr(self, "_weight_receiver", None) is not None:
            self._weight_receiver.close()
        self._weight_receiver = WeightReceiver(**group, device=str(getattr(self, "device", "cpu")))

    def receive_policy_weights(self) -> int:
        """One sync: buckets streamed into load_policy_weights (the same reload and tied-layer refresh)."""
        return self._weight_receiver.receive(self.load_policy_weights)


def refresh_tied_layers(model) -> list[str]:
    """Re-run `quant_method.process_weights_after_loading` on each module that shares a parameter with
    another module (a tied LM head and its embedding); return their names.

    Post-processing derives kernel state (CPU: a packed GEMM weight) from the parameter; for a layer
    whose only parameter was loaded through another layer, it is the step an in-place reload skips.
    """
    owners: dict[int, list[tuple[str, object]]] = {}
    for name, module in model.named_modules():
        for param in module.parameters(recurse=False):
            owners.setdefault(id(param), []).append((name, module))
    refreshed: list[str] = []
    for group in owners.values():
        if len(group) < 2:
            continue
        for name, module in group:
            method = getattr(module, "quant_method", None)
            if method is not None and name not in refreshed:
                method.process_weights_after_loading(module)
                refreshed.append(name)
    return refreshed


def multi_modal_data(media: Media) -> dict:
    """A media dict -> vLLM's multi_modal_data: frames with their metadata, (waveform, 16000)."""
    out = {}
    if media.get("video") is not None:
        frames = media["video"]
        fps = float(media.get("video_fps") or DEFAULT_VIDEO_FPS)
        n = int(frames.shape[0])
        # Qwen2.5-VL's processor needs the metadata; the frames are already sampled (no re-sampling).
        meta = {"fps": fps, "total_num_frames": n, "frames_indices": list(range(n)), "duration": n / fps,
                "do_sample_frames": False}  # fmt: skip
        out["video"] = (frames, meta)
    if media.get("audio") is not None:
        out["audio"] = (media["audio"], AUDIO_RATE)
    return out


def _register_in_process(model_path) -> None:
    """Register the folder's architectures with vLLM by class object, when torchvision needed our help.

    vLLM inspects a lazily registered architecture in a fresh Python subprocess, which does not import
    `common` and so not its torchvision hook: there the registry's CUDA torchvision fails to import.
    Registering the same class object makes vLLM inspect it in this process instead.
    """
    import json

    from common.torchvision_ops import ensure_torchvision_importable

    config = Path(model_path) / "config.json"
    if not config.is_file() or ensure_torchvision_importable() != "declared":
        return
    import importlib

    from vllm import ModelRegistry

    for arch in json.loads(config.read_text()).get("architectures") or []:
        lazy = ModelRegistry.models.get(arch)
        if lazy is not None and hasattr(lazy, "module_name"):
            cls = getattr(importlib.import_module(lazy.module_name), lazy.class_name)
            ModelRegistry.register_model(arch, cls)


def _to_samples(output, prompt_text: str | None = None) -> PromptSamples:
    completions = []
    for c in output.outputs:
        token_ids = list(c.token_ids)
        # logprobs=0 gives one dict per position holding the sampled token (plus nothing else).
        logprobs = [float(step[tok].logprob) for tok, step in zip(token_ids, c.logprobs, strict=True)]
        completions.append(SampledCompletion(token_ids, c.text, logprobs, str(c.finish_reason)))
    return PromptSamples(list(output.prompt_token_ids), completions, prompt_text)
