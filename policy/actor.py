"""Ray adapter of the learner: `LearnerActor` (one rank) and `LearnerGroup` (data parallel).

`LearnerActor` runs in its own Ray worker process and only forwards to a plain `Learner`.
`LearnerGroup` runs in the driver (the orchestrator): it starts N actors, joins them in one
torch.distributed process group (gloo on CPU, NCCL on GPU; rank 0's node address and a free
port as the rendezvous), sends each rank its contiguous shard of a batch and returns rank 0's
metrics, which the learner already reduced over all ranks. Under `strategy: fsdp` each rank holds
a shard of the weights, so logprobs, export and save go to every rank (collectives) and rank 0's
answer is returned. The only module importing ray. torch is imported inside the methods, which
run in the actor's process: the driver imports this module for LearnerGroup and never loads torch.
"""

from __future__ import annotations

import contextlib
import socket
from pathlib import Path
from typing import TYPE_CHECKING

import ray

from common.affinity import parse_cores, pin_process
from common.memory import release_free_memory
from policy.batch import RolloutBatch
from policy.config import LearnerConfig
from policy.errors import PolicyError

if TYPE_CHECKING:
    import torch


class LearnerActor:
    """One learner rank; wrapped with `ray.remote` by LearnerGroup (resources set there)."""

    def __init__(self, config: dict, rank: int = 0, world_size: int = 1):
        self.config = LearnerConfig.model_validate(config)
        self.rank, self.world_size = rank, world_size
        self.learner = None
        self.shared = None  # share_weights' file (run.weight_transport: shared_memory)
        if self.config.cpu_bind is not None:  # the whole process, before torch starts its thread pools
            try:
                cores = pin_process(parse_cores(self.config.cpu_bind))
            except ValueError as err:
                raise PolicyError(f"learner.cpu_bind: {err}") from None
            import torch

            torch.set_num_threads(len(cores))

    def rendezvous(self) -> tuple[str, int]:
        """This node's address and a free port (called on rank 0)."""
        with socket.socket() as s:
            s.bind(("", 0))
            port = s.getsockname()[1]
        return ray.util.get_node_ip_address(), port

    def setup(self, master_addr: str, master_port: int) -> int:
        import torch
        import torch.distributed as dist

        from policy.learner import Learner

        if self.world_size > 1:
            backend = "nccl" if torch.cuda.is_available() and self.config.device != "cpu" else "gloo"
            dist.init_process_group(
                backend,
                init_method=f"tcp://{master_addr}:{master_port}",
                rank=self.rank,
                world_size=self.world_size,
            )
        self.learner = Learner(self.config)
        release_free_memory()  # the checkpoint read and the reference's conversion
        return self.learner.version

    def update(self, shard: RolloutBatch) -> dict[str, float]:
        with self._writing():
            metrics = self.learner.update(shard)
        release_free_memory()  # the activations: freed, handed back while the engines generate
        return metrics

    @contextlib.contextmanager
    def _writing(self):
        """Mark the shared weights file (if any) as being written: an engine loading meanwhile fails, not tears."""
        shared = self.shared
        if shared is not None:
            shared.begin_write()
        try:
            yield
        finally:
            if shared is not None:
                shared.end_write(self.learner.version)

    def share_weights(self, path: str) -> bytes:
        """Move the policy's parameters into a new shared file at `path` (run.weight_transport: shared_memory);
        returns its plan for the engines (common/shared_weights.py)."""
        from common.shared_weights import SharedWeightsError, share_parameters
        from policy.export import export_tensors

        learner = self.learner
        if learner.sharded or learner.device != "cpu":
            raise PolicyError("run.weight_transport: shared_memory needs an unsharded CPU learner "
                              f"(learner.device {learner.device!r}, strategy {self.config.strategy!r})")  # fmt: skip
        named = export_tensors(learner.policy, learner.export_prefix)  # the live parameters, engine names
        try:
            self.shared = share_parameters(named, list(learner.policy.parameters()), path, learner.version)
        except (SharedWeightsError, OSError) as err:  # OSError: no /dev/shm here, or it is full
            raise PolicyError(f"run.weight_transport: shared_memory: {err}") from None
        del named
        release_free_memory()  # the parameters' old memory
        return self.shared.plan.to_bytes()

    def shared_weights_version(self) -> int:
        """The version in the shared file, after checking that every parameter still lives there."""
        if not self.shared.holds([p for p in self.learner.policy.parameters()]):
            raise PolicyError("shared weights: a parameter moved out of the shared file; the engines would read "
                              "stale weights")  # fmt: skip
        return self.learner.version

    def unlink_shared_weights(self) -> None:
        """Remove the file's name once every engine has mapped it (the memory stays while mapped)."""
        self.shared.unlink()

    def export_weights(self, bucket_bytes: int = 256 << 20, dtype: torch.dtype | None = None):
        return self.learner.export_weights(bucket_bytes, dtype=dtype)

    def export_weights_ref(self, bucket_bytes: int, dtype: str | None = None) -> tuple:
        """(version, ObjectRef of the buckets, None on fsdp ranks > 0), put into the object store from
        here: the weights are serialised once (not returned to the driver and put again), straight from
        the parameters (ray.put copies before it returns). dtype: "bfloat16" etc., None = as held."""
        import torch

        from common.weight_plan import to_wire

        version, buckets = self.learner.export_weights(
            bucket_bytes, dtype=getattr(torch, dtype) if dtype else None, copy=False
        )
        ref = ray.put(to_wire(buckets)) if buckets else None  # numpy: no copy when a worker reads it
        del buckets
        release_free_memory()  # the export's converted copies (the object store holds its own)
        return version, ref

    def logprobs(self, prompt_token_ids: list[list[int]], completion_token_ids: list[list[int]],
                 media: list | None = None, prompt_texts: list | None = None):  # fmt: skip
        return self.learner.logprobs(prompt_token_ids, completion_token_ids, media, prompt_texts)

    def open_weight_transport(self, address: str, port: int, world_size: int, timeout_s: float) -> None:
        """Rank 0 joins the direct transport's group as its sender (policy/weight_transport.py)."""
        from policy.weight_transport import WeightSender

        if self.rank == 0:
            if getattr(self, "sender", None) is not None:
                self.sender.close()
            self.sender = WeightSender(address, port, world_size, timeout_s, self.learner.device)

    def send_weights(self, bucket_bytes: int, dtype: str | None = None) -> int:
        """One direct sync (rank 0 sends; other fsdp ranks take part in the gathers); returns the version.
        dtype: "bfloat16" etc. (the engines' precision: half the bytes of fp32), None = as held."""
        import torch

        from policy.weight_transport import send

        send(self.learner.policy, self.learner.version, bucket_bytes, getattr(self, "sender", None),
             dtype=getattr(torch, dtype) if dtype else None, prefix=self.learner.export_prefix)  # fmt: skip
        return self.learner.version

    def save(self, directory: str) -> str | None:
        # ddp: all ranks hold the same weights and optimizer state, rank 0 writes; fsdp: every rank its shard.
        if self.config.strategy == "fsdp" or self.rank == 0:
            return str(self.learner.save(directory))
        return None

    def load(self, directory: str) -> int:
        with self._writing():
            self.learner.load(directory)
        return self.learner.version

    def version(self) -> int:
        return self.learner.version

    def precision(self) -> str:
        return self.learner.precision

    def shutdown(self) -> None:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()


