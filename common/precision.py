"""Which precision the learner and the rollout engines compute in: `auto | fp32 | bf16` resolved at start.

Imported by the learner process (policy/learner.py) and the rollout worker process
(rollout/config.py), each resolving for its own device. `auto` picks bf16 where the device is
fast at it: CUDA, or a CPU with AVX512-BF16 or AMX instructions (from /proc/cpuinfo's flags;
torch's `get_cpu_capability()` says only "AVX512", not whether BF16 is among it), fp32 elsewhere.
bf16 in the learner means autocast with fp32 master weights and AdamW state. Pure functions
apart from `cpu_flags`, which reads the file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

Precision = Literal["fp32", "bf16"]
# AVX512-BF16 (vdpbf16ps) or AMX (tile matmul in bf16): where oneDNN's bf16 GEMM beats fp32.
CPU_BF16_FLAGS = ("avx512_bf16", "amx_bf16")
ENGINE_DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}  # vLLM's names


def cpu_flags(cpuinfo: str | Path = "/proc/cpuinfo") -> frozenset[str]:
    """The CPU's feature flags (first `flags` line); empty where the file does not exist (not Linux)."""
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags") and ":" in line:
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def choose_precision(requested: str, device: str, flags: frozenset[str] | set[str]) -> tuple[Precision, str]:
    """(precision, why) for `requested` in auto|fp32|bf16 on `device` (cpu|cuda) with these CPU flags."""
    if requested in ("fp32", "bf16"):
        return requested, "set in the config"  # type: ignore[return-value]
    if requested != "auto":
        raise ValueError(f"precision must be auto, fp32 or bf16, got {requested!r}")
    if device.startswith("cuda"):
        return "bf16", "auto: CUDA device"
    found = [f for f in CPU_BF16_FLAGS if f in flags]
    if found:
        return "bf16", f"auto: the CPU has {', '.join(found)}"
    return "fp32", "auto: the CPU has neither avx512_bf16 nor amx_bf16"
