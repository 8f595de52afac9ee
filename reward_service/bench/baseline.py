"""The baseline of `erv-grpo bench reward`: a reward server the way RL frameworks usually run one.

Runs as its own process (`python -m reward_service.bench.baseline`), started and stopped by the
benchmark. One FastAPI route, POST /score, scores the completions of that request with one
model call inside the handler, the pattern of e.g. OpenRLHF's `serve_rm`: no batching across
requests, no sentence cache, no queue. Same ErvModel and reward math as the real service, so
the benchmark compares serving designs, not models. Not part of the product.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from fastapi import FastAPI
from pydantic import BaseModel

from reward_service.core import reward


class _Request(BaseModel):
    completions: list[reward.Completion]


def score_per_request(
    model, completions: list[tuple[str, str, str]]
) -> list[tuple[str, reward.RewardBreakdown]]:
    """(id, reward) of each (id, text, ground_truth), from one predict_proba over all their sentences."""
    per = [reward.split_sentences(reward.extract_think(text)) for _, text, _ in completions]
    probs = model.predict_proba([s for sentences in per for s in sentences])  # (sum S_i, L)
    scores, offset = [], 0
    for (cid, text, truth), sentences in zip(completions, per, strict=True):
        rows = probs[offset : offset + len(sentences)]  # (S_i, L)
        offset += len(sentences)
        scores.append(
            (cid, reward.score_from_probs(text, truth, sentences, rows, model.labels, model.tau, model.top_k))
        )
    return scores


def build_baseline_app(model) -> FastAPI:
    app = FastAPI(title="per-request reward server (benchmark baseline)")

    @app.get("/healthz")
    async def healthz():
        return {"status": "ok"}

    @app.post("/score")
    async def score(req: _Request):
        # The model runs on the event loop, as in the frameworks this stands for: one request at a time.
        scores = score_per_request(model, [(c.id, c.text, c.ground_truth) for c in req.completions])
        return {"scores": [{"id": cid, "explanation": r.explanation, "format": r.format, "answer": r.answer,
                            "total": r.total} for cid, r in scores]}  # fmt: skip

    return app


def main(argv: list[str] | None = None) -> int:
    import uvicorn

    from reward_service.erv.model import ErvModel

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, required=True, help="exported ERV folder")
    parser.add_argument("--port", type=int, required=True, help="loopback port to serve on")
    parser.add_argument("--num-threads", type=int, default=None, help="ERV runtime threads (default: all)")
    parser.add_argument("--backend", choices=["onnx", "torch"], default="onnx", help="what runs the ERV")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto", help="ERV device")
    parser.add_argument(
        "--dtype",
        choices=["float32", "bfloat16", "float16"],
        default="float32",
        help="torch backend precision",
    )
    args = parser.parse_args(argv)
    model = ErvModel.load(
        args.model_dir,
        num_threads=args.num_threads,
        device=args.device,
        backend=args.backend,
        dtype=args.dtype,
    )
    app = build_baseline_app(model)
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