class LearnerGroup:
    """N learner actors in data parallel, used like one Learner from the driver."""

    def __init__(
        self,
        config: LearnerConfig,
        num_learners: int = 1,
        num_cpus_per_learner: float = 1,
        num_gpus_per_learner: float = 0,
    ):
        remote_cls = ray.remote(num_cpus=num_cpus_per_learner, num_gpus=num_gpus_per_learner)(LearnerActor)
        self.actors = [
            remote_cls.remote(config.model_dump(), rank, num_learners) for rank in range(num_learners)
        ]
        addr, port = ray.get(self.actors[0].rendezvous.remote())
        # All ranks must call init_process_group at once, so setup runs concurrently.
        ray.get([a.setup.remote(addr, port) for a in self.actors])
        self.sharded = config.strategy == "fsdp" and num_learners > 1

    def _ask(self, method: str, *args):
        """Rank 0's answer; under fsdp every rank takes part (the weights are sharded)."""
        actors = self.actors if self.sharded else self.actors[:1]
        return ray.get([getattr(a, method).remote(*args) for a in actors])[0]

    def update(self, batch: RolloutBatch) -> dict[str, float]:
        n = len(self.actors)
        if len(batch) < n:
            raise ValueError(f"batch has {len(batch)} rows, fewer than the {n} learners")
        results = ray.get([a.update.remote(batch.shard(rank, n)) for rank, a in enumerate(self.actors)])
        return results[0]

    def export_weights(self, bucket_bytes: int = 256 << 20, dtype: torch.dtype | None = None):
        return self._ask("export_weights", bucket_bytes, dtype)

    def export_weights_ref(self, bucket_bytes: int = 256 << 20, dtype: str | None = None) -> tuple:
        """(version, ObjectRef of rank 0's buckets): the object-store sync without the driver holding them."""
        return self._ask("export_weights_ref", bucket_bytes, dtype)

    def logprobs(self, prompt_token_ids: list[list[int]], completion_token_ids: list[list[int]],
                 media: list | None = None, prompt_texts: list | None = None):  # fmt: skip
        """The policy's logprobs of the given completion tokens (rank 0's; ddp: every rank holds the same weights);
        rows with media: per row its media dict and the engine's prompt text (Learner.logprobs)."""
        return self._ask("logprobs", prompt_token_ids, completion_token_ids, media, prompt_texts)

    def open_weight_transport(self, address: str, port: int, world_size: int, timeout_s: float) -> list:
        """Start joining the direct transport's group; ObjectRefs, awaited together with the engines'."""
        return [a.open_weight_transport.remote(address, port, world_size, timeout_s) for a in self.actors[:1]]

    def send_weights(self, bucket_bytes: int, dtype: str | None = None) -> list:
        """Start one direct sync (every rank under fsdp: its gathers); ObjectRefs of the versions."""
        actors = self.actors if self.sharded else self.actors[:1]
        return [a.send_weights.remote(bucket_bytes, dtype) for a in actors]

    def share_weights(self, path: str) -> bytes:
        """Rank 0's parameters into a shared file (run.weight_transport: shared_memory); the plan."""
        return ray.get(self.actors[0].share_weights.remote(path))

    def shared_weights_version(self) -> int:
        return ray.get(self.actors[0].shared_weights_version.remote())

    def unlink_shared_weights(self) -> None:
        ray.get(self.actors[0].unlink_shared_weights.remote())

    def transport_address(self) -> tuple[str, int]:
        """Rank 0's node address and a free port there: where the transport group's store listens."""
        return ray.get(self.actors[0].rendezvous.remote())

    def save(self, directory: str | Path) -> Path:
        ray.get([a.save.remote(str(directory)) for a in self.actors])
        return Path(directory)

    def load(self, directory: str | Path) -> int:
        return ray.get([a.load.remote(str(directory)) for a in self.actors])[0]

    @property
    def version(self) -> int:
        return ray.get(self.actors[0].version.remote())

    @property
    def precision(self) -> str:
        """fp32 | bf16: what rank 0 resolved learner.precision to (every rank resolves the same)."""
        return ray.get(self.actors[0].precision.remote())

    def shutdown(self) -> None:
        ray.get([a.shutdown.remote() for a in self.actors])
        for a in self.actors:
            ray.kill(a)
        self.actors = []
