"""`erv-grpo bench step --against trl`: the FLOP estimate, medians, PSS of a process tree, goals, load label, end to end."""

import json
import os
import subprocess
import sys
import time

import pytest

from orchestrator.bench import load_limit, require_inputs, under_load
from orchestrator.bench.step import (
    _run_measured,
    goal_verdicts,
    learner_threads,
    median_after_first,
    summarize_erv,
    update_flops,
)
from orchestrator.bench.step_measure import PeakPss, matmul_params, slow_precision_reason, tree_pss
from orchestrator.bench.step_trl import project_reward
from orchestrator.cli import main
from orchestrator.errors import OrchestratorError

MB = 1024**2


def test_update_flops_are_six_for_the_policy_and_two_for_the_reference_per_parameter_and_token():
    assert update_flops(1000, 50) == 6 * 1000 * 50 + 2 * 1000 * 50 == 400_000


def test_median_leaves_out_the_first_step():
    assert median_after_first([100.0, 3.0, 1.0, 2.0]) == 2.0
    assert median_after_first([100.0, 4.0, 2.0]) == 3.0
    with pytest.raises(OrchestratorError, match="at least 2"):
        median_after_first([5.0])


def _record(step_seconds, update, sync, model_tokens=200.0):
    return {"step_seconds": step_seconds, "phase/generate": 1.0, "phase/update": update,
            "phase/weight_sync": sync, "phase/parity_probe": 0.3, "phase/reward_wait": 0.1,
            "update_seconds": update - 0.1, "model_tokens": model_tokens,
            "learner_tokens_per_second": 500.0, "num_completion_tokens": 64}  # fmt: skip


def test_erv_summary_gives_the_update_share_of_the_ceiling():
    records = [_record(90.0, 50.0, 9.0), _record(10.0, 4.0, 0.5), _record(20.0, 8.0, 0.7)]
    got = summarize_erv(records, matmul_parameters=1000, ceiling_gflops=0.001)
    assert got["median"]["step_seconds"] == 15.0 and got["median"]["weight_sync"] == 0.6
    assert got["median"]["parity_probe"] == 0.3  # apart from the transfer, which the goal judges
    # the tokens the model ran (not the batch's prompt + completion tokens, which throughput reports):
    # 8 x 1000 x 200 = 1.6e6 FLOP over 4 s = 4e-4 GFLOP/s = 0.4 of 1e-3
    assert got["update"]["per_step"][1]["tokens"] == 200.0
    assert got["update"]["per_step"][1]["share_of_ceiling"] == pytest.approx(0.4)
    assert got["update"]["median_share_of_ceiling"] == pytest.approx((0.4 + 0.2) / 2)


def _system(step, peak):
    return {"median_step_seconds": step, "memory": {"peak_pss_bytes": peak}}


def test_goal_verdicts_against_trls_fastest_setting_and_smaller_peak():
    trl = {"fp32": _system(50.0, 10 * MB), "bf16": _system(40.0, 12 * MB)}
    erv = {"median": {"step_seconds": 15.0, "weight_sync": 0.5},
           "update": {"median_share_of_ceiling": 0.65}, "memory": {"peak_pss_bytes": 11 * MB}}  # fmt: skip
    got = goal_verdicts(erv, trl, is_under_load=False)
    assert got["trl_best"] == "bf16"
    assert got["step_vs_trl_best"]["value"] == pytest.approx(15.0 / 40.0) and got["step_vs_trl_best"]["met"]
    assert got["update_share_of_ceiling"]["met"] and got["weight_sync_seconds"]["met"]
    assert got["peak_memory_vs_trl"]["value"] == pytest.approx(1.1)  # against fp32's 10 MB, the smaller
    assert got["peak_memory_vs_trl"]["met"] is False
    erv["median"]["weight_sync"], erv["update"]["median_share_of_ceiling"] = 0.7, 0.5
    erv["median"]["step_seconds"] = 17.0
    got = goal_verdicts(erv, trl, is_under_load=False)
    assert not any(
        got[g]["met"] for g in ("weight_sync_seconds", "update_share_of_ceiling", "step_vs_trl_best")
    )
    loaded = goal_verdicts(erv, trl, is_under_load=True)
    assert all(v["met"] is None for k, v in loaded.items() if k != "trl_best")


