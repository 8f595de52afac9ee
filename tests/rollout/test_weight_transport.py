"""Both weight transports (object store: Learner.export_weights -> VllmEngine.load_weights; collective: the
gloo group of policy/weight_transport.py -> rollout/weight_receiver.py inside vLLM's worker) leave the
engine's sampling logprobs equal to the learner's, for tied and untied tiny Qwen2 models.

The collective sync runs in this process: the learner's sender in a thread, the in-process engine
(VLLM_ENABLE_V1_MULTIPROCESSING=0) receiving in the main thread, over a loopback gloo group.
"""

import socket
import threading

import pytest
import torch

from policy import export, weight_transport
from policy.config import LearnerConfig
from policy.learner import Learner
from rollout.config import CPU_VLLM_ENV
from tests.rollout.test_weight_sync import mean_abs_diff, perturb, sync
from tests.support.tiny_models import build_tiny_qwen2

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def in_thread(fn):
    """Start fn in a thread; the returned join() gives its result or re-raises its error."""
    out = {}

    def run():
        try:
            out["result"] = fn()
        except BaseException as err:  # noqa: BLE001 - handed to the caller
            out["error"] = err

    t = threading.Thread(target=run)
    t.start()

    def join():
        t.join(timeout=120)
        assert not t.is_alive(), "the thread hung"
        if "error" in out:
            raise out["error"]
        return out["result"]

    return join


@pytest.fixture(scope="module", params=["tied", "untied"])
def pair(request, tmp_path_factory):
    """A learner, a vLLM engine over the same tiny model folder, and the group joining them."""
    from rollout.engine import VllmEngine

    path = build_tiny_qwen2(tmp_path_factory.mktemp(f"qwen2-{request.param}"), tied=request.param == "tied")
    torch.set_num_threads(1)
    learner = Learner(LearnerConfig(model=str(path), device="cpu"))
    engine = VllmEngine(path, max_model_len=256, seed=0, env=CPU_VLLM_ENV)
    port = free_port()
    sender = in_thread(lambda: weight_transport.WeightSender("127.0.0.1", port, 2, timeout_s=60))
    engine.open_weight_transport("127.0.0.1", port, 1, 2, 60)
    yield request.param, learner, engine, sender()
    del engine


def collective_sync(learner, engine, sender, bucket_bytes: int = 64 << 10):
    sent = in_thread(lambda: weight_transport.send(learner.policy, learner.version, bucket_bytes, sender))
    version = engine.receive_weights()
    plan = sent()
    assert version == learner.version == engine.version == plan.version
    return plan


@pytest.mark.parametrize("transport", ["object_store", "collective"])
def test_parity_after_a_sync_by_either_transport(pair, transport):
    kind, learner, engine, sender = pair
    assert learner.policy.config.tie_word_embeddings == (kind == "tied")
    perturb(learner.policy.get_input_embeddings().weight, seed=21 if transport == "collective" else 31)
    perturb(learner.policy.get_output_embeddings().weight, seed=22)  # the embedding itself when tied
    perturb(learner.policy.model.layers[1].self_attn.q_proj.weight, seed=23)
    learner._version += 1
    before = mean_abs_diff(learner, engine, seed=5)
    if transport == "collective":
        plan = collective_sync(learner, engine, sender)
        assert len(plan.buckets) > 1  # 64 KiB buckets: the tiny model travels in several
    else:
        sync(learner, engine)
    after = mean_abs_diff(learner, engine, seed=6)
    print(
        f"{kind} {transport}: mean |engine - learner| logprob {before:.2e} before the sync, {after:.2e} after"
    )
    assert before > 1e-3  # the perturbation is visible: the check can fail
    assert after <= 1e-4


def test_the_collective_plan_names_what_the_object_store_sends(pair):
    _, learner, _, _ = pair
    _, buckets = learner.export_weights()
    names = [n for b in buckets for n, _ in b]
    assert [n for n, _ in export.export_tensors(learner.policy)] == names


@torch.no_grad()
def nudge(tensor: torch.Tensor, seed: int, std: float) -> None:
    tensor.add_(std * torch.randn(tensor.shape, generator=torch.Generator().manual_seed(seed)))


def pin_head_kernel(worker) -> None:
    """In vLLM's worker: make the LM head's GEMM use a copy of the head's current weights.

    Where vLLM's CPU GEMM packs weights (oneDNN, fp32 and AVX-512 bf16) it already does; its bf16
    fallback on AVX2 reads the live parameter, so a plain reload would not leave the head stale there.
    """
    head = worker.model_runner.get_model().lm_head
    frozen = head.weight.detach().clone()
    head.cpu_linear = lambda x, weight, bias: torch.nn.functional.linear(x, frozen, bias)


