"""The object-store weight sync one bucket at a time: `WeightStream`.

Made in the driver (policy/actor.py, `LearnerGroup.export_weights_source`), sent to every rollout
worker with its `load_weights` call and iterated there: each step asks the learner's rank 0 for
the next bucket, which Ray returns through the object store owned by the worker, so it is freed as
soon as the engine has copied it. Ray's store keeps every page it has once touched, for the rest of
the run; with one `ray.put` of the whole model that was the model's size (0.25 GiB for a 135M policy
in bf16), streamed it is about two buckets per worker (the last tensor of one still in use while
the next arrives).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass


@dataclass(frozen=True)
class WeightStream:
    """The buckets of weights `version`, pulled from `learner` (a LearnerActor handle) in order."""

    learner: object
    version: int
    num_buckets: int
    bucket_bytes: int
    dtype: str | None  # "bfloat16" etc.; None: as the learner holds them

    def __iter__(self) -> Iterator[list[tuple[str, str, object]]]:
        """Each bucket as common.weight_plan.to_wire made it; the previous one is let go before the next
        is asked for (the consumer must not keep references to it either)."""
        import ray

        for index in range(self.num_buckets):
            wire = ray.get(
                self.learner.export_bucket.remote(self.version, index, self.bucket_bytes, self.dtype)
            )
            yield wire
            del wire
