"""The house rules of the code base: module docstrings, module size, errors raised below the CLI."""

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("common", "reward_service", "policy", "rollout", "orchestrator")
# The entry points that may end a process with one `erv-grpo: error:` line (and where that line is written).
CLI_ENTRIES = {
    "orchestrator/cli.py",
    "reward_service/server/__main__.py",
    "reward_service/server/service.py",
    "reward_service/bench/baseline.py",
    "reward_service/bench/hostile.py",
    "common/errors.py",
}


def _modules():
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if "proto_gen" not in path.parts:
                yield path.relative_to(ROOT).as_posix(), path.read_text()


def test_every_module_says_what_it_does():
    missing = [name for name, text in _modules() if not ast.get_docstring(ast.parse(text))]
    assert missing == []


def test_modules_stay_under_400_lines():
    long = [(name, text.count("\n")) for name, text in _modules() if text.count("\n") > 400]
    assert long == []


def test_no_process_exit_below_the_cli():
    """Library code raises typed errors (common.errors); only the CLI entries turn them into SystemExit."""
    offenders = [
        name
        for name, text in _modules()
        if name not in CLI_ENTRIES and re.search(r"raise SystemExit|sys\.exit\(|erv-grpo: error: \{", text)
    ]
    assert offenders == []