def test_bf16_limits_pass_a_bf16_sync_and_stop_a_stale_tied_head(tmp_path):
    """A bf16 engine against a bf16-autocast learner: the guard's floor, measured at the first sync,
    and its bf16 factors pass correct syncs and stop vLLM's plain reload, whose tied head stays stale
    (the head's kernel pinned to its pre-reload weights on every CPU); the fp32 limits would stop the
    correct syncs too."""
    from orchestrator.config import SyncGuardConfig
    from orchestrator.weight_sync import bf16_floor, logprob_abs_diff, verdict
    from rollout.engine import VllmEngine
    from rollout.worker import RolloutWorker

    path = build_tiny_qwen2(tmp_path / "qwen2-tied", tied=True)
    learner = Learner(LearnerConfig(model=str(path), device="cpu", precision="bf16"))
    engine = VllmEngine(path, dtype="bfloat16", max_model_len=256, seed=0, env=CPU_VLLM_ENV)
    worker = RolloutWorker(0, "", None, engine=engine, score_fn=lambda *a: None)
    guard = SyncGuardConfig()
    precisions = {worker.precision(), learner.precision}
    assert precisions == {"bf16"} and guard.calibrates(precisions)
    prompts = ["The man smiles and laughs loudly.", "She cries and looks down."]
    emb = learner.policy.get_input_embeddings().weight

    def gap(seed: int) -> float:
        probe = worker.probe(prompts, max_tokens=guard.probe_tokens, seeds=[seed, seed + 1])
        learner_lps = learner.logprobs(probe["prompt_token_ids"], probe["token_ids"])
        return logprob_abs_diff(probe["logprobs"], learner_lps)[0]

    sync(learner, engine)  # the run's first sync: identical weights
    floor = bf16_floor(gap(0), guard, learner.version)
    warn, stop, _, _ = guard.limits(precisions, floor)
    gaps = {"synced": [], "stale": []}
    for seed in (1, 2, 3):
        nudge(emb, seed, std=0.002)  # 0.1 of the tiny embedding's spread (0.02), as in the measurement
        learner._version += 1
        sync(learner, engine)
        gaps["synced"].append(gap(seed))
        nudge(emb, seed + 100, std=0.002)
        _, buckets = learner.export_weights()
        weights = [(n, t) for b in buckets for n, t in b]
        engine.llm.collective_rpc(pin_head_kernel)
        engine.llm.collective_rpc("reload_weights", kwargs={"weights_iterator": weights})  # the stale path
        gaps["stale"].append(gap(seed))
    print(f"bf16 floor {floor:.2e} (warn {warn:.2e}, stop {stop:.2e}); gaps {gaps}")
    assert all(verdict(g, warn, stop) == "ok" for g in gaps["synced"])
    assert all(
        verdict(g, guard.warn_above, guard.stop_above) != "ok" for g in gaps["synced"]
    )  # fp32 limits: no
    assert all(verdict(g, warn, stop) == "stop" for g in gaps["stale"])
    worker.close()
    del engine


def test_the_collective_sends_in_the_engines_precision(pair):
    """bf16 engines get bf16 buckets (half the bytes); the engine then holds the learner's weights rounded once."""
    kind, learner, engine, sender = pair
    perturb(learner.policy.model.layers[0].mlp.up_proj.weight, seed=41)
    learner._version += 1
    before = mean_abs_diff(learner, engine, seed=7)
    fp32_plan = weight_transport.plan_for(export.export_tensors(learner.policy), 64 << 10, learner.version)
    sent = in_thread(lambda: weight_transport.send(learner.policy, learner.version, 64 << 10, sender,
                                                   dtype=torch.bfloat16))  # fmt: skip
    assert engine.receive_weights() == learner.version
    plan = sent()
    assert {s.dtype for b in plan.buckets for s in b.slots} == {"bfloat16"}
    assert 2 * sum(b.nbytes for b in plan.buckets) <= sum(b.nbytes for b in fp32_plan.buckets) + 64 * len(
        plan.buckets
    )
    after = mean_abs_diff(learner, engine, seed=8)
    print(f"{kind} bf16 collective: {before:.2e} before, {after:.2e} after")
    assert before > 1e-3 and after < before / 10
