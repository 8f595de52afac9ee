# syntax=docker/dockerfile:1.7
# GPU image for every Ray node of a training job: head (runs the `erv-grpo train` driver),
# rollout workers (vLLM engines) and the learner. Build from the repository root:
#   docker build -f deploy/docker/ray-gpu.Dockerfile -t erv-grpo-ray:0.1.0 .
# Versions are pinned in deploy/docker/constraints-gpu.txt (torch 2.13.0 <-> vLLM 0.32.0 <-> Ray 2.60.0).

ARG CUDA_IMAGE=nvidia/cuda:13.0.1-runtime-ubuntu24.04

FROM ${CUDA_IMAGE} AS builder
ENV DEBIAN_FRONTEND=noninteractive
# Ubuntu point releases rotate out of the archive, so apt packages follow the pinned base tag.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv python3-dev build-essential git \
 && rm -rf /var/lib/apt/lists/*
ENV VIRTUAL_ENV=/opt/venv PATH=/opt/venv/bin:$PATH PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python3 -m venv /opt/venv
WORKDIR /src
COPY deploy/docker/constraints-gpu.txt /tmp/constraints-gpu.txt
# torch first, from the constraint pin, so vLLM resolves against exactly this build.
RUN pip install --no-cache-dir -c /tmp/constraints-gpu.txt "torch==2.13.0" \
 && pip install --no-cache-dir -c /tmp/constraints-gpu.txt "vllm==0.32.0" "ray[default]==2.60.0"
COPY pyproject.toml README.md ./
COPY common/ common/
COPY policy/ policy/
COPY reward_service/ reward_service/
COPY rollout/ rollout/
COPY orchestrator/ orchestrator/
COPY configs/ configs/
RUN pip install --no-cache-dir -c /tmp/constraints-gpu.txt ".[gpu]"

FROM ${CUDA_IMAGE} AS runtime
ENV DEBIAN_FRONTEND=noninteractive
# wget: KubeRay's default readiness/liveness probes call the raylet and GCS health endpoints with it.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 wget ca-certificates tini \
 && rm -rf /var/lib/apt/lists/* \
 && (userdel -r ubuntu 2>/dev/null || true) \
 && useradd --create-home --uid 1000 --shell /bin/bash ray
COPY --from=builder /opt/venv /opt/venv
COPY --chown=ray:ray configs/ /home/ray/configs/
COPY --chown=ray:ray data/ /home/ray/data/
ENV VIRTUAL_ENV=/opt/venv PATH=/opt/venv/bin:$PATH \
    RAY_USAGE_STATS_ENABLED=0 HF_HOME=/home/ray/.cache/huggingface \
    NVIDIA_VISIBLE_DEVICES=all NVIDIA_DRIVER_CAPABILITIES=compute,utility
USER 1000
WORKDIR /home/ray
# 8265 Ray dashboard/job API, 6379 GCS, 10001 Ray client, 9400 training metrics (erv_grpo_*).
EXPOSE 6379 8265 10001 9400
ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["bash"]
