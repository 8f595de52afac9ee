"""Tiny random Qwen2.5-Omni thinker and Qwen2.5-VL folders: tests and the tiny clip demo (no hub here).

`build_tiny_omni(path)` / `build_tiny_vl(path)` write a Hugging Face folder (config, seeded random
fp32 weights, tokenizer with the architecture's special tokens and a chat template that renders
typed content parts, processor configs) that transformers and vLLM's CPU backend both load:
text head size 64 (the CPU attention rejects 16), small vision (depth 2) and audio (2 layers)
towers. The Omni folder is a `Qwen2_5OmniForConditionalGeneration` without talker
(`enable_audio_output: false`): vLLM serves its thinker, the learner trains the thinker.
Deterministic for a seed. Runs in the test / CLI process; ~2 s.
"""

from __future__ import annotations

from pathlib import Path

# The architectures' own special tokens (names as in the released tokenizers).
OMNI_SPECIAL = [
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|AUDIO|>", "<|audio_bos|>", "<|audio_eos|>",
    "<|IMAGE|>", "<|VIDEO|>", "<|vision_bos|>", "<|vision_eos|>", "<|vision_pad|>",
]  # fmt: skip
VL_SPECIAL = [
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
    "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>",
]  # fmt: skip
# Typed content parts ({"type": "video"|"audio"|"image"|"text"}) become the model's placeholders.
_CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for part in message['content'] %}"
    "{% if part['type'] == 'video' %}@VIDEO@{% elif part['type'] == 'audio' %}@AUDIO@"
    "{% elif part['type'] == 'image' %}@IMAGE@{% else %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
_OMNI_PARTS = {
    "VIDEO": "<|vision_bos|><|VIDEO|><|vision_eos|>",
    "AUDIO": "<|audio_bos|><|AUDIO|><|audio_eos|>",
    "IMAGE": "<|vision_bos|><|IMAGE|><|vision_eos|>",
}
_VL_PARTS = {
    "VIDEO": "<|vision_start|><|video_pad|><|vision_end|>",
    "AUDIO": "",
    "IMAGE": "<|vision_start|><|image_pad|><|vision_end|>",
}
_CORPUS = [
    "As an emotional recognition expert; throughout the video, which emotion conveyed by the characters "
    "is the most obvious to you? Output the thinking process in <think> </think> and final emotion in "
    "<answer> </answer> tags.",
    "Visual cues: raised eyebrows, wide open eyes, a trembling voice, tears, clenched fists, laughter.",
] + [
    f"<think>The person looks {w}.</think><answer>{w}</answer>"
    for w in ["happy", "sad", "neutral", "angry", "surprise", "disgust", "fear"]
]
BPE_VOCAB = 512
TEXT = {"hidden_size": 128, "intermediate_size": 256, "num_hidden_layers": 2, "num_attention_heads": 2,
        "num_key_value_heads": 1, "head_dim": 64}  # fmt: skip
# Small frames: the processors' pixel limits, also what vLLM gets as mm_processor_kwargs.
MIN_PIXELS, MAX_PIXELS = 56 * 56, 112 * 112


def _template(parts: dict[str, str]) -> str:
    out = _CHAT_TEMPLATE
    for key, value in parts.items():
        out = out.replace(f"@{key}@", value)
    return out


