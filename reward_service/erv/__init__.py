"""The Emotional Rationale Verifier: training (torch), export to ONNX, ONNX Runtime inference, the embedded model.

`model` runs in the reward-service process (ONNX Runtime, no torch); `train`, `export` and
`embedded` run in the `erv-grpo erv ...` / `models prepare` processes (torch, transformers).
"""