def test_a_precision_the_cpu_is_over_ten_times_slower_at_is_skipped_and_not_judged():
    # AVX2-only CPU, measured 2026-12-07: fp32 98 GFLOP/s, bf16 0.28 (a scalar fallback)
    slow = {"fp32_gflops": 98.0, "bf16_gflops": 0.28}
    reason = slow_precision_reason("bf16", slow)
    assert reason.startswith("not run") and "350x slower" in reason
    assert slow_precision_reason("fp32", slow) is None
    assert slow_precision_reason("bf16", {"fp32_gflops": 98.0, "bf16_gflops": 9.8}) is None  # 10x: still run
    assert slow_precision_reason("bf16", {"fp32_gflops": 190.0, "bf16_gflops": 800.0}) is None
    trl = {"fp32": _system(50.0, 10 * MB), "bf16": {"precision": "bf16", "skipped": reason}}
    erv = {"median": {"step_seconds": 15.0, "weight_sync": 0.5},
           "update": {"median_share_of_ceiling": 0.65}, "memory": {"peak_pss_bytes": 9 * MB}}  # fmt: skip
    got = goal_verdicts(erv, trl, is_under_load=False)
    assert got["trl_best"] == "fp32" and got["step_vs_trl_best"]["value"] == pytest.approx(0.3)
    assert got["peak_memory_vs_trl"]["value"] == pytest.approx(0.9)


def test_a_load_above_the_limit_before_the_run_is_labelled():
    # One rule for every orchestrator bench: 0.75 runnable tasks per core; the load after is not judged.
    assert under_load((1.6, 0.1, 0.1), cpus=2) and not under_load((1.5, 9.0, 9.0), cpus=2)
    assert under_load((3.1, 0, 0), cpus=4) and not under_load((3.0, 0, 0), cpus=4)


def test_the_benches_name_a_missing_folder_and_too_few_steps(tmp_path):
    with pytest.raises(OrchestratorError, match="--erv-dir .*nowhere is not a folder"):
        require_inputs({"--model": tmp_path, "--erv-dir": tmp_path / "nowhere"}, 4)
    with pytest.raises(OrchestratorError, match="--steps 1: at least 2"):
        require_inputs({"--model": tmp_path}, 1)
    require_inputs({"--model": tmp_path}, 2)


def test_learner_threads_are_rays_floor_of_its_cpus_unless_omp_num_threads_is_set():
    assert [learner_threads(c, environ={}) for c in (0.5, 1.0, 2.5)] == [1, 1, 2]
    assert learner_threads(1.0, environ={"OMP_NUM_THREADS": "2"}) == 2


def test_tree_pss_counts_a_child_process_and_the_sampler_keeps_its_peak():
    own, names = tree_pss(os.getpid())
    code = "import sys, time; b = b'x' * (300 * 2**20); print('ready', flush=True); time.sleep(60)"
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "ready"
        sampler = PeakPss(child.pid, interval=0.1).start()
        time.sleep(0.5)
        peak = sampler.stop()
        with_child, names_with_child = tree_pss(os.getpid())
    finally:
        child.kill()
        child.wait()
    assert len(names_with_child) == len(names) + 1
    assert with_child - own > 250 * MB  # the child's 300 MB of touched pages
    assert peak["peak_pss_bytes"] > 250 * MB and peak["samples"] >= 2
    assert [p["process"] for p in peak["processes_at_peak"]] == [os.path.basename(sys.executable)]
    assert peak["processes_at_peak"][0]["pss_gib"] > 250 / 1024
    assert tree_pss(child.pid) == (0, [])  # gone: nothing, no error


def test_a_run_leaves_no_process_behind_and_a_failed_one_is_named_with_its_log(tmp_path):
    import psutil

    pid_file = tmp_path / "grandchild.pid"
    code = ("import subprocess, sys; p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)']); "
            f"open({str(pid_file)!r}, 'w').write(str(p.pid))")  # fmt: skip
    memory = _run_measured([sys.executable, "-c", code], tmp_path / "ok.log", timeout=60)
    assert memory["samples"] >= 1 and memory["peak_pss_bytes"] > 0
    grandchild = int(pid_file.read_text())
    deadline = time.time() + 10
    while psutil.pid_exists(grandchild) and psutil.Process(grandchild).status() != "zombie":
        assert time.time() < deadline, "the run's leftover process is still alive"
        time.sleep(0.1)
    with pytest.raises(OrchestratorError, match="exited with 3(.|\\n)*the last words"):
        _run_measured(
            [sys.executable, "-c", "print('the last words'); raise SystemExit(3)"], tmp_path / "bad.log", 60
        )


