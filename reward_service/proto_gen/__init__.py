"""Generated gRPC/protobuf code for erv.reward.v1 (`erv-grpo proto generate`); do not edit."""
