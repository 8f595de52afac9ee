"""Driver side of the direct weight transport (`run.weight_transport: collective`): forms the group, runs a sync.

Runs in the orchestrator (Ray driver) process. The group is learner rank 0 (the sender, whose
node hosts the rendezvous) and the rollout workers present when the run starts (ranks 1..N).
A sync starts the learner's send and every member's receive at once (they meet inside the
same collectives) and waits for both; any failure (a receiver that died or hung, a load that
failed) raises WeightTransportError, bounded by the group's timeout. Workers that join later
(scale-out, a restarted worker) are not members: TrainingRun.sync_weights gives them the
object-store path.
"""

from __future__ import annotations

from common.errors import WeightTransportError

MARGIN_S = 30.0  # Ray call overhead on top of the collectives' own timeout


def open_transport(run_config, learner, workers: list) -> CollectiveTransport | None:
    """The group for `run.weight_transport: collective`; None for object_store."""
    if run_config.weight_transport != "collective":
        return None
    return CollectiveTransport(learner, workers, run_config.weight_transport_timeout_s)


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

    def sync(self, learner, bucket_bytes: int, dtype: str | None = None) -> int:
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
