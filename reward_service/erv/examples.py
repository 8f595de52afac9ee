"""A few example completions scored end to end with an ERV model folder (smoke check of the reward).

Runs in the CLI process (`erv-grpo models prepare`, `erv-grpo demo`): loads the ONNX ERV and prints
R_E, R_format, R_answer and the per-sentence label sets for completions a policy might write.
"""

from __future__ import annotations

from pathlib import Path

from reward_service.core.reward import RewardBreakdown, score_completion

# (ground truth, completion): coherent, incoherent, badly formatted, neutral.
EXAMPLES: tuple[tuple[str, str], ...] = (
    (
        "sad",
        "<think>In the video, the woman lowers her head and tears run down her cheeks. In the audio, her voice "
        'is quiet and breaks off mid-sentence. The subtitle reads "I really thought he would come back." '
        "These cues point to deep sorrow.</think>\n<answer>sad</answer>",
    ),
    (
        "sad",
        "<think>The man grins widely and claps his hands. His laughter fills the room and he bounces on his "
        "feet.</think>\n<answer>sad</answer>",
    ),
    (
        "angry",
        "He is shouting and slamming his fist on the table, so the emotion is anger. <answer>angry</answer>",
    ),
    (
        "neutral",
        "<think>The man wears a grey suit and sits at a desk. The camera shows him from the front in even "
        "lighting. He speaks in a steady, level tone about the schedule.</think>\n<answer>neutral</answer>",
    ),
)


def score_examples(model_dir: Path) -> list[tuple[str, str, RewardBreakdown]]:
    """Score EXAMPLES with the ERV in `model_dir`; returns (ground truth, completion, breakdown) triples."""
    from reward_service.erv.model import ErvModel

    model = ErvModel.load(model_dir)

    def classify(sentences):
        return model.predict_proba(sentences), model.labels

    return [
        (gt, text, score_completion(text, gt, classify, tau=model.tau, top_k=model.top_k))
        for gt, text in EXAMPLES
    ]


def format_scores(scored: list[tuple[str, str, RewardBreakdown]]) -> str:
    """Human-readable report of scored examples."""
    lines = []
    for i, (gt, text, r) in enumerate(scored, 1):
        lines.append(f"example {i}  ground truth: {gt}  predicted: {r.predicted}")
        lines.append(f"  completion: {text[:110].replace(chr(10), ' ')}{'...' if len(text) > 110 else ''}")
        for sentence, labels in zip(r.sentences, r.label_sets, strict=True):
            lines.append(f"    [{', '.join(sorted(labels))}] {sentence[:90]}")
        lines.append(
            f"  R_E={r.explanation:.2f} (S={r.num_sentences}, N={r.num_non_neutral}, M={r.num_matching})  "
            f"R_format={r.format:.0f}  R_answer={r.answer:.0f}  total={r.total:.2f}"
        )
    return "\n".join(lines)
