"""Build the tests' tiny policy (a random Qwen2 fitted to the answer format) and tiny ERV into one folder.

Run from the repository root on a developer machine: `python scripts/build_tiny_models.py DIR` writes
DIR/policy and DIR/erv, the models `erv-grpo bench async --model DIR/policy --erv-dir DIR/erv` uses
when no embedded model should be involved (seconds to build, nothing downloaded).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import common  # noqa: E402, F401  (hooks torchvision's first import: common/torchvision_ops.py)
from tests.support.tiny_erv import build_tiny_erv  # noqa: E402
from tests.support.tiny_policy import build_tiny_formatted_policy  # noqa: E402

if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", nargs="?", type=Path, default=Path(".cache/models/tiny"))
    parser.add_argument(
        "--sentences", type=int, default=1, help="explanation sentences the policy writes (1-6)"
    )
    parser.add_argument("--fit-steps", type=int, default=80, help="supervised steps fitting it to the format")
    args = parser.parse_args()
    policy = build_tiny_formatted_policy(args.out / "policy", steps=args.fit_steps, sentences=args.sentences)
    print(policy, build_tiny_erv(args.out / "erv"))
