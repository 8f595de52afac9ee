"""The vLLM engine wrapper on a tiny random Qwen2: chat template, G samples with logprobs, in-place reload."""

import pytest
import torch

pytestmark = pytest.mark.slow

PROMPTS = ["The man smiles and laughs loudly.", [{"role": "user", "content": "She cries and looks down."}]]


def test_chat_template_is_applied(engine):
    ids = engine.prompt_token_ids("hello")
    text = engine.tokenizer.decode(ids)
    assert text == "<|im_start|>user\nhello<|im_end|>\n<|im_start|>assistant\n"


def test_generate_returns_g_completions_with_logprobs(engine):
    groups = engine.generate(PROMPTS, n=4, temperature=1.0, max_tokens=12, seeds=[1, 2])
    assert len(groups) == 2
    for prompt, group in zip(PROMPTS, groups, strict=True):
        assert group.prompt_token_ids == engine.prompt_token_ids(prompt)
        assert len(group.completions) == 4
        for c in group.completions:
            assert 1 <= len(c.token_ids) <= 12
            assert len(c.logprobs) == len(c.token_ids)
            assert all(lp <= 0.0 for lp in c.logprobs)
            assert c.finish_reason in ("stop", "length")
            assert c.finish_reason == "length" or c.token_ids[-1] == engine.tokenizer.eos_token_id
            # vLLM's incremental detokenizer holds back a trailing partial UTF-8 character.
            full = engine.tokenizer.decode(c.token_ids, skip_special_tokens=True)
            assert full.rstrip("\ufffd") == c.text.rstrip("\ufffd")


def test_seeded_sampling_is_reproducible_and_groups_differ(engine):
    kwargs = dict(n=4, temperature=1.0, max_tokens=8)
    a = engine.generate(PROMPTS[:1], seeds=[7], **kwargs)[0]
    b = engine.generate(PROMPTS[:1], seeds=[7], **kwargs)[0]
    assert [c.token_ids for c in a.completions] == [c.token_ids for c in b.completions]
    assert len({tuple(c.token_ids) for c in a.completions}) > 1  # G distinct samples, not one repeated


def test_iter_generate_yields_every_prompt_once(engine):
    prompts = [f"prompt number {i}" for i in range(5)]
    seen = [i for i, _ in engine.iter_generate(prompts, n=2, temperature=1.0, max_tokens=4)]
    assert sorted(seen) == list(range(5))


def test_sampler_logprobs_match_the_hf_model(engine, tiny_qwen2_dir):
    from transformers import AutoModelForCausalLM

    group = engine.generate(PROMPTS[:1], n=2, temperature=1.0, max_tokens=10, seeds=[3])[0]
    model = AutoModelForCausalLM.from_pretrained(tiny_qwen2_dir, dtype=torch.float32).eval()
    for c in group.completions:
        ids = torch.tensor([group.prompt_token_ids + c.token_ids])
        with torch.no_grad():
            logits = model(ids).logits[0, len(group.prompt_token_ids) - 1 : -1]
        hf = torch.log_softmax(logits, -1).gather(-1, torch.tensor(c.token_ids)[:, None])[:, 0]
        assert torch.allclose(hf, torch.tensor(c.logprobs), atol=1e-3)


def test_load_weights_changes_outputs_in_place_and_records_version(engine, tiny_qwen2_dir):
    from safetensors.torch import load_file

    original = load_file(str(tiny_qwen2_dir / "model.safetensors"))
    kwargs = dict(n=2, temperature=1.0, max_tokens=6, seeds=[5])
    before = engine.generate(PROMPTS[:1], **kwargs)[0].completions
    llm_id = id(engine.llm)

    scaled = {k: (v * 3.0 if "embed_tokens" in k else v) for k, v in original.items()}
    names = sorted(scaled)
    buckets = [[(k, scaled[k]) for k in names[:5]], [(k, scaled[k]) for k in names[5:]]]
    engine.load_weights(1, buckets)
    changed = engine.generate(PROMPTS[:1], **kwargs)[0].completions
    assert engine.version == 1 and id(engine.llm) == llm_id  # same engine, no restart
    assert [c.logprobs for c in changed] != [c.logprobs for c in before]

    engine.load_weights(2, [list(original.items())])
    restored = engine.generate(PROMPTS[:1], **kwargs)[0].completions
    assert engine.version == 2
    assert [c.token_ids for c in restored] == [c.token_ids for c in before]
    for r, b in zip(restored, before, strict=True):
        assert r.logprobs == pytest.approx(b.logprobs, abs=1e-4)


def test_seeded_batch_larger_than_one_prefill_step(engine):
    # ~180-token prompts x 40 exceed one step's token budget: with chunked prefill, the split prompt's
    # seeded CPU generator was rewound and vLLM crashed ("CPU Generator does not use offset").
    prompts = [" ".join(f"cue{i}-{j}" for j in range(25)) for i in range(40)]
    assert sum(len(engine.prompt_token_ids(p)) for p in prompts) > 4096
    groups = engine.generate(prompts, n=2, temperature=0.3, max_tokens=4, seeds=list(range(40)))
    assert [len(g.completions) for g in groups] == [2] * 40
