"""The policy: GRPO math, the learner (and its Ray actor), model loading, checkpoints, SFT cold start.

Runs in the learner actor(s) and in `erv-grpo sft`; of reward_service it imports only the pure `core`.
"""

import common  # noqa: F401  (hooks the first torchvision import: common/torchvision_ops.py)