def train_byte_bpe(corpus: list[str], vocab_size: int, special_tokens: list[str]):
    """A byte-level BPE `tokenizers.Tokenizer` trained on `corpus`: every byte encodes, no unknown token.

    The tiny models' tokenizer (here and tests/support/tiny_models.py): seconds to train, nothing downloaded.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=special_tokens,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus, trainer=trainer)
    return tok


def _tokenizer(special: list[str], chat_template: str, extra: dict[str, str]):
    from transformers import Qwen2TokenizerFast

    tok = train_byte_bpe(_CORPUS * 4, BPE_VOCAB, special)
    fast = Qwen2TokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        bos_token=None,
        unk_token=None,
        chat_template=chat_template,
        extra_special_tokens=extra,
    )
    return fast, {t: tok.token_to_id(t) for t in special}


def build_tiny_omni(path: str | Path, seed: int = 0) -> Path:
    """Write a tiny random Qwen2.5-Omni (thinker only) folder at `path` and return it."""
    import torch
    from transformers import (
        Qwen2_5OmniConfig,
        Qwen2_5OmniForConditionalGeneration,
        Qwen2_5OmniProcessor,
        Qwen2VLImageProcessor,
        WhisperFeatureExtractor,
    )
    from transformers.models.qwen2_vl.video_processing_qwen2_vl import Qwen2VLVideoProcessor

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    extra = {"image_token": "<|IMAGE|>", "audio_token": "<|AUDIO|>", "video_token": "<|VIDEO|>",
             "vision_bos_token": "<|vision_bos|>", "vision_eos_token": "<|vision_eos|>",
             "audio_bos_token": "<|audio_bos|>", "audio_eos_token": "<|audio_eos|>"}  # fmt: skip
    tok, ids = _tokenizer(OMNI_SPECIAL, _template(_OMNI_PARTS), extra)
    text = dict(TEXT, vocab_size=BPE_VOCAB, max_position_embeddings=2048, tie_word_embeddings=False,
                rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [8, 12, 12]})  # fmt: skip
    thinker = {
        "text_config": text,
        "vision_config": {"depth": 2, "hidden_size": 64, "intermediate_size": 128, "num_heads": 2,
                          "patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2,
                          "window_size": 112, "out_hidden_size": 128, "fullatt_block_indexes": [1]},
        "audio_config": {"num_mel_bins": 128, "encoder_layers": 2, "encoder_attention_heads": 2,
                         "encoder_ffn_dim": 128, "d_model": 64, "output_dim": 128, "n_window": 100,
                         "max_source_positions": 1500},
        "audio_token_index": ids["<|AUDIO|>"], "image_token_index": ids["<|IMAGE|>"],
        "video_token_index": ids["<|VIDEO|>"], "audio_start_token_id": ids["<|audio_bos|>"],
        "audio_end_token_id": ids["<|audio_eos|>"], "vision_start_token_id": ids["<|vision_bos|>"],
        "vision_end_token_id": ids["<|vision_eos|>"], "user_token_id": ids["<|im_start|>"],
        "pad_token_id": ids["<|endoftext|>"], "eos_token_id": ids["<|im_end|>"],
    }  # fmt: skip
    config = Qwen2_5OmniConfig(thinker_config=thinker, enable_audio_output=False)
    config.architectures = ["Qwen2_5OmniForConditionalGeneration"]
    torch.manual_seed(seed)
    model = Qwen2_5OmniForConditionalGeneration(config).float()
    model.save_pretrained(path)
    sizes = {"min_pixels": MIN_PIXELS, "max_pixels": MAX_PIXELS}
    processor = Qwen2_5OmniProcessor(
        image_processor=Qwen2VLImageProcessor(**sizes),
        video_processor=Qwen2VLVideoProcessor(**sizes),
        feature_extractor=WhisperFeatureExtractor(feature_size=128),
        tokenizer=tok,
        chat_template=tok.chat_template,
    )
    processor.save_pretrained(path)
    torch.save({}, path / "spk_dict.pt")  # Qwen2_5OmniModel.from_pretrained asks for the speaker table
    (path / "README.md").write_text("Tiny random Qwen2.5-Omni thinker built by policy/tiny_omni.py.\n")
    return path


def build_tiny_vl(path: str | Path, seed: int = 0) -> Path:
    """Write a tiny random Qwen2.5-VL folder at `path` and return it."""
    import torch
    from transformers import (
        Qwen2_5_VLConfig,
        Qwen2_5_VLForConditionalGeneration,
        Qwen2_5_VLProcessor,
        Qwen2VLImageProcessor,
    )
    from transformers.models.qwen2_vl.video_processing_qwen2_vl import Qwen2VLVideoProcessor

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    extra = {"image_token": "<|image_pad|>", "video_token": "<|video_pad|>",
             "vision_bos_token": "<|vision_start|>", "vision_eos_token": "<|vision_end|>"}  # fmt: skip
    tok, ids = _tokenizer(VL_SPECIAL, _template(_VL_PARTS), extra)
    text = dict(TEXT, vocab_size=BPE_VOCAB, max_position_embeddings=2048, tie_word_embeddings=False,
                rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [8, 12, 12]},
                pad_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|im_end|>"])  # fmt: skip
    config = Qwen2_5_VLConfig(
        text_config=text,
        vision_config={"depth": 2, "hidden_size": 64, "intermediate_size": 128, "num_heads": 2,
                       "patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2,
                       "window_size": 112, "out_hidden_size": 128, "fullatt_block_indexes": [1]},
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=False,
    )  # fmt: skip
    config.architectures = ["Qwen2_5_VLForConditionalGeneration"]
    torch.manual_seed(seed)
    model = Qwen2_5_VLForConditionalGeneration(config).float()
    model.generation_config.eos_token_id = ids["<|im_end|>"]
    model.generation_config.pad_token_id = ids["<|endoftext|>"]
    model.save_pretrained(path)
    sizes = {"min_pixels": MIN_PIXELS, "max_pixels": MAX_PIXELS}
    processor = Qwen2_5_VLProcessor(
        image_processor=Qwen2VLImageProcessor(**sizes),
        video_processor=Qwen2VLVideoProcessor(**sizes),
        tokenizer=tok,
        chat_template=tok.chat_template,
    )
    processor.save_pretrained(path)
    (path / "README.md").write_text("Tiny random Qwen2.5-VL built by policy/tiny_omni.py.\n")
    return path
