"""The registry's torchvision (a CUDA build) imports next to the CPU torch once `common` is imported, in a
fresh interpreter as every project process is; its compiled ops then fail loudly instead of at import."""

import subprocess
import sys

SCRIPT = """
import common  # installs the hook; nothing is imported yet
import sys
assert "torch" not in sys.modules and "torchvision" not in sys.modules
import torch, torchvision
import torchvision.transforms.v2.functional as tvF
from common.torchvision_ops import compiled_ops_load, ensure_torchvision_importable
from transformers.models.qwen2_vl.video_processing_qwen2_vl import Qwen2VLVideoProcessor
out = Qwen2VLVideoProcessor(min_pixels=3136, max_pixels=12544)(videos=[torch.zeros(4, 3, 56, 56, dtype=torch.uint8)])
assert tuple(out["video_grid_thw"][0].tolist()) == (2, 4, 4), out["video_grid_thw"]
state = ensure_torchvision_importable()
if compiled_ops_load():
    assert state == "imported", state  # a torchvision whose ops load: left alone
else:
    assert state == "declared", state
    try:
        torch.ops.torchvision.nms(torch.zeros(1, 4), torch.zeros(1), 0.5)
    except RuntimeError as exc:
        assert "compiled ops did not load" in str(exc), exc
    else:
        raise AssertionError("nms ran without torchvision's compiled ops")
print("ok", state)
"""


def test_torchvision_imports_and_its_video_transforms_work_in_a_fresh_process():
    run = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.startswith("ok")
