"""The committed gRPC stubs match reward.proto, and the wire contract of erv.reward.v1 holds."""

import subprocess
import sys

from reward_service.proto_gen import reward_pb2
from reward_service.server import cli as service_cli


def test_committed_stubs_are_not_stale():
    files = service_cli.generate_proto_files()
    assert set(files) == {"__init__.py", "reward_pb2.py", "reward_pb2.pyi", "reward_pb2_grpc.py"}
    assert service_cli.stale_proto_files(files) == [], "run `erv-grpo proto generate` and commit proto_gen/"


def test_check_flag_exits_nonzero_when_stale(tmp_path, monkeypatch):
    monkeypatch.setattr(service_cli, "PROTO_GEN", tmp_path)  # an empty folder: everything is stale
    parser = _parser()
    args = parser.parse_args(["proto", "generate", "--check"])
    assert args.func(args) == 1
    args = parser.parse_args(["proto", "generate"])
    assert args.func(args) == 0
    assert (tmp_path / "reward_pb2_grpc.py").read_text().count(
        "from reward_service.proto_gen import reward_pb2"
    ) == 1
    args = parser.parse_args(["proto", "generate", "--check"])
    assert args.func(args) == 0


def test_cli_check_in_a_fresh_process():
    result = subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", "proto", "generate", "--check"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr


def test_wire_contract_field_numbers():
    # Field numbers are the wire format: changing one breaks every deployed client.
    def numbers(message):
        return {f.name: f.number for f in message.DESCRIPTOR.fields}

    assert reward_pb2.DESCRIPTOR.package == "erv.reward.v1"
    assert numbers(reward_pb2.Completion) == {"id": 1, "text": 2, "ground_truth": 3}
    assert numbers(reward_pb2.ScoreRequest) == {
        "request_id": 1,
        "completions": 2,
        "return_sentences": 3,
        "timeout_ms": 4,
        "weights": 5,
    }
    assert numbers(reward_pb2.RewardWeights) == {"explanation": 1, "format": 2, "answer": 3}
    assert numbers(reward_pb2.ScoreResponse) == {"request_id": 1, "model_version": 2, "scores": 3, "error": 4}
    assert numbers(reward_pb2.CompletionScore) == {
        "id": 1, "explanation": 2, "format": 3, "answer": 4, "total": 5, "predicted": 6,
        "num_sentences": 7, "num_neutral": 8, "num_matching": 9, "sentences": 10,
    }  # fmt: skip
    assert numbers(reward_pb2.SentenceLabels) == {"text": 1, "labels": 2}
    service = reward_pb2.DESCRIPTOR.services_by_name["RewardService"]
    methods = {m.name: (m.client_streaming, m.server_streaming) for m in service.methods}
    assert methods == {"Score": (False, False), "ScoreStream": (True, True)}


def _parser():
    from orchestrator.cli import build_parser

    return build_parser()
