"""Load a causal LM and its tokenizer: the one model-loading path of the learner and SFT.

Runs in the learner / SFT process. Accepts a local Hugging Face folder (what the embedded
policy and checkpoints are) or a hub id; where no hub is reachable, a hub id fails with a
message that says so instead of a long traceback.
"""

from __future__ import annotations

from pathlib import Path

from policy.errors import PolicyError


class ModelLoadError(PolicyError, RuntimeError):
    """The model could not be found or read (message names the path or id)."""


def resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ModelLoadError("device 'cuda' requested but torch sees no CUDA device")
    return device


def _source(name_or_path: str) -> str:
    path = Path(name_or_path).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise ModelLoadError(f"{path} is not a Hugging Face model folder (no config.json)")
        return str(path)
    if name_or_path.startswith((".", "/", "~")) or name_or_path.count("/") > 1:
        raise ModelLoadError(f"model folder {name_or_path} does not exist (run `erv-grpo models prepare`?)")
    return name_or_path  # a hub id


def load_tokenizer(name_or_path: str):
    from transformers import AutoTokenizer

    source = _source(name_or_path)
    try:
        tok = AutoTokenizer.from_pretrained(source)
    except OSError as exc:
        raise ModelLoadError(_hub_message(name_or_path, exc)) from exc
    if tok.pad_token_id is None:  # padding is masked out; any id works, EOS is always there
        tok.pad_token = tok.eos_token
    return tok


def load_causal_lm(name_or_path: str, device: str = "cpu"):
    """fp32 weights (master copy; bf16 is applied by autocast on CUDA), on `device`."""
    import torch
    from transformers import AutoModelForCausalLM

    source = _source(name_or_path)
    try:
        model = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32)
    except OSError as exc:
        raise ModelLoadError(_hub_message(name_or_path, exc)) from exc
    return model.to(device)


def _hub_message(name: str, exc: Exception) -> str:
    return (
        f"could not load model {name!r}: not a local folder, and the hub id could not be fetched "
        f"(offline? HF_HUB_OFFLINE is set on these machines): {str(exc).splitlines()[0]}"
    )
