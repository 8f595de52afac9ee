"""The driver (orchestrator) process stays free of torch, vLLM and transformers at import."""

import subprocess
import sys


def test_the_drivers_modules_do_not_load_torch():
    # The driver (orchestrator) imports these; torch there would cost ~0.15 GiB of the job's peak.
    # and at run time: route_logs configures transformers' logger (transformers.utils looks torchvision up,
    # which common/torchvision_ops.py's hook must not answer by loading torch)
    code = (
        "import sys, orchestrator.loop, orchestrator.commands, orchestrator.cluster, policy.actor, rollout.actor;"
        "import importlib.util; assert importlib.util.find_spec('torchvision') is not None;"
        "from transformers.utils import logging;"
        "print(sorted(m for m in ('torch', 'vllm', 'torchvision') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout
