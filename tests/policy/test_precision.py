"""learner.precision: the old `bf16` flag migrates, the learner says what it chose and autocasts in bf16."""

import pytest
import torch

from policy.config import LearnerConfig
from policy.learner import Learner
from rollout.config import RolloutConfig


def test_old_bf16_flag_migrates_and_precision_wins():
    assert LearnerConfig(model="m").precision == "fp32"
    assert LearnerConfig(model="m", bf16=True).precision == "auto"  # bf16 on CUDA, as it meant
    assert LearnerConfig(model="m", bf16=False).precision == "fp32"
    assert LearnerConfig(model="m", bf16=True, precision="fp32").precision == "fp32"
    again = LearnerConfig.model_validate(LearnerConfig(model="m", bf16=True).model_dump())
    assert again.precision == "auto"  # what the learner actor re-validates
    with pytest.raises(ValueError, match="precision"):
        LearnerConfig(model="m", precision="fp16")


def test_old_rollout_dtype_names_migrate():
    assert RolloutConfig().dtype == "fp32"
    assert [RolloutConfig(dtype=d).dtype for d in ("float32", "bfloat16", "float16")] == [
        "fp32",
        "bf16",
        "fp16",
    ]
    assert RolloutConfig(dtype="bf16").engine_dtype() == ("bfloat16", "set in the config")
    assert RolloutConfig(dtype="auto", num_gpus_per_worker=1).engine_dtype()[0] == "bfloat16"
    with pytest.raises(ValueError, match="dtype"):
        RolloutConfig(dtype="int8")


def test_bf16_learner_autocasts_and_says_so(tiny_qwen2_dir, capsys):
    rows = ([[5, 6, 7, 8]], [[9, 10, 11]])
    fp32 = Learner(LearnerConfig(model=str(tiny_qwen2_dir), device="cpu"))
    assert "learner precision fp32 (set in the config)" in capsys.readouterr().err
    bf16 = Learner(LearnerConfig(model=str(tiny_qwen2_dir), device="cpu", precision="bf16"))
    assert "learner precision bf16 (set in the config)" in capsys.readouterr().err
    a, b = torch.tensor(fp32.logprobs(*rows)), torch.tensor(bf16.logprobs(*rows))
    assert 0 < (a - b).abs().max() < 0.1  # bf16 matmuls: close, not equal
    assert all(p.dtype == torch.float32 for p in bf16.policy.parameters())  # fp32 master weights


@pytest.mark.parametrize("tied", [True, False])
def test_a_bf16_learners_reference_holds_bf16_linears_with_the_same_logprobs_bit_for_bit(tmp_path, tied):
    from policy.forward import completion_logprobs
    from tests.policy.conftest import make_batch
    from tests.support.tiny_models import build_tiny_qwen2

    learner = Learner(LearnerConfig(model=str(build_tiny_qwen2(tmp_path, tied=tied)), device="cpu",
                                    precision="bf16"))  # fmt: skip
    ref, policy = learner.reference, learner.policy
    linears = [m for m in ref.modules() if isinstance(m, torch.nn.Linear)]
    assert linears and all(m.weight.dtype == torch.bfloat16 for m in linears)
    assert ref.get_input_embeddings().weight.dtype == torch.float32  # the residual stream stays fp32
    assert all(p.dtype == torch.float32 for p in policy.parameters())  # the policy is untouched
    if tied:  # the policy's tie is intact; the reference's output layer is its own bf16 copy
        assert policy.lm_head.weight is policy.get_input_embeddings().weight
    batch = make_batch(seed=3)
    mb = learner._pad(batch.prompt_token_ids, batch.completion_token_ids)
    with torch.no_grad():  # at start the policy is the reference: autocast's casts give the same bits
        assert torch.equal(completion_logprobs(ref, mb, learner._autocast),
                           completion_logprobs(policy, mb, learner._autocast))  # fmt: skip
    fp32 = Learner(LearnerConfig(model=str(tmp_path), device="cpu"))
    assert all(p.dtype == torch.float32 for p in fp32.reference.parameters())  # fp32 learners: as before
