"""The reward service process: dynamic batching, scoring, gRPC and HTTP adapters, Prometheus metrics, config.

`python -m reward_service.server` (or `erv-grpo reward serve`) runs it. Imports no torch,
transformers, vLLM or Ray: the reward image ships without them.
"""
