"""The driver (orchestrator) process stays free of torch, vLLM and transformers at import."""

import subprocess
import sys


def test_the_drivers_modules_do_not_load_torch():
    # The driver (orchestrator) imports these; torch there would cost ~0.15 GiB of the job's peak.
    code = (
        "import sys, orchestrator.loop, orchestrator.commands, orchestrator.cluster, policy.actor, rollout.actor;"
        "print(sorted(m for m in ('torch', 'vllm', 'transformers') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout
