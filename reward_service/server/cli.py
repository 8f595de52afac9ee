"""`erv-grpo` commands of the reward service: `reward serve` and `proto generate`.

Runs in the user's shell process; registered through reward_service/cli.py. Heavy imports
(grpc, onnxruntime, the server) happen inside the handlers so `erv-grpo --help` stays fast.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parents[1]  # reward_service/
PROTO_ROOT = PACKAGE_DIR / "proto"
PROTO_FILE = "erv/reward/v1/reward.proto"
PROTO_GEN = PACKAGE_DIR / "proto_gen"
GEN_INIT = '"""Generated gRPC/protobuf code for erv.reward.v1 (`erv-grpo proto generate`); do not edit."""\n'
# protoc writes `from erv.reward.v1 import reward_pb2`; the stubs live flat in this package instead.
_PROTOC_IMPORT = "from erv.reward.v1 import reward_pb2"
_PACKAGE_IMPORT = "from reward_service.proto_gen import reward_pb2"


def generate_proto_files() -> dict[str, str]:
    """Run protoc (grpc_tools) on reward.proto; returns {file name: content} of the stubs."""
    import grpc_tools
    from grpc_tools import protoc

    well_known = Path(grpc_tools.__file__).parent / "_proto"
    with tempfile.TemporaryDirectory() as out:
        code = protoc.main(
            [
                "protoc",
                f"-I{PROTO_ROOT}",
                f"-I{well_known}",
                f"--python_out={out}",
                f"--pyi_out={out}",
                f"--grpc_python_out={out}",
                str(PROTO_ROOT / PROTO_FILE),
            ]
        )
        if code != 0:
            raise SystemExit(f"erv-grpo: error: protoc failed on {PROTO_ROOT / PROTO_FILE} (exit {code})")
        gen_dir = Path(out) / "erv/reward/v1"
        files = {"__init__.py": GEN_INIT}
        for path in sorted(gen_dir.iterdir()):
            files[path.name] = path.read_text().replace(_PROTOC_IMPORT, _PACKAGE_IMPORT)
    return files


def stale_proto_files(files: dict[str, str]) -> list[str]:
    """Names of generated files that are missing or differ from what is committed."""
    return [
        name
        for name, text in files.items()
        if not (PROTO_GEN / name).is_file() or (PROTO_GEN / name).read_text() != text
    ]


def _proto_generate(args: argparse.Namespace) -> int:
    files = generate_proto_files()
    stale = stale_proto_files(files)
    if args.check:
        if stale:
            print(
                f"stale generated files in {PROTO_GEN}: {', '.join(stale)}; run `erv-grpo proto generate`",
                file=sys.stderr,
            )
            return 1
        print(f"{PROTO_GEN}: up to date")
        return 0
    PROTO_GEN.mkdir(exist_ok=True)
    for name, text in files.items():
        (PROTO_GEN / name).write_text(text)
    print(f"wrote {len(files)} files to {PROTO_GEN} ({len(stale)} changed)")
    return 0


def _reward_serve(args: argparse.Namespace) -> int:
    from reward_service.server.config import load_service_config
    from reward_service.server.service import run_server

    config = load_service_config(args)
    return run_server(config)


def add_serve_options(parser: argparse.ArgumentParser) -> None:
    """Options of `reward serve` (also used by `python -m reward_service.server`)."""
    parser.add_argument(
        "--config", type=Path, help="YAML file with RewardServiceConfig fields; flags below override it"
    )
    parser.add_argument(
        "--model-dir", type=Path, help="exported ERV folder (model.onnx, tokenizer.json, labels.json)"
    )
    parser.add_argument("--host", help="address to bind gRPC and HTTP to (default 127.0.0.1: loopback only)")
    parser.add_argument("--grpc-port", type=int, help="gRPC port (default 50051; 0 picks a free one)")
    parser.add_argument(
        "--http-port", type=int, help="HTTP port for /healthz /readyz /metrics /v1/score (default 8000)"
    )
    parser.add_argument(
        "--tls-cert", type=Path, help="PEM server certificate: turns on TLS for gRPC and HTTP"
    )
    parser.add_argument("--tls-key", type=Path, help="PEM private key of --tls-cert")
    parser.add_argument(
        "--tls-client-ca",
        type=Path,
        help="PEM CA bundle: require client certificates signed by it (mutual TLS)",
    )
    parser.add_argument(
        "--token-file", type=Path, help="file holding a bearer token every Score call must present"
    )
    parser.add_argument(
        "--drain-seconds", type=float, help="grace period for in-flight work after SIGTERM (default 30)"
    )
    parser.add_argument("--max-batch-tokens", type=int, help="token budget of one model batch (default 8192)")
    parser.add_argument(
        "--max-wait-ms", type=float, help="longest a sentence waits for its batch to fill (default 5)"
    )
    parser.add_argument(
        "--max-queue-sentences", type=int, help="bounded queue: past it requests get RESOURCE_EXHAUSTED"
    )
    parser.add_argument(
        "--sentence-cache-size", type=int, help="LRU cache entries of sentence probabilities (0 turns it off)"
    )
    parser.add_argument(
        "--num-threads", type=int, help="ERV runtime intra-op threads on CPU (default: all cores)"
    )
    parser.add_argument(
        "--backend",
        choices=["onnx", "torch"],
        help="what runs the ERV: onnx (ONNX Runtime, default) or torch (PyTorch, e.g. CUDA without onnxruntime-gpu)",
    )
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], help="ERV device (default auto)")
    parser.add_argument(
        "--dtype",
        choices=["float32", "bfloat16", "float16"],
        help="torch backend compute precision (default float32; onnx is float32 only)",
    )
    parser.add_argument(
        "--ready-file",
        type=Path,
        help="write 'GRPC_PORT HTTP_PORT' to this file once serving (for scripts and tests)",
    )


def register(sub, groups) -> None:
    """Add `reward serve` and `proto generate` to the parser tree."""
    serve = groups["reward"].add_parser(
        "serve",
        help="serve ERV rewards over gRPC (Score, ScoreStream) and HTTP (/v1/score, /metrics)",
        description="Run the reward service: gRPC on --grpc-port, HTTP (health, metrics, JSON scoring) on --http-port.",
    )
    add_serve_options(serve)
    serve.set_defaults(func=_reward_serve)

    proto = sub.add_parser(
        "proto", help="gRPC stubs of the reward service", description="gRPC stubs of the reward service"
    )
    proto_sub = proto.add_subparsers(dest="proto_command", required=True, metavar="COMMAND")
    gen = proto_sub.add_parser(
        "generate",
        help="regenerate reward_service/proto_gen from reward.proto",
        description="Regenerate reward_service/proto_gen/ from reward_service/proto/erv/reward/v1/reward.proto.",
    )
    gen.add_argument(
        "--check", action="store_true", help="write nothing; exit 1 when the committed stubs are stale"
    )
    gen.set_defaults(func=_proto_generate)
