"""Run a function on N CPU ranks joined over gloo, each in its own spawned process (tests only).

`run_ranks(fn, world_size, *args)` starts `world_size` processes (torch.multiprocessing, spawn),
each with one torch thread and a gloo process group (TCP rendezvous on a free local port); rank r
calls `fn(r, *args)` and its return value comes back (through a file, so tensors are fine). Every
process group is destroyed and every process joined (or killed) before it returns or raises.
`fn` must be importable (a module-level function).
"""

from __future__ import annotations

import os
import socket
import tempfile
import traceback
from pathlib import Path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _child(rank: int, world_size: int, port: int, out: str, fn, args) -> None:
    import torch
    import torch.distributed as dist

    torch.set_num_threads(1)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    path = Path(out) / f"rank{rank}.pt"
    try:
        dist.init_process_group(
            "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size
        )
        result = fn(rank, *args)
        torch.save({"ok": result}, path)
    except BaseException:
        torch.save({"error": traceback.format_exc()}, path)
        raise
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def run_ranks(fn, world_size: int, *args, timeout: float = 300.0) -> list:
    """fn(rank, *args) on every rank; returns the results in rank order."""
    import torch
    import torch.multiprocessing as mp

    ctx = mp.get_context("spawn")
    port = _free_port()
    with tempfile.TemporaryDirectory() as out:
        procs = [
            ctx.Process(target=_child, args=(r, world_size, port, out, fn, args), daemon=True)
            for r in range(world_size)
        ]
        for p in procs:
            p.start()
        try:
            for p in procs:
                p.join(timeout)
        finally:
            for p in procs:
                if p.is_alive():
                    p.kill()
                    p.join()
        results = []
        for r, p in enumerate(procs):
            path = Path(out) / f"rank{r}.pt"
            got = torch.load(path, weights_only=False) if path.is_file() else {"error": f"exit {p.exitcode}"}
            if "error" in got:
                raise RuntimeError(f"rank {r} failed:\n{got['error']}")
            results.append(got["ok"])
        return results
