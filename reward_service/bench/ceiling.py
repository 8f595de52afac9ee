"""A 0-layer copy of an ERV for `erv-grpo bench reward --serving-ceiling`: the serving path alone.

Runs in the benchmark's process. Keeps the ERV's tokenizer, embeddings, pooler and head (so token
counts, label columns and tensor shapes are the real ones) and drops every encoder layer, so the
forward pass costs almost nothing, the way a small encoder does on a GPU. The benchmark then
measures what each server design can carry when the model is not the bottleneck. Its scores are
meaningless; only throughput is read.
"""

from __future__ import annotations

from pathlib import Path

from reward_service.errors import BenchError


def build_zero_layer_erv(hf_dir: Path, out_dir: Path) -> Path:
    """Export a randomly initialised 0-layer model of hf_dir's config and tokenizer to out_dir."""
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

    from reward_service.erv.export import ExportError, export_erv

    if not (hf_dir / "config.json").is_file():
        raise BenchError(f"--serving-ceiling {hf_dir}: not a Hugging Face model folder")
    config = AutoConfig.from_pretrained(str(hf_dir))
    config.num_hidden_layers = 0
    model = AutoModelForSequenceClassification.from_config(config)
    source = out_dir / "hf"
    model.save_pretrained(str(source))
    AutoTokenizer.from_pretrained(str(hf_dir)).save_pretrained(str(source))
    try:
        export_erv(source, out_dir, head="goemotions" if config.num_labels == 28 else "canonical")
    except ExportError as err:
        raise BenchError(f"--serving-ceiling {hf_dir}: {err}") from None
    return out_dir
