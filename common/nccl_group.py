"""The GPU group of the direct weight transport: vLLM's own trainer <-> engine NCCL communicator.

Runs in the learner's rank-0 process and in each rollout engine's vLLM worker, on CUDA only.
vLLM 0.32 ships an RLHF weight-transfer layer (vllm.distributed.weight_transfer); its NCCL
backend joins the trainer and the engines with `nccl_common.stateless_init_process_group`
(a StatelessProcessGroup rendezvous, then a PyNcclCommunicator outside torch.distributed's
global state). This adapter uses that communicator for the transport's broadcasts, so the
wire protocol (common/collective.py) is the same on CPU and GPU. NCCL calls are asynchronous:
each waits on its stream with a deadline, and a missed deadline raises WeightTransportError
(the communicator is then unusable; the run stops). Not exercised on this CPU-only machine.
"""

from __future__ import annotations

import time

import torch

from common.errors import WeightTransportError


class NcclGroup:
    device = "cuda"

    def __init__(self, address: str, port: int, rank: int, world_size: int, timeout_s: float):
        from vllm.distributed.weight_transfer.nccl_common import stateless_init_process_group

        self.rank, self.world_size, self.timeout_s = rank, world_size, timeout_s
        self.comm = stateless_init_process_group(
            address, port, rank, world_size, torch.accelerator.current_device_index()
        )

    def _wait(self, what: str) -> None:
        stream = torch.cuda.current_stream()
        deadline = time.monotonic() + self.timeout_s
        while not stream.query():  # a polled wait: synchronize() has no timeout
            if time.monotonic() > deadline:
                raise WeightTransportError(
                    f"weight transport: {what} did not complete on rank {self.rank} of {self.world_size} "
                    f"within {self.timeout_s:g} s, a peer died or hung"
                )
            time.sleep(0.001)

    def broadcast(self, tensor: torch.Tensor, what: str) -> None:
        self.comm.broadcast(tensor, src=0, stream=torch.cuda.current_stream())
        self._wait(what)

    def all_reduce(self, tensor: torch.Tensor, what: str) -> None:
        tensor.copy_(self.comm.all_reduce(tensor, stream=torch.cuda.current_stream()))
        self._wait(what)

    def close(self) -> None:
        self.comm.destroy()
