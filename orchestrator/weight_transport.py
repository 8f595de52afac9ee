"""Driver side of the direct weight transports: `collective` (a process group) and `shared_memory` (one file).

Runs in the orchestrator (Ray driver) process. The group is learner rank 0 (the sender, whose
node hosts the rendezvous) and the rollout workers present when the run starts (ranks 1..N).
A sync starts the learner's send and every member's receive at once (they meet inside the
same collectives) and waits for both; any failure (a receiver that died or hung, a load that
failed) raises WeightTransportError, bounded by the group's timeout. Workers that join later
(scale-out, a restarted worker) are not members: TrainingRun.sync_weights gives them the
object-store path.

`shared_memory` (SharedMemoryTransport): the learner's parameters move into one file in /dev/shm
(common/shared_weights.py) that every worker on its node maps at the start; a sync is each of them
loading the current version from it. Workers that cannot see the file (another node) and workers
that join later get the object-store path.
"""

from __future__ import annotations

import re
import sys

from common.errors import WeightTransportError

MARGIN_S = 30.0  # Ray call overhead on top of the collectives' own timeout


def open_transport(run_config, learner, workers: list, dtype: str | None = None, run_id: str = ""):
    """The transport of `run.weight_transport` (collective, shared_memory); None for object_store.

    dtype: what the engines need the weights in (None: as the learner holds them). shared_memory can only
    hand over the learner's own tensors: otherwise (a bf16 engine, an fp32 learner) it says so and the
    weights go through the object store, converted."""
    if run_config.weight_transport == "collective":
        return CollectiveTransport(learner, workers, run_config.weight_transport_timeout_s)
    if run_config.weight_transport == "shared_memory":
        if dtype is not None:
            print(f"erv-grpo: run.weight_transport shared_memory: the engines take {dtype} weights, the learner "
                  "holds fp32; they go through the object store", file=sys.stderr, flush=True)  # fmt: skip
            return None
        return SharedMemoryTransport(learner, workers, run_config.weight_transport_timeout_s, run_id)
    return None


class CollectiveTransport:
    def __init__(self, learner, workers: list, timeout_s: float):
        self.timeout_s = timeout_s
        self.members = list(workers)
        address, port = learner.transport_address()
        world = 1 + len(workers)
        refs = learner.open_weight_transport(address, port, world, timeout_s)
        refs += [w.open_weight_transport.remote(address, port, i + 1, world, timeout_s)
                 for i, w in enumerate(workers)]  # fmt: skip
        self._get(refs, "joining the group")

    def covers(self, workers: list) -> bool:
        """True when `workers` include every member (a broadcast reaches all members or none)."""
        return all(any(w is m for w in workers) for m in self.members)

    def others(self, workers: list) -> list:
        """The workers of `workers` that are not members (they get the object-store path)."""
        return [w for w in workers if not any(w is m for m in self.members)]

    def sync(self, learner, bucket_bytes: int, dtype: str | None = None, workers: list | None = None) -> int:
        """Send the learner's current weights (in `dtype`, None: as held) to every member; returns the
        version they now hold."""
        sent = learner.send_weights(bucket_bytes, dtype)
        received = [w.receive_weights.remote() for w in self.members]
        versions = self._get(sent + received, "a sync")
        if len(set(versions)) != 1:
            raise WeightTransportError(f"weight transport: members hold different versions {versions}")
        return versions[0]

    def _get(self, refs: list, what: str) -> list:
        import ray

        try:
            return ray.get(refs, timeout=self.timeout_s + MARGIN_S)
        except ray.exceptions.GetTimeoutError as err:
            raise WeightTransportError(
                f"weight transport: {what} did not finish within {self.timeout_s + MARGIN_S:g} s"
            ) from err
        except ray.exceptions.RayActorError as err:
            raise WeightTransportError(
                f"weight transport: {what} failed, a member's process died ({type(err).__name__})"
            ) from err
        except WeightTransportError as err:  # Ray re-raises a task's typed error as a subclass of it
            cause = getattr(err, "cause", err)
            raise WeightTransportError(f"{what} failed: {cause}") from err


class SharedMemoryTransport(CollectiveTransport):
    """The learner's parameters in a file the workers on its node map; a sync is their load from it."""

    def __init__(self, learner, workers: list, timeout_s: float, run_id: str = ""):
        import uuid

        self.timeout_s = timeout_s
        name = re.sub(r"[^A-Za-z0-9_.-]", "_", run_id or "run")
        path = f"/dev/shm/erv-grpo-weights-{name}-{uuid.uuid4().hex[:8]}"
        plan = learner.share_weights(path)
        try:
            refs = [w.map_shared_weights.remote(path, plan) for w in workers]
            self.members = [w for w, ref in zip(workers, refs, strict=True) if self._mapped(ref)]
        finally:
            learner.unlink_shared_weights()  # mapped where it will be: nothing is left in /dev/shm

    def _mapped(self, ref) -> bool:
        """A worker that died before the run (its replacement gets the object store) is not a member."""
        import ray

        try:
            return self._get([ref], "mapping the file")[0]
        except WeightTransportError as err:
            if isinstance(err.__cause__, ray.exceptions.RayActorError):
                return False
            raise

    def covers(self, workers: list) -> bool:
        return any(w is m for w in workers for m in self.members)

    def sync(self, learner, bucket_bytes: int, dtype: str | None = None, workers: list | None = None) -> int:
        """Every member among `workers` (default: all) loads the learner's current version from the file."""
        if dtype is not None:  # open_transport rules this out; a conversion cannot happen on the way
            raise WeightTransportError(f"shared weights cannot be converted to {dtype} on the way")
        version = learner.shared_weights_version()
        targets = [m for m in self.members if workers is None or any(w is m for w in workers)]
        versions = self._get([w.load_shared_weights.remote(version) for w in targets], "a sync")
        if versions != [version] * len(versions):
            raise WeightTransportError(f"weight transport: members hold versions {versions}, not {version}")
        return version
