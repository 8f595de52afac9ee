"""The ERV's torch backend on CUDA against ONNX Runtime on CPU: same exported folder, same probabilities.

fp32 within 1e-5 (TF32 stays off: torch's default for matmuls); fp16 and bf16 (autocast) within 1e-3
on a GoEmotions-style RoBERTa with the default initialisation (hidden 256, 4 layers). On CPU the
same comparison gave fp32 6e-8, bf16 3e-4, fp16 4e-5 (tests/reward_service/erv/test_torch_backend.py);
CUDA not yet measured. The RoBERTa-base-size figure comes from `make device-check` (bench erv).
"""

import numpy as np
import pytest

from reward_service.erv.export import CHECK_SENTENCES
from reward_service.erv.model import ErvModel
from tests.reward_service.erv.test_model import SENTENCES

pytestmark = pytest.mark.gpu

PROBE = SENTENCES + CHECK_SENTENCES + [" ".join(["the man looks at the camera and sighs"] * 20)] * 3


def diff_vs_onnx_cpu(folder, device: str, dtype: str, batch_size: int | None = None) -> float:
    onnx = ErvModel.load(folder, device="cpu").predict_proba(PROBE)
    erv = ErvModel.load(folder, device=device, backend="torch", dtype=dtype, batch_size=batch_size)
    assert erv.providers == [f"torch:{device}:{dtype}"]
    return float(np.abs(erv.predict_proba(PROBE) - onnx).max())


@pytest.mark.parametrize("fixture", ["gpu_tiny_erv_dir", "gpu_roberta_erv_dir"])
@pytest.mark.parametrize("batch_size", [4, None])  # several padded batches, and one (CUDA default 1024)
def test_fp32_equals_onnx_cpu(fixture, batch_size, request, gpu_device):
    assert diff_vs_onnx_cpu(request.getfixturevalue(fixture), gpu_device, "float32", batch_size) <= 1e-5


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_low_precision_within_1e_3(gpu_roberta_erv_dir, dtype, gpu_device):
    assert diff_vs_onnx_cpu(gpu_roberta_erv_dir, gpu_device, dtype) <= 1e-3


def test_default_batch_is_1024_on_cuda(gpu_tiny_erv_dir, gpu_device):
    erv = ErvModel.load(gpu_tiny_erv_dir, device=gpu_device, backend="torch")
    assert erv.batch_size == (1024 if gpu_device == "cuda" else 64)
