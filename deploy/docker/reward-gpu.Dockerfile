# syntax=docker/dockerfile:1.7
# GPU image for the ERV reward service (`erv-grpo reward serve`): ONNX Runtime with the CUDA execution
# provider and the reward_service package only; no torch, vLLM or Ray. Build from the repository root:
#   docker build -f deploy/docker/reward-gpu.Dockerfile -t erv-grpo-reward:0.1.0 .
# The ERV model folder (model.onnx, tokenizer.json, labels.json) is mounted at /models/erv at run time.

ARG PYTHON_IMAGE=python:3.11.7-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder
ENV VIRTUAL_ENV=/opt/venv PATH=/opt/venv/bin:$PATH PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
WORKDIR /src
COPY deploy/docker/requirements-reward.txt /tmp/requirements-reward.txt
RUN pip install --no-cache-dir -r /tmp/requirements-reward.txt
COPY pyproject.toml README.md ./
COPY common/ common/
COPY reward_service/ reward_service/
COPY policy/ policy/
COPY rollout/ rollout/
COPY orchestrator/ orchestrator/
# --no-deps: the project's own dependency list is the training stack; the service needs only the above.
RUN pip install --no-cache-dir --no-deps .

FROM ${PYTHON_IMAGE} AS runtime
RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin erv
COPY --from=builder /opt/venv /opt/venv
ENV VIRTUAL_ENV=/opt/venv PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 \
    NVIDIA_VISIBLE_DEVICES=all NVIDIA_DRIVER_CAPABILITIES=compute,utility
USER 10001
WORKDIR /home/erv
# 50051 gRPC (erv.reward.v1 + grpc.health.v1), 8000 HTTP (/healthz /readyz /metrics /v1/score).
EXPOSE 50051 8000
HEALTHCHECK --interval=15s --timeout=3s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2)"]
# The server drains for --drain-seconds (default 30) on SIGTERM; exec form so it receives the signal.
ENTRYPOINT ["erv-grpo", "reward", "serve"]
CMD ["--model-dir", "/models/erv", "--host", "0.0.0.0", "--grpc-port", "50051", "--http-port", "8000"]