def test_matmul_parameters_leave_out_the_embedding_unless_it_is_the_tied_output(tmp_path):
    import torch
    from safetensors.torch import save_file

    layers = {"model.embed_tokens.weight": torch.zeros(10, 4), "model.layers.0.mlp.weight": torch.zeros(4, 4)}
    (tmp_path / "tied").mkdir()
    save_file(layers, str(tmp_path / "tied" / "model.safetensors"))
    (tmp_path / "untied").mkdir()
    save_file(
        {**layers, "lm_head.weight": torch.zeros(10, 4)}, str(tmp_path / "untied" / "model.safetensors")
    )
    assert matmul_params(tmp_path / "tied") == {"parameters": 56, "matmul_parameters": 56, "tied": True}
    assert matmul_params(tmp_path / "untied") == {"parameters": 96, "matmul_parameters": 56, "tied": False}
    with pytest.raises(OrchestratorError, match="no \\*.safetensors"):
        matmul_params(tmp_path)


def test_trls_reward_is_the_projects_format_and_answer_reward():
    good = [{"role": "assistant", "content": "<think>She cries.</think><answer>sad</answer>"}]
    wrong = [{"role": "assistant", "content": "<think>She cries.</think><answer>happy</answer>"}]
    bare = [{"role": "assistant", "content": "sad"}]
    assert project_reward([good, wrong, bare], ground_truth=["sad", "sad", "sad"]) == [2.0, 1.0, 0.0]


def test_missing_model_folder_is_named(tmp_path):
    with pytest.raises(SystemExit, match="--model .* is not a folder"):
        main(
            [
                "bench",
                "step",
                "--against",
                "trl",
                "--model",
                str(tmp_path / "none"),
                "--erv-dir",
                str(tmp_path),
            ]
        )


@pytest.mark.slow
def test_bench_step_runs_trl_in_the_precisions_the_cpu_is_fast_at_and_erv_grpo(tmp_path):
    from tests.support.tiny_erv import build_tiny_erv
    from tests.support.tiny_policy import build_tiny_formatted_policy

    out = tmp_path / "step.json"
    argv = ["bench", "step", "--against", "trl", "--model", str(build_tiny_formatted_policy(tmp_path / "policy")),
            "--erv-dir", str(build_tiny_erv(tmp_path / "erv")), "--steps", "2", "--group-size", "4",
            "--max-tokens", "16", "--runs-dir", str(tmp_path / "runs"), "--output", str(out)]  # fmt: skip
    assert main(argv) == 0
    got = json.loads(out.read_text())
    assert got["ceilings"]["fp32_gflops"] > 0 and got["ceilings"]["bf16_gflops"] > 0
    assert set(got["machine"]["cpu_flags"]) == {"avx2", "avx512f", "avx512_bf16", "amx_bf16"}
    assert got["under_load"] == (got["machine"]["load_average_before"][0] > load_limit())
    assert "skipped" not in got["trl"]["fp32"]
    if got["ceilings"]["bf16_gflops"] * 10 < got["ceilings"]["fp32_gflops"]:  # an AVX2-only CPU
        assert got["trl"]["bf16"]["skipped"].startswith("not run") and "bf16_note" in got["ceilings"]
        del got["trl"]["bf16"]
    for precision, trl in got["trl"].items():
        assert trl["precision"] == precision and len(trl["step_seconds"]) == 2
        assert trl["median_step_seconds"] > 0 and trl["memory"]["peak_pss_bytes"] > 50 * MB
        assert all(t > 0 for t in trl["tokens_per_step"])
    erv = got["erv_grpo"]
    assert erv["precision"] in ("fp32", "bf16") and len(erv["steps"]) == 2
    assert all(
        erv["median"][p] > 0 for p in ("step_seconds", "generate", "update", "weight_sync", "parity_probe")
    )
    assert erv["update"]["median_tokens"] > 0 and 0 < erv["update"]["median_share_of_ceiling"] < 1
    # the whole tree: the driver, Ray's processes and workers, the reward subprocess
    assert erv["memory"]["peak_pss_bytes"] > 200 * MB and len(erv["memory"]["processes_at_peak"]) > 3
    assert set(got["goals"]) == {"trl_best", "update_share_of_ceiling", "weight_sync_seconds",
                                 "step_vs_trl_best", "peak_memory_vs_trl"}  # fmt: skip
    assert all(v["met"] in (None, True, False) for k, v in got["goals"].items() if k != "trl_best")
