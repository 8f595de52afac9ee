"""`erv-grpo models tiny-omni|tiny-vl OUT_DIR` writes a model folder with its processor and chat template."""

import json

from orchestrator.cli import main


def test_models_tiny_vl_writes_a_loadable_folder(tmp_path, capsys):
    assert main(["models", "tiny-vl", str(tmp_path / "vl")]) == 0
    assert "tiny-vl ready at" in capsys.readouterr().out
    config = json.loads((tmp_path / "vl" / "config.json").read_text())
    assert config["architectures"] == ["Qwen2_5_VLForConditionalGeneration"]
    assert config["text_config"]["head_dim"] == 64  # the vLLM CPU attention's head size
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(tmp_path / "vl")
    text = processor.tokenizer.apply_chat_template(
        [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": "Emotion?"}]}],
        add_generation_prompt=True,
        tokenize=False,
    )
    assert "<|vision_start|><|video_pad|><|vision_end|>Emotion?" in text
