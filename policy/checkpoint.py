"""Sharded learner checkpoints (`strategy: fsdp`) and their consolidation into a Hugging Face folder.

`save_sharded` / `load_sharded` run in every learner rank's process: torch.distributed.checkpoint
(DCP) writes each rank's shards of the policy and AdamW state into one folder (rank 0 adds the
model config, tokenizer and step/version; each rank its RNG state), and reads them back on any
world size (DCP reshards by parameter name). `export_hf` runs in the `erv-grpo export-hf` process
(no process group): it turns either kind of checkpoint, sharded or the ddp HF folder, into a
Hugging Face folder that transformers and vLLM load.
"""

from __future__ import annotations

import json
import random
import warnings
from pathlib import Path

import torch
import torch.distributed as dist

from policy.errors import PolicyError

STATE_FILE = "learner_state.json"  # the same name as the ddp checkpoint's
DCP_METADATA = ".metadata"  # written by DCP once every rank's shard is in place


class CheckpointError(PolicyError, ValueError):
    """A checkpoint folder that is missing, incomplete or of a kind this learner cannot resume."""


def is_sharded(directory: str | Path) -> bool:
    return (Path(directory) / DCP_METADATA).is_file()


def _rng_file(rank: int) -> str:
    return f"rng-rank{rank}.pt"


def rng_state() -> dict:
    """This process's RNG states (torch, Python, CUDA where present), as saved in checkpoints."""
    rng = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        rng["cuda"] = torch.cuda.get_rng_state_all()
    return rng


def restore_rng(rng: dict) -> None:
    torch.set_rng_state(rng["torch"])
    random.setstate(rng["python"])
    if "cuda" in rng and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])


def _state(learner):
    from torch.distributed.checkpoint.state_dict import get_state_dict

    model, optim = get_state_dict(learner.policy, learner.optimizer)
    return {"model": model, "optim": optim}


def save_sharded(learner, directory: str | Path) -> Path:
    """Every rank writes its shards into `directory` (created); a collective."""
    import torch.distributed.checkpoint as dcp

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    dcp.save(_state(learner), checkpoint_id=str(directory))
    torch.save(rng_state(), directory / _rng_file(learner.rank))
    if learner.rank == 0:
        learner.policy.config.save_pretrained(directory)
        if learner.policy.generation_config is not None:
            learner.policy.generation_config.save_pretrained(directory)
        learner.tokenizer.save_pretrained(directory)
        state = {
            "step": learner.step,
            "version": learner.version,
            "reference_model": learner.config.model,
            "format": "torch.distributed.checkpoint",
            "world_size": learner.world_size,
        }
        (directory / STATE_FILE).write_text(json.dumps(state, indent=2) + "\n")
    if dist.is_initialized():
        dist.barrier()  # the folder is complete when save returns on any rank
    return directory


def load_sharded(learner, directory: str | Path) -> None:
    """Load a sharded checkpoint into a learner of any world size and strategy; a collective."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import set_state_dict

    directory = Path(directory)
    if not (directory / STATE_FILE).is_file():
        raise CheckpointError(f"{directory} is not a complete learner checkpoint (no {STATE_FILE})")
    state = _state(learner)
    with warnings.catch_warnings():  # one process, no group: DCP says it assumes so, and it is right
        if not dist.is_initialized():
            warnings.simplefilter("ignore", UserWarning)
        dcp.load(state, checkpoint_id=str(directory))
    set_state_dict(
        learner.policy, learner.optimizer, model_state_dict=state["model"], optim_state_dict=state["optim"]
    )
    rng_path = directory / _rng_file(learner.rank)
    if not rng_path.is_file():  # another world size: ranks beyond the saved ones take rank 0's
        rng_path = directory / _rng_file(0)
    restore_rng(torch.load(rng_path, weights_only=False))
    saved = json.loads((directory / STATE_FILE).read_text())
    learner.step, learner._version = int(saved["step"]), int(saved["version"])


def _learner_folder(checkpoint: Path) -> Path:
    """A run's checkpoints/step-N folder holds the learner's under learner/; accept either."""
    if (checkpoint / "learner" / STATE_FILE).is_file():
        return checkpoint / "learner"
    if (checkpoint / STATE_FILE).is_file():
        return checkpoint
    raise CheckpointError(
        f"{checkpoint} is not a learner checkpoint (no {STATE_FILE}, nor learner/{STATE_FILE})"
    )


def export_hf(checkpoint: str | Path, out_dir: str | Path) -> Path:
    """Consolidate a learner checkpoint (sharded or ddp) into a Hugging Face folder at out_dir."""
    import torch.distributed.checkpoint as dcp
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    source, out_dir = _learner_folder(Path(checkpoint)), Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise CheckpointError(f"{out_dir} exists and is not empty")
    if is_sharded(source):
        config = AutoConfig.from_pretrained(source)
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        weights = model.state_dict()
        if config.tie_word_embeddings:
            weights.pop("lm_head.weight", None)  # stored once, under the input embedding's name
        with warnings.catch_warnings():  # "assuming the intent is to load in a single process": it is
            warnings.simplefilter("ignore", UserWarning)
            dcp.load({"model": weights}, checkpoint_id=str(source))  # fills the tensors in place
        model.load_state_dict(weights, strict=not config.tie_word_embeddings)
        model.tie_weights()
        try:
            model.generation_config = GenerationConfig.from_pretrained(source)
        except OSError:
            pass
    else:
        model = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32)
    model.save_pretrained(out_dir)
    AutoTokenizer.from_pretrained(source).save_pretrained(out_dir)
    return out_dir
