"""The example completions scored end to end through an exported ERV (what `models prepare` prints)."""

from reward_service.erv.examples import EXAMPLES, format_scores, score_examples


def test_examples_score_through_onnx_erv(tiny_erv_dir):
    scored = score_examples(tiny_erv_dir)
    assert [gt for gt, _, _ in scored] == [gt for gt, _ in EXAMPLES]
    by_index = {i: r for i, (_, _, r) in enumerate(scored)}
    # Format and answer do not depend on the (random) tiny model: worked out from the texts.
    assert [(r.format, r.answer) for r in by_index.values()] == [(1, 1), (1, 1), (0, 1), (1, 1)]
    assert [r.num_sentences for r in by_index.values()] == [
        3,
        2,
        0,
        3,
    ]  # a sentence ending in a closing quote is not split
    for r in by_index.values():
        assert 0.0 <= r.explanation <= 1.0
        assert r.total == r.explanation + r.format + r.answer
    report = format_scores(scored)
    assert report.count("R_E=") == len(EXAMPLES)
