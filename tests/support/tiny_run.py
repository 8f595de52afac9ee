"""The end-to-end tests' tiny run: configs/tiny.yaml over a format-fitted tiny policy and a tiny ERV, and its cluster.

Runs in the pytest process (the Ray driver). `tiny_config(tmp, *overrides)` builds the models once
under `tmp` and returns `base(*more) -> TrainConfig`; `tiny_cluster(config, tmp)` yields a Cluster
and stops it and Ray afterwards.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from orchestrator.cluster import Cluster
from orchestrator.config import load_config
from tests.support.tiny_erv import build_tiny_erv
from tests.support.tiny_policy import build_tiny_formatted_policy


def tiny_config(tmp: Path, *overrides: str):
    """base(*more): configs/tiny.yaml with the tiny models, run folders under tmp, `overrides`, then `more`."""
    fixed = [
        f"learner.model={build_tiny_formatted_policy(tmp / 'policy')}",
        f"reward.model_dir={build_tiny_erv(tmp / 'erv')}",
        f"run.output_dir={tmp / 'runs'}",
        *overrides,
    ]
    return lambda *more: load_config("configs/tiny.yaml", fixed + list(more))


@contextlib.contextmanager
def tiny_cluster(config, tmp: Path):
    """A Cluster for `config`, closed (and Ray shut down) on exit."""
    import ray

    cluster = Cluster(config, tmp)
    try:
        yield cluster
    finally:
        cluster.close()
        ray.shutdown()
