"""Make the registry's torchvision importable next to a CPU-only torch: `ensure_torchvision_importable()`.

Runs in every process that builds a Qwen2-VL / Qwen2.5-Omni processor (learner, rollout worker,
test process), before torchvision is first imported. The video processors of transformers need
torchvision's pure-torch transforms only. PyPI's torchvision wheels are CUDA builds: their compiled
ops (`_C.so`) link libtorch_cuda and do not load with the CPU torch, which torchvision tolerates
for every op but two, whose fake-kernel registration (`torchvision::nms`, `torchvision::qnms`,
in `_meta_registrations.py`) is not guarded and fails the import. When, and only when, the
compiled library cannot load, this declares those two operator schemas with a kernel that
raises, so torchvision imports and its ops keep failing loudly if anyone calls them (torchvision's
own `_assert_has_ops` says so first). Where the compiled ops load (a CUDA machine), nothing changes.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

_SCHEMAS = {
    "nms": "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms": "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
}
_library = None  # the torch.library.Library holding the declarations; kept alive for the process


def compiled_ops_load() -> bool | None:
    """True when torchvision's compiled ops load, False when they do not, None when torchvision is absent."""
    import torch

    spec = importlib.util.find_spec("torchvision")
    if spec is None or spec.origin is None:
        return None
    libs = sorted(Path(spec.origin).parent.glob("_C*.so"))
    if not libs:
        return False
    try:
        torch.ops.load_library(str(libs[0]))
    except (OSError, RuntimeError):
        return False
    return True


def ensure_torchvision_importable() -> str:
    """Prepare the import of torchvision; returns what was done: "absent", "loaded", "declared" or "imported"."""
    global _library
    if "torchvision" in sys.modules:
        return "imported"
    state = compiled_ops_load()
    if state is None:
        return "absent"
    if state:
        return "loaded"
    import torch

    if _library is None:
        _library = torch.library.Library("torchvision", "DEF")  # noqa: TOR901 (a fragment of ours)
        for name, schema in _SCHEMAS.items():
            _library.define(schema)
            _library.impl(name, _unavailable, "CompositeExplicitAutograd")
    return "declared"


def _unavailable(*args, **kwargs):
    raise RuntimeError(
        "torchvision's compiled ops did not load with this torch (a CUDA torchvision wheel next to a CPU "
        "torch): nms/qnms are unavailable; the video processors do not need them"
    )
