"""`erv-grpo eval`: generate one answer per test prompt and compute WAR, UAR, EEA, EPC, FCR.

Runs in the orchestrator process (generation in a vLLM engine: in-process, or the run's rollout
workers). The explanation emotion x comes from a judge: the ERV (argmax over the dataset's labels
for the whole <think> text) or an LLM behind an OpenAI-compatible URL with the paper's prompt.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path

from orchestrator.config import EvalConfig
from orchestrator.data import PromptRecord, model_prompt
from orchestrator.errors import OrchestratorError
from orchestrator.eval_metrics import all_metrics
from reward_service.core.labels import normalize
from reward_service.core.reward import extract_answer, extract_think

JUDGE_PROMPT = (
    "Read the reasoning content and respond with the appropriate emotion in {labels}. "
    "Reply with only the emotion word. Reason: {explanation} Answer Emotion:"
)

Judge = Callable[[list[str]], list[str]]  # explanations -> one label of the dataset's list each


def erv_judge(model_dir: str | Path, labels: Sequence[str]) -> Judge:
    """ERV as judge: argmax over the columns whose canonical label is in `labels`; empty explanation -> neutral."""
    from reward_service.erv.model import ErvModel

    erv = ErvModel.load(model_dir)
    columns = [j for j, label in enumerate(erv.labels) if label in labels]
    if not columns:
        raise OrchestratorError(f"the ERV at {model_dir} has no output for any of {list(labels)}")

    def judge(explanations: list[str]) -> list[str]:
        out = ["neutral"] * len(explanations)
        todo = [i for i, e in enumerate(explanations) if e.strip()]
        if todo:
            probs = erv.predict_proba([explanations[i] for i in todo])  # (S, L)
            for row, i in zip(probs[:, columns], todo, strict=True):
                out[i] = erv.labels[columns[int(row.argmax())]]
        return out

    return judge


def llm_judge(url: str, model: str | None, labels: Sequence[str], timeout_s: float = 60.0) -> Judge:
    """An LLM behind an OpenAI-compatible /chat/completions; a reply outside `labels` counts as neutral."""
    import httpx

    endpoint = url.rstrip("/") + "/chat/completions"

    def one(explanation: str) -> str:
        prompt = JUDGE_PROMPT.format(labels=", ".join(labels), explanation=explanation)
        body = {
            "model": model or "judge",
            "messages": [{"role": "user", "content": prompt}],
            "temperature": 0,
        }
        reply = httpx.post(endpoint, json=body, timeout=timeout_s).json()
        label = normalize(reply["choices"][0]["message"]["content"].strip().split()[0] if reply else "")
        return label if label in labels else "neutral"

    return lambda explanations: [one(e) for e in explanations]


def score_texts(texts: list[str], records: Sequence[PromptRecord], judge: Judge) -> tuple[dict, list[dict]]:
    """Metrics and per-sample rows for one completion text per record."""
    predictions = [normalize(a) if (a := extract_answer(t)) is not None else "unknown" for t in texts]
    explanations = judge([extract_think(t) for t in texts])
    truths = [r.ground_truth for r in records]
    rows = [
        {"id": r.id, "ground_truth": g, "prediction": p, "explanation_emotion": x, "completion": t}
        for r, g, p, x, t in zip(records, truths, predictions, explanations, texts, strict=True)
    ]
    return all_metrics(predictions, explanations, truths), rows


def generate_texts(
    generate: Callable,
    records: Sequence[PromptRecord],
    cfg: EvalConfig,
    seed: int = 0,
    media: Sequence[dict | None] | None = None,
) -> list[str]:
    """One completion per record at the paper's eval settings; `generate` is VllmEngine.generate-like.

    `media[i]`: record i's decoded clip (MediaLoader.load), None for a text record; clip records get
    the model's placeholders before their question.
    """
    mm = {"media": list(media)} if media is not None and any(m is not None for m in media) else {}
    groups = generate(
        [model_prompt(r) for r in records],
        n=1,
        temperature=cfg.temperature,
        max_tokens=cfg.max_tokens,
        seeds=[seed + i for i in range(len(records))],
        **mm,
    )
    return [g.completions[0].text for g in groups]


def evaluate_policy(
    generate: Callable,
    records: Sequence[PromptRecord],
    judge: Judge,
    cfg: EvalConfig,
    name: str,
    out_dir: Path | None = None,
    seed: int = 0,
    media: Sequence[dict | None] | None = None,
) -> dict:
    """One policy's metrics on `records` (what `erv-grpo eval` and the demo run); eval_<name>.json into out_dir."""
    texts = generate_texts(generate, records, cfg, seed=seed, media=media)
    metrics, rows = score_texts(texts, records, judge)
    if out_dir is not None:
        write_eval(out_dir, name, metrics, rows)
    return metrics


def format_table(results: dict[str, dict]) -> str:
    """Markdown table, one row per named result, metrics in percent (the paper's layout)."""
    names = ["EEA", "FCR", "EPC", "WAR", "UAR"]
    lines = ["| model | " + " | ".join(names) + " |", "| --- |" + " --- |" * len(names)]
    for label, metrics in results.items():
        lines.append(f"| {label} | " + " | ".join(f"{100 * metrics[n]:.2f}" for n in names) + " |")
    return "\n".join(lines)


def write_eval(out_dir: Path, name: str, metrics: dict, rows: list[dict]) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"eval_{name}.json").write_text(
        json.dumps({"metrics": metrics, "samples": rows}, indent=2) + "\n"
    )
