"""Make the registry's torchvision importable next to a CPU-only torch: `ensure_torchvision_importable()`.

Runs in every process of the project: importing `common` installs an import hook that calls
`ensure_torchvision_importable()` right before torchvision's first import (by transformers or vLLM). The video processors of transformers need
torchvision's pure-torch transforms only. PyPI's torchvision wheels are CUDA builds: their compiled
ops (`_C.so`) link libtorch_cuda and do not load with the CPU torch, which torchvision tolerates
for every op but two, whose fake-kernel registration (`torchvision::nms`, `torchvision::qnms`,
in `_meta_registrations.py`) is not guarded and fails the import. When, and only when, the
compiled library cannot load, this declares those two operator schemas with a kernel that
raises, so torchvision imports and its ops keep failing loudly if anyone calls them (torchvision's
own `_assert_has_ops` says so first). Where the compiled ops load (a CUDA machine), nothing changes.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
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
    if _library is not None:
        return "declared"
    if "torchvision" in sys.modules:
        return "imported"
    return _prepare()


def _prepare() -> str:
    global _library
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


class _BeforeTorchvision(importlib.abc.MetaPathFinder):
    """Prepares torchvision the moment anything first imports it (executes its module), then steps aside.

    Only an import does: a lookup (`importlib.util.find_spec("torchvision")`, as transformers' availability
    checks do) gets the regular spec and loads nothing, so a process that never imports torchvision
    (the orchestrator) never loads torch either.
    """

    def find_spec(self, name, path=None, target=None):
        if name != "torchvision":
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is not None and spec.loader is not None:
            spec.loader = _PrepareFirst(spec.loader)
        return spec


class _PrepareFirst(importlib.abc.Loader):
    """torchvision's own loader, with the declarations made before its module runs."""

    def __init__(self, loader):
        self.loader = loader

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        remove_import_hook()
        if _library is None:
            _prepare()
        self.loader.exec_module(module)

    def __getattr__(self, name):  # resource readers and the like: the real loader's
        return getattr(self.loader, name)


def install_import_hook() -> None:
    """Arrange for ensure_torchvision_importable() to run before torchvision's first import (imports nothing now)."""
    if "torchvision" not in sys.modules and not any(isinstance(f, _BeforeTorchvision) for f in sys.meta_path):
        sys.meta_path.insert(0, _BeforeTorchvision())


def remove_import_hook() -> None:
    sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, _BeforeTorchvision)]


def _unavailable(*args, **kwargs):
    raise RuntimeError(
        "torchvision's compiled ops did not load with this torch (a CUDA torchvision wheel next to a CPU "
        "torch): nms/qnms are unavailable; the video processors do not need them"
    )
