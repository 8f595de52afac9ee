"""common/shared_weights.py: the learner's parameters moved into one shared file, read by a mapping of it;
the seqlock turns a read during a write into an error."""

import pytest
import torch

from common.shared_weights import HEADER, SharedWeightsError, SharedWeightsReader, share_parameters
from policy.export import export_tensors
from policy.model_loading import load_causal_lm
from tests.support.tiny_models import build_tiny_qwen2


@pytest.fixture(scope="module")
def tiny_qwen2_dir(tmp_path_factory):
    return build_tiny_qwen2(tmp_path_factory.mktemp("tiny-qwen2"))


@pytest.fixture
def model(tiny_qwen2_dir):
    return load_causal_lm(str(tiny_qwen2_dir))


@pytest.fixture
def path(tmp_path):
    return tmp_path / "weights"


def test_parameters_move_into_the_file_and_a_reader_sees_every_later_write(model, path):
    named = export_tensors(model)
    before = {n: t.clone() for n, t in named}
    params = list(model.parameters())
    shared = share_parameters(named, params, path, version=3)
    assert shared.holds(params) and path.stat().st_size == HEADER + shared.plan.buckets[0].nbytes
    reader = SharedWeightsReader(path, shared.plan.to_bytes())
    assert [n for n, _ in reader.tensors] == list(before)
    assert all(torch.equal(t, before[n]) for n, t in reader.tensors)
    seq = reader.begin(3)
    # an optimizer step on the model's own Parameters lands in the reader's view: nothing is copied
    shared.begin_write()
    with pytest.raises(SharedWeightsError, match="being written"):
        reader.begin(4)
    optimizer = torch.optim.AdamW(params, lr=0.1)
    sum(p.sum() for p in params).backward()
    optimizer.step()
    shared.end_write(4)
    with pytest.raises(SharedWeightsError, match="torn"):
        reader.end(seq)  # the write happened during this "load"
    assert reader.begin(4) % 2 == 0
    live = dict(export_tensors(model))
    assert all(torch.equal(t, live[n]) and not torch.equal(t, before[n]) for n, t in reader.tensors)
    with pytest.raises(SharedWeightsError, match="version 4"):
        reader.begin(5)
    shared.unlink()  # mapped views outlive the name
    assert not path.exists() and torch.equal(
        dict(reader.tensors)["model.norm.weight"], model.model.norm.weight
    )


def test_a_tied_model_stays_tied_and_saves_and_loads_as_before(tmp_path, path):
    model = load_causal_lm(str(build_tiny_qwen2(tmp_path / "tied", tied=True)))
    share_parameters(export_tensors(model), list(model.parameters()), path, version=0)
    assert model.lm_head.weight is model.model.embed_tokens.weight
    model.save_pretrained(tmp_path / "saved")  # safetensors: the tensors share one file but never overlap
    again = load_causal_lm(str(tmp_path / "saved"))
    for (name, a), b in zip(model.state_dict().items(), again.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


def test_what_cannot_be_shared_or_read_is_named(model, path, tmp_path):
    named = export_tensors(model)
    copy = [(named[0][0], named[0][1].clone()), *named[1:]]  # not the parameter's own memory
    with pytest.raises(SharedWeightsError, match=named[0][0]):
        share_parameters(copy, list(model.parameters()), path, version=0)
    shared = share_parameters(named, list(model.parameters()), path, version=0)
    with pytest.raises(SharedWeightsError, match="No such file"):
        SharedWeightsReader(tmp_path / "missing", shared.plan.to_bytes())
    with open(path, "ab") as f:
        f.write(b"\0" * 16)
    with pytest.raises(SharedWeightsError, match="bytes, the plan"):
        SharedWeightsReader(path, shared.plan.to_bytes())
    model.model.norm.weight.data = model.model.norm.weight.data.clone()  # moved out behind its back
    assert not shared.holds(list(model.parameters()))
