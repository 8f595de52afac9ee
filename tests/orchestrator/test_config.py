"""Configs in configs/ validate; overrides, unknown keys and bad values fail at start with the field named."""

import pytest

from common.errors import ConfigError
from orchestrator.cli import main
from orchestrator.config import load_config

FILL = ["learner.model=/m", "reward.model_dir=/e"]


def test_shipped_configs_validate():
    tiny = load_config("configs/tiny.yaml", FILL)
    assert tiny.rollout.num_workers == 2 and tiny.run.steps == 3
    demo = load_config("configs/demo.yaml")
    assert demo.rollout.group_size == 16 and demo.learner.kl_coef == 0.04
    cluster = load_config("configs/a100-cluster.yaml")
    assert (
        cluster.reward.address and cluster.rollout.num_gpus_per_worker == 1 and cluster.ray.num_learners == 8
    )
    assert cluster.rollout.engine_env() == {}  # GPU workers get no CPU vLLM settings
    assert cluster.rollout.kv_cache_bytes() is None  # sized by vLLM from gpu_memory_utilization


def test_the_cpu_kv_cache_is_an_explicit_size_in_fractions_of_a_gib():
    c = load_config("configs/tiny.yaml", [*FILL, "rollout.kv_cache_gib=0.25"])
    assert c.rollout.kv_cache_bytes() == 2**28
    assert "VLLM_CPU_KVCACHE_SPACE" not in c.rollout.engine_env()  # vLLM's legacy variable would override it
    with pytest.raises(ConfigError, match="rollout.kv_cache_gib"):
        load_config("configs/tiny.yaml", [*FILL, "rollout.kv_cache_gib=0"])


def test_dotted_overrides_parse_yaml_values():
    c = load_config(
        "configs/tiny.yaml",
        [*FILL, "rollout.num_workers=3", "dynamic_sampling.enabled=true", "eval.limit=null"],
    )
    assert c.rollout.num_workers == 3 and c.dynamic_sampling.enabled is True and c.eval.limit is None


@pytest.mark.parametrize(
    "override, message",
    [
        ("rollout.num_wrkers=2", "rollout.num_wrkers: Extra inputs are not permitted"),
        ("rollout.group_size=1", "rollout.group_size: Input should be greater than or equal to 2"),
        ("learner.kl_coef=abc", "learner.kl_coef: Input should be a valid number"),
        ("run.steps", "is not of the form key.path=value"),
        ("run.steps.x=1", "run.steps.x"),
        (
            "reward.weights.explanation=-1",
            "reward.weights.explanation: Input should be greater than or equal to 0",
        ),
        ("reward.weights.answer=.inf", "reward.weights.answer: Input should be a finite number"),
    ],
)
def test_bad_values_are_named(override, message):
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        load_config("configs/tiny.yaml", [*FILL, override])


def test_missing_reward_target_and_missing_file():
    with pytest.raises(ConfigError, match="reward.model_dir .* or reward.address"):
        load_config("configs/tiny.yaml", ["learner.model=/m"])
    with pytest.raises(ConfigError, match="nope.yaml does not exist"):
        load_config("nope.yaml")


def test_cli_reports_config_errors_in_one_line(capsys):
    with pytest.raises(SystemExit, match=r"erv-grpo: error: configs/ablation.yaml: experiment\.eval_every"):
        main(["experiment", "ablation", "--config", "configs/ablation.yaml", "experiment.eval_every=0"])
    with pytest.raises(SystemExit, match="erv-grpo: error: configs/tiny.yaml: rollout.bogus"):
        main(["train", "--config", "configs/tiny.yaml", *FILL, "rollout.bogus=1"])
    with pytest.raises(SystemExit, match="--resume /no/such/run is not a run folder"):
        main(["train", "--config", "configs/tiny.yaml", *FILL, "--resume", "/no/such/run"])


@pytest.mark.parametrize(
    "argv",
    [["train", "--help"], ["eval", "--help"], ["demo", "--help"], ["bench", "rollout", "--help"],
     ["experiment", "ablation", "--help"], ["experiment", "judge", "--help"]],
)  # fmt: skip
def test_every_command_has_help(argv, capsys):
    with pytest.raises(SystemExit) as err:
        main(argv)
    assert err.value.code == 0
    out = capsys.readouterr().out
    assert "usage: erv-grpo" in out and "--" in out


def test_ablation_configs_validate_and_arms_differ_only_in_run_and_weights():
    from orchestrator.experiment_config import load_ablation_config

    real = load_ablation_config("configs/ablation.yaml")
    assert real.train.run.steps >= 30 and real.train.rollout.group_size == 16
    assert real.eval_steps() == [0, 10, 20, 30] and real.experiment.eval_limit is None
    erv, no_erv = (real.arm_config(a, "/cold") for a in real.experiment.arms)
    assert erv.reward.weights.as_tuple() == (1, 1, 1) and no_erv.reward.weights.as_tuple() == (0, 1, 1)
    assert erv.learner.model == no_erv.learner.model == "/cold"
    assert erv.run.seed == no_erv.run.seed and erv.run_dir() != no_erv.run_dir()
    assert erv.model_dump(exclude={"run": {"name"}, "reward": {"weights"}}) == no_erv.model_dump(
        exclude={"run": {"name"}, "reward": {"weights"}}
    )
    with pytest.raises(ConfigError, match="reference_arm"):
        load_ablation_config("configs/ablation.yaml", ["experiment.reference_arm=none"])
    with pytest.raises(ConfigError, match=r"experiment\.arms\.1\.weights\.explanation"):
        load_ablation_config(
            "configs/ablation.yaml",
            [
                "experiment.arms=[{name: a, weights: {}}, {name: b, weights: {explanation: -1}}]",
                "experiment.reference_arm=a",
            ],
        )
