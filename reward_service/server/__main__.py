"""`python -m reward_service.server ...`: the reward service process entry (same options as `erv-grpo reward serve`)."""

import sys

from reward_service.server.service import main

if __name__ == "__main__":
    sys.exit(main())
