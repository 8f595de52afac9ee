"""The machine side of `erv-grpo bench step`: matmul ceilings, CPU flags, peak PSS of a process tree, parameter count.

Runs in the bench driver process (orchestrator/bench/step.py). The ceilings are torch's own
2048-square matmuls on 2 threads (what the learner's GEMMs can reach at best); the memory sampler
is a thread that sums the proportional set size (PSS) of a process and all its descendants every
~0.5 s, so shared pages (torch's libraries, Ray's object store) count once across the tree, not
once per process as RSS would.
"""

from __future__ import annotations

import os
import platform
import threading
import time
from pathlib import Path

import psutil  # a Ray dependency; its memory_full_info().pss reads /proc/PID/smaps_rollup

from common.precision import cpu_flags

FLAGS_REPORTED = ("avx2", "avx512f", "avx512_bf16", "amx_bf16")
GIB = 1024**3


def matmul_gflops(dtype_name: str, size: int = 2048, threads: int = 2, seconds: float = 2.5) -> float:
    """Best of five timed bursts of `size`-square matmuls in `dtype_name` (float32 | bfloat16) on `threads`.

    Five half-second bursts: with three of a third of a second, two readings on one quiet machine
    were 78 and 98 GFLOP/s (fp32, 2026-12-07); the best of more is the steadier ceiling."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        dtype = getattr(torch, dtype_name)
        g = torch.Generator().manual_seed(0)
        a = torch.randn(size, size, generator=g).to(dtype)
        b = torch.randn(size, size, generator=g).to(dtype)
        torch.mm(a, b)  # warm-up: oneDNN picks and caches its kernel
        best = 0.0
        for _ in range(5):
            reps, t0 = 0, time.perf_counter()
            while (elapsed := time.perf_counter() - t0) < seconds / 5 or reps == 0:
                torch.mm(a, b)
                reps += 1
            best = max(best, 2.0 * size**3 * reps / elapsed / 1e9)
        return best
    finally:
        torch.set_num_threads(before)


# Without AVX512-BF16 or AMX, torch's CPU bf16 matmul is a scalar fallback: 0.28 GFLOP/s against 98
# in fp32 on an AVX2 machine (2026-12-07), a minute per 2048-square product. A small probe tells first.
PROBE_SIZE, SLOW_FACTOR = 256, 10.0


def much_slower(gflops: float, fp32_gflops: float) -> bool:
    """More than SLOW_FACTOR x below fp32: the rule for both the short bf16 ceiling and skipping a TRL run."""
    return gflops * SLOW_FACTOR < fp32_gflops


def matmul_ceilings(size: int = 2048, threads: int = 2) -> dict:
    fp32 = matmul_gflops("float32", size, threads)
    out = {"fp32_gflops": fp32}
    probe = matmul_gflops("bfloat16", PROBE_SIZE, threads)
    if much_slower(probe, fp32):
        out["bf16_gflops"] = probe
        out["bf16_note"] = (
            f"bf16 measured on {PROBE_SIZE}-square matmuls only: {probe:.2f} GFLOP/s, more than "
            f"{SLOW_FACTOR:g}x below fp32 (no fast bf16 kernel on this CPU)"
        )
    else:
        out["bf16_gflops"] = matmul_gflops("bfloat16", size, threads)
    out["matmul"] = f"torch.mm of two {size}x{size} matrices, {threads} threads, best of 5 bursts"
    return out


def slow_precision_reason(precision: str, ceilings: dict) -> str | None:
    """Why a system is not run in `precision` here (its matmul ceiling > SLOW_FACTOR x below fp32's), or None."""
    gflops, fp32 = ceilings[f"{precision}_gflops"], ceilings["fp32_gflops"]
    if precision == "fp32" or not much_slower(gflops, fp32):
        return None
    return (
        f"not run: {precision} matmul here reaches {gflops:.2f} GFLOP/s against {fp32:.1f} in fp32 "
        f"({fp32 / gflops:.0f}x slower; the CPU has no fast {precision} kernel), so fp32 is the fastest setting"
    )


def machine_facts(load_before: tuple[float, ...]) -> dict:
    import torch

    flags = cpu_flags()
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "cpu_flags": {f: f in flags for f in FLAGS_REPORTED},
        "torch": torch.__version__,
        "load_average_before": list(load_before),
    }


def process_label(proc: psutil.Process) -> str:
    """`name` of a process, or for a Python one what it runs (`python -m MODULE`, `python SCRIPT`), so the
    reward server, the Ray dashboard and the driver are told apart in a memory breakdown."""
    name = proc.name()
    if not name.startswith("python"):
        return name
    args = proc.cmdline()[1:]
    for i, arg in enumerate(args):
        if arg == "-m" and i + 1 < len(args):
            return f"{name} -m {args[i + 1]}"
        if arg.endswith(".py"):
            return f"{name} {Path(arg).name}"
    return name


def tree_pss(root_pid: int) -> tuple[int, list[tuple[str, int]]]:
    """(summed PSS bytes, [(label, PSS bytes)] per process) of `root_pid` and every descendant;
    vanished ones are skipped."""
    try:
        root = psutil.Process(root_pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0, []
    total, each = 0, []
    for proc in procs:
        try:
            pss = proc.memory_full_info().pss
            each.append((process_label(proc), pss))
            total += pss
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue  # exited between the listing and the read
    return total, each


class PeakPss:
    """A thread sampling tree_pss(root_pid) every `interval` s until stop(); keeps the peak and who held it."""

    def __init__(self, root_pid: int, interval: float = 0.5):
        self.root_pid, self.interval = root_pid, interval
        self.peak_bytes, self.peak_processes, self.samples = 0, [], 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"pss-{root_pid}", daemon=True)

    def _run(self) -> None:
        while True:
            total, each = tree_pss(self.root_pid)
            if each:
                self.samples += 1
                if total > self.peak_bytes:
                    self.peak_bytes, self.peak_processes = total, sorted(each, key=lambda e: -e[1])
            if self._stop.wait(self.interval):
                return

    def start(self) -> PeakPss:
        self._thread.start()
        return self

    def stop(self) -> dict:
        self._stop.set()
        self._thread.join()
        return {
            "peak_pss_bytes": self.peak_bytes,
            "peak_pss_gib": self.peak_bytes / GIB,
            # largest first: where the memory of the peak sample was
            "processes_at_peak": [
                {"process": label, "pss_gib": round(b / GIB, 3)} for label, b in self.peak_processes
            ],
            "samples": self.samples,
        }


def matmul_params(model_dir: str | Path) -> dict:
    """Parameters that multiply per token, from the safetensors headers (no weights loaded).

    The input embedding is a lookup, not a matmul: left out, unless the output projection is tied to
    it (no lm_head tensor stored), where it is the lm_head's matmul and counted once.
    """
    from safetensors import safe_open

    files = sorted(Path(model_dir).glob("*.safetensors"))
    if not files:
        from orchestrator.errors import OrchestratorError

        raise OrchestratorError(f"--model {model_dir} has no *.safetensors")
    sizes = {}
    for f in files:
        with safe_open(str(f), framework="pt") as st:
            for name in st.keys():  # noqa: SIM118 (safe_open is not a mapping)
                numel = 1
                for d in st.get_slice(name).get_shape():
                    numel *= d
                sizes[name] = numel
    total = sum(sizes.values())
    embed = sum(n for k, n in sizes.items() if k.endswith("embed_tokens.weight"))
    tied = not any(k.endswith("lm_head.weight") for k in sizes)
    return {"parameters": total, "matmul_parameters": total if tied else total - embed, "tied": tied}
