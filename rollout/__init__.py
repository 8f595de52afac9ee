"""Rollouts: the vLLM engine wrapper and the rollout Ray actor that streams finished groups to the reward service.

Runs in the rollout worker processes (one vLLM engine each).
"""

import common  # noqa: F401  (hooks the first torchvision import: common/torchvision_ops.py)
