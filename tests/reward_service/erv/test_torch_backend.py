"""ErvModel's torch backend on CPU against ONNX Runtime on CPU: same folder, same probabilities.

fp32 must agree within 1e-5. bf16 / fp16 (torch.autocast) within 1e-3 on a GoEmotions-style
RoBERTa with the default initialisation; bf16 only where the CPU has native bf16 (avx512_bf16 /
AMX), since elsewhere it is emulated and slow. Measured here (avx512_bf16 CPU): fp32 9e-7 (tiny
BERT) and 2e-6 (tiny RoBERTa); hidden 256 x 4 layers bf16 3e-4, fp16 4e-5; RoBERTa-base shape
(12 x 768) bf16 1.4e-3, fp16 1.6e-4. The tiny test ERVs (initializer_range 0.4, so large logits)
are for fp32 only: bf16 differs there by 1.5e-2, fp16 by 2.4e-3.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from reward_service.erv.export import CHECK_SENTENCES
from reward_service.erv.model import ErvModel, ErvModelError
from tests.reward_service.erv.test_model import SENTENCES
from tests.support.tiny_erv import build_goemotions_roberta_erv

PROBE = SENTENCES + CHECK_SENTENCES + [" ".join(["the man looks at the camera and sighs"] * 20)]
HAS_BF16 = bool(getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: False)())


@pytest.fixture(scope="module")
def roberta_erv_dir(tmp_path_factory):
    """A random 28-output GoEmotions-style RoBERTa (hidden 128, 2 layers, default init), exported."""
    folder = tmp_path_factory.mktemp("roberta_erv")
    return build_goemotions_roberta_erv(folder, hidden=128, layers=2, heads=2, ffn=512)


def max_diff(folder, dtype: str = "float32", batch_size: int = 4) -> float:
    onnx = ErvModel.load(folder, num_threads=1, device="cpu").predict_proba(PROBE)
    erv = ErvModel.load(
        folder, num_threads=1, device="cpu", backend="torch", dtype=dtype, batch_size=batch_size
    )
    assert erv.providers == [f"torch:cpu:{dtype}"]
    got = erv.predict_proba(PROBE)
    assert got.shape == onnx.shape and got.dtype == np.float32
    return float(np.abs(got - onnx).max())


@pytest.mark.parametrize("fixture", ["tiny_erv_dir", "tiny_goemotions_erv_dir", "roberta_erv_dir"])
def test_fp32_equals_onnx(fixture, request):
    assert max_diff(request.getfixturevalue(fixture)) <= 1e-5


def test_fp32_equals_onnx_in_one_big_padded_batch(tiny_goemotions_erv_dir):
    assert max_diff(tiny_goemotions_erv_dir, batch_size=256) <= 1e-5


@pytest.mark.parametrize(
    "dtype",
    [
        pytest.param("bfloat16", marks=pytest.mark.skipif(not HAS_BF16, reason="CPU without native bf16")),
        "float16",
    ],
)
def test_low_precision_within_1e_3(roberta_erv_dir, dtype):
    assert max_diff(roberta_erv_dir, dtype=dtype) <= 1e-3


def test_empty_input_and_metadata(tiny_erv_dir):
    erv = ErvModel.load(tiny_erv_dir, device="cpu", backend="torch")
    onnx = ErvModel.load(tiny_erv_dir, device="cpu")
    assert (erv.labels, erv.version, erv.max_length, erv.batch_size) == (
        onnx.labels, onnx.version, onnx.max_length, 64,
    )  # fmt: skip
    assert erv.predict_proba([]).shape == (0, 11)


@pytest.mark.parametrize("name", ["model.safetensors", "config.json"])
def test_folder_without_torch_files_names_the_missing_one(tiny_erv_dir, tmp_path, name):
    shutil.copytree(tiny_erv_dir, tmp_path / "erv", ignore=shutil.ignore_patterns("hf", name))
    ErvModel.load(tmp_path / "erv", device="cpu")  # ONNX Runtime still serves it
    with pytest.raises(ErvModelError, match=f"no {name}, which backend 'torch' needs"):
        ErvModel.load(tmp_path / "erv", device="cpu", backend="torch")


def test_bad_backend_dtype_and_device(tiny_erv_dir):
    with pytest.raises(ErvModelError, match="backend must be one of onnx, torch"):
        ErvModel.load(tiny_erv_dir, backend="tensorrt")
    with pytest.raises(ErvModelError, match="dtype must be one of"):
        ErvModel.load(tiny_erv_dir, backend="torch", dtype="int8")
    with pytest.raises(ErvModelError, match="needs backend 'torch'"):
        ErvModel.load(tiny_erv_dir, dtype="bfloat16")
    with pytest.raises(ErvModelError, match="device must be auto, cpu or cuda"):
        ErvModel.load(tiny_erv_dir, backend="torch", device="tpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error of a machine without CUDA")
def test_cuda_without_a_gpu_is_a_clear_error(tiny_erv_dir):
    with pytest.raises(ErvModelError, match="sees no CUDA device"):
        ErvModel.load(tiny_erv_dir, backend="torch", device="cuda")
