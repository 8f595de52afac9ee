"""The job: typed config, Ray placement, the GRPO loop, the reward process, data, evaluation, the `erv-grpo` CLI.

Runs in the driver process (the user's shell or a RayJob's entrypoint).
"""

import common  # noqa: F401  (hooks the first torchvision import: common/torchvision_ops.py)
